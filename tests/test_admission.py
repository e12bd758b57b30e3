"""Admission control: a process that has no room for another reply refuses new turns with a
clear "busy" (nothing saved, the text kept), counts them, and never refuses or delays a stop."""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from chat.data import api_tokens, services
from chat.models import Conversation, Message
from chat.replies import admission, loop_lag, process_metrics
from chat.replies.registry import registry
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import QUICK_REPLY, SLOW, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)


def refused(reason: str) -> float:
    value = process_metrics.REGISTRY.get_sample_value(
        "stopchat_turns_refused_total", {"reason": reason}
    )
    return value or 0.0


def stops_timed() -> float:
    return process_metrics.REGISTRY.get_sample_value("stopchat_stop_latency_seconds_count") or 0.0


async def other_conversation(user: User) -> Conversation:
    created: Conversation = await database_sync_to_async(services.conversation_create)(user=user)
    return created


async def test_a_full_process_refuses_a_new_turn_says_busy_and_saves_nothing_but_stops(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_MAX_REPLIES_PER_PROCESS = 1
    first = await chat_socket(conversation, user)
    streaming = await start_slow_reply(first, fake_anthropic)

    elsewhere = await other_conversation(user)
    second = await chat_socket(elsewhere, user)
    before, timed = refused("replies"), stops_timed()
    await second.send("send", "Are you there?")
    notice = html.unescape(
        (await second.until(r'class="notice notice--error"[^>]*>(.*?)</div>'))[1]
    )
    assert notice == f"{admission.BUSY} Your message is still in the box."
    assert refused("replies") == before + 1
    assert await Message.objects.filter(conversation=elsewhere).acount() == 0
    assert len(fake_anthropic.requests) == 1  # the model was never asked

    # The full process still stops its own reply at once, and then has room again.
    stopped_at = time.monotonic()
    await first.send("stop")
    closed_at = await fake_anthropic.await_disconnect(streaming.record)
    assert closed_at - stopped_at < 0.1
    assert await first.finished(streaming.reply_id) == "interrupted"
    assert stops_timed() == timed + 1  # the stop's latency went into the histogram
    await second.send("send", f"Now? {QUICK_REPLY}")
    _, reply_id = await second.turn_started()
    assert await second.finished(reply_id) == "complete"


async def test_a_lagging_loop_refuses_new_turns_until_it_catches_up(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_MAX_LOOP_LAG = 0.05
    monitor = loop_lag.ensure_running()
    sock = await chat_socket(conversation, user)
    for _ in range(3):  # the loop held up three times: every timer is late
        await asyncio.sleep(loop_lag.SAMPLE_EVERY)
        time.sleep(0.2)  # noqa: ASYNC251 (on purpose: the loop is held up)
    await asyncio.sleep(0)
    assert monitor.lag() > 0.05
    before = refused("loop_lag")
    await sock.send("send", "Hello")
    await sock.until("This server is busy: try again in a moment.")
    assert refused("loop_lag") == before + 1
    assert await Message.objects.filter(conversation=conversation).acount() == 0

    await asyncio.sleep(loop_lag.WINDOW + 0.2)  # a second of a free loop
    assert monitor.lag() < 0.05
    await sock.send("send", f"Hello again {QUICK_REPLY}")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"


def test_the_api_answers_503_with_retry_after_and_saves_nothing(
    client: Client,
    user: User,
    conversation: Conversation,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.CHAT_MAX_REPLIES_PER_PROCESS = 1
    _, token = api_tokens.token_create(user=user, name="script")
    busy = admission.ServerBusy("replies")
    assert (busy.retry_after, str(busy)) == (admission.RETRY_AFTER, admission.BUSY)

    monkeypatch.setattr(registry, "live", lambda: 1)  # one reply streams already
    response = client.post(
        f"/api/conversations/{conversation.pk}/messages/",
        {"message": "Hello"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 503
    assert response["Retry-After"] == str(admission.RETRY_AFTER)
    assert response.json() == {"error": {"type": "overloaded_error", "message": admission.BUSY}}
    assert not Message.objects.filter(conversation=conversation).exists()


def test_the_admin_page_and_metrics_show_the_process_figures(
    client: Client, staff: User, settings: Any
) -> None:
    settings.CHAT_MAX_REPLIES_PER_PROCESS = 100
    settings.CHAT_MAX_LOOP_LAG = 0.15
    client.force_login(staff)
    page = client.get("/admin/chat/metrics/").content.decode()
    assert 'id="metric-loop-lag"' in page and "150 ms" in page
    assert (
        'id="metric-refused-replies"' in page
        and "(<code>CHAT_MAX_REPLIES_PER_PROCESS</code>)" in page
    )
    text = client.get("/metrics").content.decode()
    for family in (
        "# TYPE stopchat_turns_refused_total counter",
        "# TYPE stopchat_event_loop_lag_seconds gauge",
        "# TYPE stopchat_replies_live gauge",
        "# TYPE stopchat_stop_latency_seconds histogram",
    ):
        assert family in text
    assert 'stopchat_turns_refused_total{reason="loop_lag"}' in text
    assert 'stopchat_stop_latency_seconds_bucket{le="0.1"}' in text


async def test_a_burst_of_turns_at_once_is_admitted_only_up_to_the_limit(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    user: User,
    settings: Any,
) -> None:
    """Turns still being saved hold their place: six messages sent at once to a process with
    room for three start three replies, and the other three are told the server is busy."""
    settings.CHAT_MAX_REPLIES_PER_PROCESS = 3
    fake_anthropic.reset(SLOW)
    socks = [await chat_socket(await other_conversation(user), user) for _ in range(6)]
    await asyncio.gather(*(sock.send("send", "All at once") for sock in socks))
    outcomes = await asyncio.gather(
        *(sock.until(r'id="messages" hx-swap-oob="beforeend"|notice--error') for sock in socks)
    )
    busy = [match[0] == "notice--error" for match in outcomes]
    assert sum(busy) == 3
    assert await Message.objects.filter(role="user").acount() == 3
    for sock, refused_here in zip(socks, busy, strict=True):
        if not refused_here:
            await sock.send("stop")
