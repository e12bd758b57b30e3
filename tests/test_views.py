"""Pages: sign-in, sign-up, the conversation list and page, and who may see what."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_sign_in(client: Client, conversation: Conversation) -> None:
    for url in [
        reverse("chat:conversation_list"),
        reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk}),
    ]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_sign_in_page_offers_sign_up(client: Client) -> None:
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert reverse("chat:signup").encode() in response.content


def test_sign_up_creates_an_account_and_signs_in(client: Client) -> None:
    response = client.post(
        reverse("chat:signup"),
        {
            "username": "newbie",
            "password1": "a-long-passphrase-42",
            "password2": "a-long-passphrase-42",
        },
    )
    assert response.status_code == 302
    assert User.objects.filter(username="newbie").exists()
    assert client.get(reverse("chat:conversation_list")).status_code == 200


def test_new_chat_needs_post_and_csrf(user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(reverse("chat:conversation_create")).status_code == 405
    assert client.post(reverse("chat:conversation_create")).status_code == 403
    assert not Conversation.objects.exists()


def test_new_chat_opens_a_composer_and_makes_no_conversation_until_a_message(
    client: Client, user: User
) -> None:
    client.force_login(user)
    sidebar = client.get(reverse("chat:conversation_list")).content.decode()
    assert f'id="new-chat" href="{reverse("chat:home")}"' in sidebar
    page = client.get(reverse("chat:home")).content.decode()
    assert f'action="{reverse("chat:conversation_start")}"' in page
    assert 'id="composer-input"' in page and 'id="send-button"' in page
    assert "ws-connect" not in page  # no conversation yet, so no socket
    assert "Demo (offline)" in page  # the page says which provider is active
    assert not Conversation.objects.exists()


def test_a_script_may_still_make_an_empty_conversation_which_no_list_shows(
    client: Client, user: User
) -> None:
    client.force_login(user)
    response = client.post(reverse("chat:conversation_create"))
    conversation = Conversation.objects.get(user=user)
    assert response["Location"] == reverse("chat:conversation_detail", args=[conversation.pk])
    page = client.get(response["Location"]).content.decode()
    assert f'ws-connect="/ws/chat/{conversation.pk}/?after=0"' in page
    assert f'id="conv-{conversation.pk}-title"' in page  # its own page lists it
    listing = client.get(reverse("chat:conversation_list")).content.decode()
    assert str(conversation.pk) not in listing  # no other list does


def test_conversation_page_shows_history_marker_and_usage(
    client: Client, user: User, conversation: Conversation
) -> None:
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Partial ans",
        status="interrupted",
        stop_reason="user_stop",
        input_tokens=12,
        output_tokens=3,
        tokens_estimated=True,
    )
    client.force_login(user)
    page = client.get(
        reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
    ).content.decode()
    assert "<p>Partial ans</p></div>" in page
    assert "[Interrupted]" in page
    assert "~3 out" in page


def test_other_users_conversation_is_404_and_not_listed(
    client: Client, other_user: User, conversation: Conversation
) -> None:
    client.force_login(other_user)
    url = reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
    assert client.get(url).status_code == 404
    assert conversation.title.encode() not in client.get(reverse("chat:conversation_list")).content


def test_user_and_model_text_is_escaped_in_the_page(
    client: Client, user: User, conversation: Conversation
) -> None:
    conversation.title = "<img src=x onerror=alert(1)>"
    conversation.save()
    Message.objects.create(
        conversation=conversation, role="user", content="<script>alert(1)</script>"
    )
    Message.objects.create(
        conversation=conversation, role="assistant", content='<a href="javascript:alert(1)">x</a>'
    )
    client.force_login(user)
    for url in [
        reverse("chat:conversation_list"),
        reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk}),
    ]:
        page = client.get(url).content.decode()
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert '<a href="javascript' not in page


def test_sign_out_needs_post(client: Client, user: User) -> None:
    client.force_login(user)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("chat:conversation_list")).status_code == 302


def test_conversation_settings_are_saved_by_the_owner_only_and_validated(
    client: Client, user: User, other_user: User, conversation: Conversation
) -> None:
    url = reverse("chat:conversation_settings", kwargs={"conversation_id": conversation.pk})
    client.force_login(user)
    page = client.get(
        reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
    ).content.decode()
    assert "Save settings" in page and 'value="claude-haiku-5-5"' in page

    response = client.post(url, {"model": "claude-haiku-5-5", "system_prompt": "Be brief."})
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("claude-haiku-5-5", "Be brief.")

    response = client.post(url, {"model": "gpt-nothing", "system_prompt": "x"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.model == "claude-haiku-5-5"

    client.force_login(other_user)
    assert client.post(url, {"model": "claude-opus-5-5"}).status_code == 404
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    assert csrf_client.post(url, {"model": "claude-opus-5-5"}).status_code == 403
    conversation.refresh_from_db()
    assert conversation.model == "claude-haiku-5-5"
