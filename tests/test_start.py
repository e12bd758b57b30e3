"""A page that opens ready: `/` (and signing in) lands in a composer with the sidebar; the
conversation is made by the first message, never by a click, and never left empty."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from django.urls import reverse

from chat.models import Attachment, Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import QUICK, SocketFactory, upload_file, uploaded_id

pytestmark = pytest.mark.django_db(transaction=True)


def test_signing_in_lands_in_a_composer_with_the_sidebar(client: Client, user: User) -> None:
    response = client.post(
        reverse("login"), {"username": "alice", "password": "correct-horse-battery"}
    )
    assert response["Location"] == reverse("chat:home")
    page = client.get(reverse("chat:home")).content.decode()
    assert 'id="composer-input"' in page and "autofocus" in page
    assert 'aria-label="Conversations"' in page  # the sidebar
    assert 'id="attach-button"' in page
    assert not Conversation.objects.exists()
    anonymous = Client().get(reverse("chat:home"))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


async def test_a_message_starts_a_conversation_whose_page_picks_up_the_reply(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    settings: Any,
) -> None:
    from chat.testing.files import image_bytes

    settings.CHAT_DISCONNECT_GRACE = 0  # the hand-over, not the grace, keeps it going
    fake_anthropic.reset(QUICK)
    image = uploaded_id(await upload_file(owner_client, "cat.png", image_bytes()))
    response = await owner_client.post(
        reverse("chat:conversation_start"), {"message": "  Hello there  ", "attachments": image}
    )
    conversation = await Conversation.objects.aget(user=user)
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:conversation_detail", args=[conversation.pk])
    assert conversation.title == "Hello there"
    sock = await chat_socket(conversation, user, after=0)
    status = await sock.until(r'class="msg msg--assistant msg--(complete)" hx-swap-oob')
    assert status.group(1) == "complete"
    messages = [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]
    assert (messages[0].role, messages[0].content, messages[0].status) == (
        "user",
        "Hello there",
        "complete",
    )
    assert await Attachment.objects.filter(message=messages[0]).acount() == 1
    assert [b["type"] for b in fake_anthropic.requests[-1].body["messages"][0]["content"]] == [
        "image",
        "text",
    ]


async def test_a_message_that_cannot_start_keeps_its_text_and_leaves_no_conversation(
    owner_client: AsyncClient, user: User, settings: Any
) -> None:
    empty = await owner_client.post(reverse("chat:conversation_start"), {"message": "   "})
    assert empty.status_code == 400
    assert "Type a message first." in empty.content.decode()
    settings.CHAT_MESSAGES_PER_MINUTE = 0
    limited = await owner_client.post(reverse("chat:conversation_start"), {"message": "Hi <b>"})
    assert limited.status_code == 429
    page = limited.content.decode()
    assert "the most allowed" in page and ">Hi &lt;b&gt;</textarea>" in page
    assert await Conversation.objects.acount() == 0


async def test_a_started_reply_nobody_opens_stops_after_the_hand_over(
    fake_anthropic: FakeAnthropicServer,
    owner_client: AsyncClient,
    user: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chat.testing.fake_anthropic import FakeConfig
    from chat.web import start

    monkeypatch.setattr(start, "HANDOVER_SECONDS", 0.3)
    settings.CHAT_DISCONNECT_GRACE = 0
    fake_anthropic.reset(FakeConfig(interval=0.05, deltas=200))
    await owner_client.post(reverse("chat:conversation_start"), {"message": "Long one"})
    record = await fake_anthropic.await_request()
    await fake_anthropic.await_disconnect(record, timeout=5)
    for _ in range(100):
        reply = await Message.objects.filter(role="assistant").afirst()
        if reply is not None and reply.status != "streaming":
            break
        await asyncio.sleep(0.05)
    assert reply is not None and (reply.status, reply.stop_reason) == ("interrupted", "disconnect")


async def test_empty_conversations_are_never_listed(owner_client: AsyncClient, user: User) -> None:
    empty = await Conversation.objects.acreate(user=user, title="Made by the API, never used")
    page = (await owner_client.get(reverse("chat:home"))).content.decode()
    assert str(empty.pk) not in page
    listing = (await owner_client.get(reverse("chat:conversation_list"))).content.decode()
    assert str(empty.pk) not in listing
