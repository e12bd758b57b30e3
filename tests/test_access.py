"""Who may do what, endpoint by endpoint: every URL the app serves is walked, so a view added
later without an ownership or CSRF check fails here rather than in production."""

from __future__ import annotations

import secrets

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from chat.data import api_tokens
from chat.files import store
from chat.models import Conversation, Message, ShareLink
from chat.testing.files import image_bytes

pytestmark = pytest.mark.django_db

# Every route of the app, with how it is reached: (name, method, needs a conversation).
ROUTES = [
    ("chat:conversation_list", "get", False),
    ("chat:conversation_create", "post", False),
    ("chat:conversation_start", "post", False),
    ("chat:conversation_search", "get", False),
    ("chat:conversation_stop_all", "post", False),
    ("chat:active_replies", "get", False),
    ("chat:conversation_detail", "get", True),
    ("chat:conversation_settings", "post", True),
    ("chat:conversation_rename", "post", True),
    ("chat:conversation_delete", "get", True),
    ("chat:conversation_delete", "post", True),
    ("chat:conversation_stop", "post", True),
    ("chat:account", "get", False),
    ("chat:api_tokens", "get", False),
    ("chat:api_tokens", "post", False),
    ("chat:api_token_revoke", "post", False),
    ("chat:attachment_upload", "post", False),
    # "Owned": an attachment of the conversation's owner (see _url).
    ("chat:attachment", "get", True),
    ("chat:attachment_thumbnail", "get", True),
    ("chat:attachment_remove", "post", True),
    # "Owned": a message of the conversation (see _url).
    ("chat:message_select", "post", True),
    ("chat:message_delete", "get", True),
    ("chat:message_delete", "post", True),
    # Export and import (tests/test_export.py).
    ("chat:conversation_export_md", "get", True),
    ("chat:conversation_export_json", "get", True),
    ("chat:export_all", "get", False),
    ("chat:import", "post", False),
    # Share links (tests/test_shares.py); "owned" for a revoke: a link to the conversation.
    ("chat:conversation_share", "post", True),
    ("chat:conversation_unshare", "post", True),
    ("chat:share_revoke", "post", True),
]
# chat:share is the page a share link opens, for anyone who has the link (tests/test_shares.py).
PUBLIC = {"chat:home", "chat:signup", "chat:share"}
# The API authenticates by token, not by session: its own checks are below.
API_ROUTES = [
    ("chat:api_conversations", "get", False),
    ("chat:api_conversations", "post", False),
    ("chat:api_conversation", "get", True),
    ("chat:api_messages", "post", True),
    ("chat:api_conversation_stop", "post", True),
]


def _url(name: str, conversation: Conversation | None) -> str:
    from django.urls import reverse

    if name == "chat:api_token_revoke":
        return reverse(name, kwargs={"token_id": 1})
    if name.startswith("chat:message_"):
        assert conversation is not None
        message = conversation.messages.order_by("id").first() or Message.objects.create(
            conversation=conversation, role="user", content="private words"
        )
        return reverse(name, kwargs={"conversation_id": conversation.pk, "message_id": message.pk})
    if name == "chat:share_revoke":
        assert conversation is not None
        link = ShareLink.objects.create(conversation=conversation, token=secrets.token_urlsafe(24))
        return reverse(name, kwargs={"token": link.token})
    if name.startswith("chat:attachment_") or name == "chat:attachment":
        if conversation is None:
            return reverse(name)
        attachment = store.attach(user=conversation.user, name="a.png", data=image_bytes())
        return reverse(name, kwargs={"attachment_id": attachment.pk})
    return reverse(name, kwargs={"conversation_id": conversation.pk} if conversation else None)


def _chat_route_names() -> set[str]:
    names: set[str] = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == "chat":
            names |= {f"chat:{p.name}" for p in entry.url_patterns if isinstance(p, URLPattern)}
    return names


