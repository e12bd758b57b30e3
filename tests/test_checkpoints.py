"""A reply's checkpoints (its text saved every CHAT_CHECKPOINT_INTERVAL) run beside it: a slow
database never holds up its batches or its stop."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.data import services
from chat.models import Conversation
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import SocketFactory, first_batch, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)

#: How long each checkpoint holds the database thread here.
SLOW_WRITE = 0.6


async def test_a_slow_checkpoint_holds_up_neither_the_batches_nor_the_stop(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.CHAT_CHECKPOINT_INTERVAL = 0.2
    saved = services.message_checkpoint
    writes: list[float] = []

    def slow_checkpoint(**kwargs: Any) -> bool:
        writes.append(time.monotonic())
        time.sleep(SLOW_WRITE)  # a database behind a long fsync
        return saved(**kwargs)

    monkeypatch.setattr(services, "message_checkpoint", slow_checkpoint)
    sock = await chat_socket(conversation, user)
    streaming = await start_slow_reply(
        sock, fake_anthropic, config=FakeConfig(interval=0.02, deltas=3000)
    )
    # Batches keep coming while a checkpoint holds the database for 0.6 s.
    while not writes:
        await sock.until(first_batch(streaming.reply_id))
    arrivals = []
    while time.monotonic() < writes[0] + SLOW_WRITE:
        await sock.until(first_batch(streaming.reply_id))
        arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 5 and max(gaps) < 0.2, gaps

    # And a stop closes the upstream at once, whatever the database is doing.
    stopped_at = time.monotonic()
    await sock.send("stop")
    closed_at = await fake_anthropic.await_disconnect(streaming.record)
    assert closed_at - stopped_at < 0.1
    assert await sock.finished(streaming.reply_id, timeout=10) == "interrupted"
