from __future__ import annotations

from django.urls import path

from chat.api import endpoints
from chat.web import (
    account,
    attachments,
    conversations,
    export,
    messages,
    pages,
    replies,
    shares,
    start,
)

app_name = "chat"

urlpatterns = [
    path("", start.home, name="home"),
    path("start/", start.start, name="conversation_start"),
    path("signup/", pages.signup, name="signup"),
    path("conversations/", pages.conversation_list, name="conversation_list"),
    path("conversations/new/", pages.conversation_create, name="conversation_create"),
    path(
        "conversations/search/",
        conversations.conversation_search,
        name="conversation_search",
    ),
    path("conversations/stop/", replies.conversation_stop_all, name="conversation_stop_all"),
    path("conversations/active/", replies.active_replies, name="active_replies"),
    path(
        "conversations/<uuid:conversation_id>/stop/",
        replies.conversation_stop,
        name="conversation_stop",
    ),
    path(
        "conversations/<uuid:conversation_id>/settings/",
        pages.conversation_settings,
        name="conversation_settings",
    ),
    path(
        "conversations/<uuid:conversation_id>/rename/",
        conversations.conversation_rename,
        name="conversation_rename",
    ),
    path(
        "conversations/<uuid:conversation_id>/delete/",
        conversations.conversation_delete,
        name="conversation_delete",
    ),
    # Share links: made and revoked by the owner; the page a link opens is public.
    path(
        "conversations/<uuid:conversation_id>/share/",
        shares.conversation_share,
        name="conversation_share",
    ),
    path(
        "conversations/<uuid:conversation_id>/unshare/",
        shares.conversation_unshare,
        name="conversation_unshare",
    ),
    path("share/<slug:token>/", shares.share_page, name="share"),
    path("share/<slug:token>/revoke/", shares.share_revoke, name="share_revoke"),
    path(
        "conversations/<uuid:conversation_id>/messages/<int:message_id>/select/",
        messages.message_select,
        name="message_select",
    ),
    path(
        "conversations/<uuid:conversation_id>/messages/<int:message_id>/delete/",
        messages.message_delete,
        name="message_delete",
    ),
    # Export (owner only): the shown branch as Markdown, the whole tree as JSON.
    path(
        "conversations/<uuid:conversation_id>/export.md",
        export.conversation_markdown,
        name="conversation_export_md",
    ),
    path(
        "conversations/<uuid:conversation_id>/export.json",
        export.conversation_json,
        name="conversation_export_json",
    ),
    path(
        "conversations/<uuid:conversation_id>/",
        pages.conversation_detail,
        name="conversation_detail",
    ),
    # Attachments: uploaded into the composer, then opened from the bubbles (owner only).
    path("attachments/", attachments.upload, name="attachment_upload"),
    path("attachments/<uuid:attachment_id>/", attachments.view, name="attachment"),
    path(
        "attachments/<uuid:attachment_id>/thumbnail/",
        attachments.thumbnail,
        name="attachment_thumbnail",
    ),
    path(
        "attachments/<uuid:attachment_id>/remove/",
        attachments.remove,
        name="attachment_remove",
    ),
    # API tokens, on the user's own page.
    path("account/", account.account, name="account"),
    path("account/tokens/", account.api_tokens, name="api_tokens"),
    path(
        "account/tokens/<int:token_id>/revoke/",
        account.api_token_revoke,
        name="api_token_revoke",
    ),
    # Export all (a zip) and import (an exported JSON as a new conversation).
    path("account/export.zip", export.export_all, name="export_all"),
    path("account/import/", export.import_conversation, name="import"),
    # The streaming HTTP API for scripts (token authentication; chat/endpoints.py).
    path("api/conversations/", endpoints.conversations, name="api_conversations"),
    path(
        "api/conversations/<uuid:conversation_id>/",
        endpoints.conversation,
        name="api_conversation",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/messages/",
        endpoints.messages,
        name="api_messages",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/stop/",
        endpoints.conversation_stop,
        name="api_conversation_stop",
    ),
]
