"""A reply outlives its page for CHAT_DISCONNECT_GRACE seconds, and no longer.

Through the real ASGI stack, the real SDK and the fake Anthropic server. The several-process
cases (a page back on the other server, a process killed while its page watches) are in
tests/live/test_grace_processes.py.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.replies import layer, turns
from chat.replies.events import TextBatch
from chat.replies.registry import registry
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import SLOW, ChatSocket, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)

SNAPSHOT = re.compile(
    r'<article id="msg-(\d+)" class="msg msg--assistant msg--streaming" hx-swap-oob="true".*?'
    r'<div class="msg-body" id="msg-\1-body">(.*?)</div>',
    re.DOTALL,
)


@pytest.fixture
def grace(settings: Any) -> float:
    settings.CHAT_DISCONNECT_GRACE = 1.0
    settings.CHAT_WATCH_RENEW = 0.2
    return 1.0


async def leave(sock: ChatSocket) -> float:
    """Close the page and read every frame it was sent before it closed; when it closed."""
    left_at = time.monotonic()
    await sock.comm.disconnect(timeout=5)
    while not await sock.comm.receive_nothing(timeout=0.05):
        output = await sock.comm.receive_output(timeout=1)
        if output.get("type") == "websocket.send":
            sock.frames.append(output["text"])
    return left_at


async def outcome(reply_id: int) -> Message:
    """The reply once saved (its save follows the upstream's close by a moment)."""
    for _ in range(100):
        message = await Message.objects.aget(pk=reply_id)
        if message.status != Message.Status.STREAMING:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"reply {reply_id} is still streaming")


def shown_text(sock: ChatSocket, reply_id: int) -> str:
    """What a page that picked the reply up shows: its snapshot, then the batches after it."""
    text = ""
    batch = re.compile(rf'<span id="msg-{reply_id}-body" hx-swap-oob="beforeend">(.*?)</span>')
    for frame in sock.frames:
        for m in SNAPSHOT.finditer(frame):
            if int(m.group(1)) == reply_id:
                text = html.unescape(m.group(2))
        text += "".join(html.unescape(t) for t in batch.findall(frame))
    return text


async def test_a_page_back_within_the_grace_is_shown_the_text_so_far_then_follows_and_stops_it(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    grace: float,
) -> None:
    first = await chat_socket(conversation, user)
    started = await start_slow_reply(first, fake_anthropic, deltas=10)
    reply_id, record = started.reply_id, started.record
    await leave(first)  # the page reloads

    await asyncio.sleep(grace / 2)
    assert record.disconnected_at is None  # still answering, nobody watching
    back = await chat_socket(conversation, user, after=reply_id)
    await back.until("Still answering — picked up where you left off.")
    written_when_back = record.deltas_written
    await back.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')  # it follows

    await asyncio.sleep(grace)  # past the grace: the page watching keeps it going
    assert record.disconnected_at is None
    assert record.deltas_written > written_when_back

    stopped_at = time.monotonic()
    await back.send("stop")
    assert await back.finished(reply_id) == "interrupted"
    assert await fake_anthropic.await_disconnect(record) - stopped_at < 0.1
    saved = await outcome(reply_id)
    assert saved.stop_reason == Message.StopReason.USER_STOP
    assert saved.content == shown_text(back, reply_id)
    assert saved.content.startswith(first.text_sent(reply_id))


async def test_a_reply_nobody_comes_back_to_stops_at_the_end_of_the_grace_keeping_all_its_text(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    grace: float,
) -> None:
    page = await chat_socket(conversation, user)
    started = await start_slow_reply(page, fake_anthropic, deltas=10)
    reply_id, record = started.reply_id, started.record
    left_at = time.monotonic()
    await page.comm.disconnect(timeout=5)

    gone = await fake_anthropic.await_disconnect(record, timeout=grace + 5)
    assert grace - 0.5 <= gone - left_at <= grace + 0.5
    saved = await outcome(reply_id)
    assert (saved.status, saved.stop_reason) == ("interrupted", "disconnect")
    # Everything generated until the end of the grace is kept, more than the page saw.
    assert saved.content.startswith(page.text_sent(reply_id))
    assert len(saved.content) > len(page.text_sent(reply_id))
    assert record.text_written.startswith(saved.content)
    # The reply leaves the registry once its save has returned to the event loop: a moment after
    # the row changed, as this test's own read of the row may be answered first.
    for _ in range(20):
        if registry.for_conversation(conversation.pk) is None:
            break
        await asyncio.sleep(0.01)
    assert registry.for_conversation(conversation.pk) is None


