"""Upstream faults the SDK cannot retry away: a clear error bubble with Retry, the partial kept,
one log line with the conversation id, and a Retry that works once the provider is back."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import SocketFactory

pytestmark = pytest.mark.django_db(transaction=True)

RETRY = re.compile(r'class="msg-action regenerate-btn"[^>]*>Retry</button>')


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("status_429", "Anthropic's rate limit was reached. Wait a moment and retry."),
        ("status_529", "Anthropic is overloaded right now. Retry in a moment."),
        ("status_500", "Anthropic returned an error (api_error)."),
    ],
)
async def test_a_status_error_after_the_sdks_retries_is_an_error_bubble_with_retry(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    error: str,
    expected: str,
) -> None:
    settings.CHAT_MAX_RETRIES = 2
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=4, error=error))
    caplog.set_level(logging.INFO)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    user_id, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "error"
    assert len(fake_anthropic.requests) == 3  # the first try and the SDK's two retries
    final = sock.frames[-1]
    assert html.escape(expected) in final and RETRY.search(final)
    failed = await Message.objects.aget(pk=reply_id)
    assert (failed.status, failed.stop_reason, failed.error) == ("error", "error", expected)

    # Logged once, as a warning naming the conversation (and never the message text).
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert str(conversation.pk) in warnings[0].getMessage()
    assert "Hello" not in caplog.text

    # Retry once the provider is back: the failed reply is replaced, the question kept.
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=4))
    await sock.send("regenerate")
    match = await sock.until(r'<div id="messages" hx-swap-oob="beforeend"><article id="msg-(\d+)"')
    assert await sock.finished(int(match.group(1))) == "complete"
    saved = [(m.pk, m.status) async for m in Message.objects.filter(conversation=conversation)]
    assert saved == [(user_id, "complete"), (int(match.group(1)), "complete")]


async def test_no_api_key_is_a_clear_error_and_no_request_is_made(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.ANTHROPIC_API_KEY = ""
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "error"
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.error == "No Anthropic API key is set on the server (ANTHROPIC_API_KEY)."
    assert len(fake_anthropic.requests) == 0
