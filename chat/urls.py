from __future__ import annotations

from django.urls import path

from . import views, views_api, views_control, views_conversations, views_tokens

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
    # API tokens, on the user's own page.
    path("account/tokens/", views_tokens.api_tokens, name="api_tokens"),
    path(
        "account/tokens/<int:token_id>/revoke/",
        views_tokens.api_token_revoke,
        name="api_token_revoke",
    ),
    # The streaming HTTP API for scripts (token authentication; chat/views_api.py).
    path("api/conversations/", views_api.conversations, name="api_conversations"),
    path(
        "api/conversations/<uuid:conversation_id>/",
        views_api.conversation,
        name="api_conversation",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/messages/",
        views_api.messages,
        name="api_messages",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/stop/",
        views_api.conversation_stop,
        name="api_conversation_stop",
    ),
]