def test_every_chat_route_is_covered_here() -> None:
    assert _chat_route_names() == {name for name, _, _ in ROUTES + API_ROUTES} | PUBLIC


@pytest.mark.parametrize(("name", "method", "owned"), API_ROUTES)
def test_the_api_wants_a_token_and_a_signed_in_session_is_not_one(
    client: Client, conversation: Conversation, user: User, name: str, method: str, owned: bool
) -> None:
    url = _url(name, conversation if owned else None)
    for signed_in in (False, True):
        if signed_in:
            client.force_login(user)  # a session cookie alone: no CSRF token needed, so refused
        response = getattr(client, method)(
            url, data={"message": "hi"}, content_type="application/json"
        )
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["type"] == "authentication_error"
    assert conversation.messages.count() == 0


@pytest.mark.parametrize(("name", "method", "owned"), [r for r in API_ROUTES if r[2]])
def test_the_api_answers_404_for_another_users_conversation(
    client: Client,
    conversation: Conversation,
    other_user: User,
    name: str,
    method: str,
    owned: bool,
) -> None:
    Message.objects.create(conversation=conversation, role="user", content="private words")
    _, token = api_tokens.token_create(user=other_user, name="theirs")
    response = getattr(client, method)(
        _url(name, conversation),
        data={"message": "stolen"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert b"private words" not in response.content
    assert conversation.messages.count() == 1


@pytest.mark.parametrize(("name", "method", "owned"), ROUTES)
def test_anonymous_visitors_are_sent_to_sign_in(
    client: Client, conversation: Conversation, name: str, method: str, owned: bool
) -> None:
    response = getattr(client, method)(_url(name, conversation if owned else None))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(("name", "method", "owned"), [r for r in ROUTES if r[2]])
def test_another_users_conversation_is_a_404_and_stays_untouched(
    client: Client,
    conversation: Conversation,
    other_user: User,
    name: str,
    method: str,
    owned: bool,
) -> None:
    Message.objects.create(conversation=conversation, role="user", content="private words")
    client.force_login(other_user)
    response = getattr(client, method)(
        _url(name, conversation), {"title": "stolen", "model": "x", "system_prompt": "x"}
    )
    assert response.status_code == 404
    assert b"private words" not in response.content and b"Test chat" not in response.content
    conversation.refresh_from_db()
    assert conversation.title == "Test chat" and conversation.messages.count() == 1


@pytest.mark.parametrize(("name", "method", "owned"), [r for r in ROUTES if r[1] == "post"])
def test_every_post_needs_the_csrf_token(
    conversation: Conversation, user: User, name: str, method: str, owned: bool
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(_url(name, conversation if owned else None), {"title": "x"})
    assert response.status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk, title="Test chat").exists()


# (GET of a delete is its confirmation page; GET of the tokens page lists them.)
POST_ONLY = [
    r
    for r in ROUTES
    if r[1] == "post"
    and r[0] not in {"chat:conversation_delete", "chat:api_tokens", "chat:message_delete"}
]


@pytest.mark.parametrize(("name", "method", "owned"), POST_ONLY)
def test_posts_are_refused_as_gets(
    client: Client, conversation: Conversation, user: User, name: str, method: str, owned: bool
) -> None:
    client.force_login(user)
    assert client.get(_url(name, conversation if owned else None)).status_code == 405


def test_the_admin_and_metrics_are_for_staff_only(client: Client, user: User) -> None:
    client.force_login(user)
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/chat/metrics/").status_code == 302
    assert client.get("/metrics").status_code == 403


@pytest.mark.parametrize("path", ["/accounts/logout/", "/signup/", "/accounts/login/"])
def test_sign_in_sign_up_and_sign_out_need_the_csrf_token_too(user: User, path: str) -> None:
    client = Client(enforce_csrf_checks=True)
    if path == "/accounts/logout/":
        client.force_login(user)
    response = client.post(path, {"username": "alice", "password": "x"})
    assert response.status_code == 403