async def test_a_reopened_page_after_the_grace_shows_why_the_reply_stopped(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    grace: float,
) -> None:
    page = await chat_socket(conversation, user)
    started = await start_slow_reply(page, fake_anthropic, deltas=10)
    reply_id, record = started.reply_id, started.record
    await page.comm.disconnect(timeout=5)
    await fake_anthropic.await_disconnect(record, timeout=grace + 5)
    later = await chat_socket(conversation, user, after=reply_id - 1)
    await later.until("stopped: nobody was watching")


async def test_explicit_stops_are_immediate_whatever_the_grace(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_DISCONNECT_GRACE = 30
    one = await chat_socket(conversation, user)
    two = await chat_socket(conversation, user)
    started = await start_slow_reply(one, fake_anthropic, deltas=10)
    reply_id, record = started.reply_id, started.record
    stopped_at = time.monotonic()
    await two.send("stop")  # from the other tab
    assert await one.finished(reply_id) == "interrupted"
    assert await fake_anthropic.await_disconnect(record) - stopped_at < 0.1

    # Stop & Send from the tab that did not start it: stopped, saved, then the new turn.
    started = await start_slow_reply(one, fake_anthropic, deltas=10)
    reply_id, record = started.reply_id, started.record
    stopped_at = time.monotonic()
    await two.send("stop_and_send", "Something else")
    assert await fake_anthropic.await_disconnect(record) - stopped_at < 0.1
    next_id = reply_id
    while next_id <= reply_id:
        _, next_id = await two.turn_started()
    assert (await outcome(reply_id)).stop_reason == "user_stop"
    await two.send("stop")
    await two.finished(next_id)


async def test_a_door_that_holds_its_turn_stops_it_at_once_on_leaving(
    fake_anthropic: FakeAnthropicServer,
    conversation: Conversation,
    settings: Any,
) -> None:
    # The HTTP API's hang-up and the terminal's Ctrl+C: explicit, so no grace.
    settings.CHAT_DISCONNECT_GRACE = 30
    fake_anthropic.reset(SLOW)
    async with turns.start(conversation=conversation, text="Go") as turn:
        record = await fake_anthropic.await_request()
        async for event in turn:
            if isinstance(event, TextBatch):
                break
        left_at = time.monotonic()
    assert await fake_anthropic.await_disconnect(record) - left_at < 0.1
    saved = await outcome(turn.reply.message_id)
    assert (saved.status, saved.stop_reason) == ("interrupted", "disconnect")


async def test_a_watcher_on_another_process_that_stops_renewing_no_longer_counts(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    grace: float,
    settings: Any,
) -> None:
    page = await chat_socket(conversation, user)
    started = await start_slow_reply(page, fake_anthropic, deltas=10)
    reply_id, record = started.reply_id, started.record
    reply = registry.get(reply_id)
    assert reply is not None
    # A page of another process announces itself once, then its process dies.
    ghost = await layer.new_channel()
    await layer.send(
        reply.channel, {"type": "reply.watch", "message_id": reply_id, "watcher": ghost}
    )
    await asyncio.sleep(0.1)
    left_at = time.monotonic()
    await page.comm.disconnect(timeout=5)
    gone = await fake_anthropic.await_disconnect(record, timeout=10)
    # It counted for three renewal periods, then the grace ran.
    expected = 3 * settings.CHAT_WATCH_RENEW + grace
    assert expected - 0.6 <= gone - left_at <= expected + 0.5
    assert (await outcome(reply_id)).stop_reason == "disconnect"


async def test_with_no_grace_a_page_that_leaves_stops_its_reply_at_once(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_DISCONNECT_GRACE = 0
    page = await chat_socket(conversation, user)
    started = await start_slow_reply(page, fake_anthropic, deltas=10)
    reply_id, record = started.reply_id, started.record
    left_at = await leave(page)
    assert await fake_anthropic.await_disconnect(record) - left_at < 0.1
    saved = await outcome(reply_id)
    assert saved.content == page.text_sent(reply_id)
