from __future__ import annotations

from django.urls import path

from . import views, views_control, views_conversations

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("conversations/new/", views.conversation_create, name="conversation_create"),
    path(
        "conversations/search/",
        views_conversations.conversation_search,
        name="conversation_search",
    ),
    path("conversations/stop/", views_control.conversation_stop_all, name="conversation_stop_all"),
    path("conversations/active/", views_control.active_replies, name="active_replies"),
    path(
        "conversations/<uuid:conversation_id>/stop/",
        views_control.conversation_stop,
        name="conversation_stop",
    ),
    path(
        "conversations/<uuid:conversation_id>/settings/",
        views.conversation_settings,
        name="conversation_settings",
    ),
    path(
        "conversations/<uuid:conversation_id>/rename/",
        views_conversations.conversation_rename,
        name="conversation_rename",
    ),
    path(
        "conversations/<uuid:conversation_id>/delete/",
        views_conversations.conversation_delete,
        name="conversation_delete",
    ),
    path(
        "conversations/<uuid:conversation_id>/",
        views.conversation_detail,
        name="conversation_detail",
    ),
]
