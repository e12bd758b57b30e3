"""Prompt caching: every turn asks Anthropic to cache the conversation so far; what the cache
read and wrote is stored on each reply, priced at the cache rates and shown. Through the real
SDK and the fake Anthropic server."""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.data import selectors
from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import SocketFactory

pytestmark = pytest.mark.django_db(transaction=True)


async def test_every_turn_asks_for_the_conversation_prefix_to_be_cached(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=3))
    sock = await chat_socket(conversation, user)
    for text in ["First", "Second", "Third"]:
        await sock.send("send", text)
        _, reply_id = await sock.turn_started()
        await sock.finished(reply_id)
    await sock.send("regenerate")
    await sock.until(r'class="msg msg--assistant msg--complete" hx-swap-oob')
    bodies = [record.body for record in fake_anthropic.requests]
    assert len(bodies) == 4
    assert all(body["cache_control"] == {"type": "ephemeral"} for body in bodies)


async def test_caching_can_be_turned_off(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_PROMPT_CACHING = False
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=3))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    await sock.finished(reply_id)
    assert "cache_control" not in fake_anthropic.requests[-1].body


async def test_cached_input_is_stored_priced_and_shown_apart(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    conversation.model = "claude-sonnet-4-6"
    await conversation.asave(update_fields=["model"])
    fake_anthropic.reset(
        FakeConfig(interval=0.001, deltas=3, cache_read=100_000, cache_creation=2_000)
    )
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    await sock.finished(reply_id)

    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.cache_read_input_tokens, saved.cache_creation_input_tokens) == (100_000, 2_000)
    assert saved.input_tokens is not None and saved.output_tokens is not None
    final = html.unescape(sock.frames[-1])
    assert "100000 cached" in final and "2000 to cache" in final  # the bubble's footer
    assert "100,000 cached · 2,000 to cache" in final  # the conversation's header

    usage = await selectors.aconversation_usage(conversation_id=conversation.pk)
    assert (usage.cache_read_tokens, usage.cache_creation_tokens) == (100_000, 2_000)
    # Sonnet 4.6: $3 input, $3.75 cache write, $0.30 cache read, $15 output per million.
    expected = (
        Decimal(saved.input_tokens) * 3
        + 2_000 * Decimal("3.75")
        + 100_000 * Decimal("0.30")
        + Decimal(saved.output_tokens) * 15
    ) / 1_000_000
    assert usage.cost_usd == expected


async def test_a_model_anthropic_rejects_is_a_clear_error_in_the_bubble(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    conversation.model = "claude-unknown-7"
    await conversation.asave(update_fields=["model"])
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=3, error="status_404"))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "error"
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.error == (
        "Anthropic does not offer the model claude-unknown-7: choose another in this "
        "conversation's settings."
    )
    assert saved.error in html.unescape(sock.frames[-1])


async def test_a_request_anthropic_rejects_says_what_anthropic_said(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=3, error="status_400"))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "error"
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.error == "Anthropic rejected the request: Invalid request"
