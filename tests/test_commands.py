"""Composer commands over the real socket: /stop, /new, /help; other slash words are text."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import QUICK, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)


async def user_texts(conversation: Conversation) -> list[str]:
    return [m.content async for m in Message.objects.filter(conversation=conversation, role="user")]


@pytest.mark.parametrize("action", ["send", "stop_and_send"])
async def test_slash_stop_stops_the_reply_and_is_not_saved_as_a_message(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    action: str,
) -> None:
    sock = await chat_socket(conversation, user)
    reply = (await start_slow_reply(sock, fake_anthropic, "Write at length")).reply_id
    # Enter while a reply streams sends stop_and_send; the button on an idle page sends send.
    await sock.send(action, "  /STOP ")
    assert await sock.finished(reply) == "interrupted"
    await fake_anthropic.await_disconnect(fake_anthropic.requests[-1])
    saved = await Message.objects.aget(pk=reply)
    assert saved.stop_reason == "user_stop" and saved.content == sock.text_sent(reply)
    assert await user_texts(conversation) == ["Write at length"]
    # The composer was emptied: the command was done.
    assert any('id="composer-input"' in f and "hx-swap-oob" in f for f in sock.frames)


async def test_slash_new_opens_a_new_conversation_of_the_same_user(
    chat_socket: SocketFactory, conversation: Conversation, user: User
) -> None:
    sock = await chat_socket(conversation, user)
    await sock.send("send", "/new")
    match = await sock.until(r'<a id="navigate" href="/conversations/([0-9a-f-]{36})/">')
    created = await Conversation.objects.aget(pk=match.group(1))
    assert created.user_id == user.pk and created.pk != conversation.pk
    assert await user_texts(conversation) == []


async def test_slash_help_lists_the_commands(
    chat_socket: SocketFactory, conversation: Conversation, user: User
) -> None:
    sock = await chat_socket(conversation, user)
    await sock.send("send", "/help")
    frame = await sock.until("Commands:")
    text = frame.group(0) and sock.frames[-1]
    for command in ("/stop", "/new", "/help"):
        assert command in text
    assert await user_texts(conversation) == []


@pytest.mark.parametrize("text", ["/stopp", "/usr/bin/env", "/new chat please", "1/2 cup"])
async def test_other_slash_words_are_sent_as_ordinary_text(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    text: str,
) -> None:
    fake_anthropic.reset(QUICK)
    sock = await chat_socket(conversation, user)
    await sock.send("send", text)
    _, reply = await sock.turn_started()
    assert await sock.finished(reply) == "complete"
    assert await user_texts(conversation) == [text]
    assert re.search(r"Commands:", "".join(sock.frames)) is None
