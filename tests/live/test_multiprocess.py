"""Stop from anywhere, across server processes: two daphne processes sharing Redis and
PostgreSQL, the fake Anthropic API upstream, and clients that sign in once and talk to either.

Each test starts a reply on one process and stops it from the other (HTTP, a second tab's
socket, stop-all), kills a process mid-reply, or restarts Redis mid-session, and checks the
three things that matter: the model's side saw the stream closed within 100 ms of the stop,
the database holds exactly the partial the user was shown, and every tab shows the final form.

Needs Redis and PostgreSQL (``make test`` starts them on 127.0.0.1:6379 and :5432 when they are
installed; ``TEST_REDIS_URL`` / ``TEST_POSTGRES_URL`` point elsewhere). Without them these tests
skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from dataclasses import dataclass
from typing import Any

import pytest

from chat.testing.fake_anthropic import FakeAnthropicControl, RequestRecord
from chat.testing.live import Cluster, DaphneProcess
from chat.testing.live_client import Tab, upstream
from tests.live.helpers import ORPHAN_AFTER, REAPER_INTERVAL, STOP_BUDGET, PrivateRedis

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


#: On a test that checks STOP_BUDGET (a 100 ms budget across processes): under xdist it runs
#: while no test runs on another worker (tests/conftest.py).
alone = pytest.mark.alone


async def assert_cut_within_budget(
    control: FakeAnthropicControl, marker: str, stop_sent_at: float
) -> RequestRecord:
    """The model's side saw the stream closed within STOP_BUDGET of the stop."""
    record = await upstream(control, marker, finished=True)
    assert record.outcome == "client_disconnected", record.outcome
    assert record.disconnected_at is not None
    latency = record.disconnected_at - stop_sent_at
    assert latency < STOP_BUDGET, f"upstream closed {latency * 1000:.1f} ms after the stop"
    return record


# --------------------------------------------------------------------------------------------
# Stops that cross processes
# --------------------------------------------------------------------------------------------


@alone
async def test_http_stop_on_another_process_reaches_the_reply_and_saves_what_was_shown(
    cluster: Cluster,
) -> None:
    session = cluster.session
    cid = await asyncio.to_thread(session.new_conversation, cluster.a.base_url)
    tab = await Tab.open(cluster.a.base_url, cid, session)
    marker = f"http-stop-{secrets.token_hex(4)}"
    message_id = await tab.start_reply(marker)

    stop_sent_at = time.monotonic()
    status, body = await asyncio.to_thread(
        session.post_json, cluster.b.base_url, f"/conversations/{cid}/stop/"
    )

    assert status == 200, body
    assert body["outcome"] == "stopped", body
    record = await assert_cut_within_budget(cluster.control, marker, stop_sent_at)
    assert await tab.finished(message_id) == "interrupted"
    saved = cluster.message(message_id)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    assert saved["content"] == tab.text(message_id)
    assert body["chars_saved"] == len(saved["content"]) > 0
    assert record.text_written.startswith(saved["content"])
    await tab.close()


@alone
async def test_second_tab_on_another_process_follows_the_reply_and_its_stop_works(
    cluster: Cluster,
) -> None:
    session = cluster.session
    cid = await asyncio.to_thread(session.new_conversation, cluster.a.base_url)
    owner = await Tab.open(cluster.a.base_url, cid, session)
    other = await Tab.open(cluster.b.base_url, cid, session)
    await asyncio.sleep(0.3)  # the second tab's hello reaches the first
    marker = f"tab-stop-{secrets.token_hex(4)}"
    message_id = await owner.start_reply(marker)
    assert await other.turn_started() == message_id
    await other.batches(message_id, 3)

    stop_sent_at = await other.send("stop")

    await assert_cut_within_budget(cluster.control, marker, stop_sent_at)
    assert await owner.finished(message_id) == "interrupted"
    assert await other.finished(message_id) == "interrupted"
    saved = cluster.message(message_id)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    # Both tabs were shown the same text, and that is what was saved.
    assert owner.text(message_id) == other.text(message_id) == saved["content"] != ""
    # Both composers are ready again: the final frame swaps Stop back to Send.
    for tab in (owner, other):
        final = next(f.text for f in reversed(tab.frames) if f'id="msg-{message_id}"' in f.text)
        assert 'data-streaming="false"' in final and "Stop &amp; Send" not in final
    await owner.close()
    await other.close()


@alone
async def test_stop_all_on_one_process_stops_replies_on_both(cluster: Cluster) -> None:
    session = cluster.session
    tabs: list[tuple[Tab, int, str]] = []
    for server in (cluster.a, cluster.b):
        cid = await asyncio.to_thread(session.new_conversation, server.base_url)
        tab = await Tab.open(server.base_url, cid, session)
        marker = f"stop-all-{secrets.token_hex(4)}"
        tabs.append((tab, await tab.start_reply(marker), marker))

    stop_sent_at = time.monotonic()
    status, body = await asyncio.to_thread(
        session.post_json, cluster.b.base_url, "/conversations/stop/"
    )

    assert status == 200, body
    assert body["stopped"] == 2, body
    for tab, message_id, marker in tabs:
        await assert_cut_within_budget(cluster.control, marker, stop_sent_at)
        assert await tab.finished(message_id) == "interrupted"
        saved = cluster.message(message_id)
        assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
        assert saved["content"] == tab.text(message_id)
        await tab.close()
    status, body = await asyncio.to_thread(
        session.post_json, cluster.a.base_url, "/conversations/stop/"
    )
    assert (status, body["stopped"]) == (200, 0)


# --------------------------------------------------------------------------------------------
# A process killed mid-reply
# --------------------------------------------------------------------------------------------


async def _wait_final(cluster: Cluster, message_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (row := cluster.message(message_id))["status"] == "streaming":
        assert time.monotonic() < deadline, f"message {message_id} still streaming"
        await asyncio.sleep(0.2)
    return row


@dataclass
class LongReply:
    """A long reply streaming on a process of its own (which the test may kill)."""

    process: DaphneProcess
    conversation_id: str
    tab: Tab
    marker: str
    message_id: int


async def long_reply_on_own_process(cluster: Cluster, name: str) -> LongReply:
    process = await asyncio.to_thread(cluster.start_process, name)
    cid = await asyncio.to_thread(cluster.session.new_conversation, process.base_url)
    tab = await Tab.open(process.base_url, cid, cluster.session)
    marker = f"{name}-{secrets.token_hex(4)}"
    message_id = await tab.start_reply(f"{marker} [[fake:deltas=2000]]")
    return LongReply(process, cid, tab, marker, message_id)


async def test_kill_9_mid_reply_leaves_the_checkpointed_text_interrupted_after_the_reaper(
    cluster: Cluster,
) -> None:
    reply = await long_reply_on_own_process(cluster, "doomed")
    doomed, tab, message_id = reply.process, reply.tab, reply.message_id
    await asyncio.sleep(3.0)  # at least one checkpoint

    killed_at = time.monotonic()
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(timeout=10)

    # The reaper of a surviving process closes it once its heartbeat is stale.
    row = await _wait_final(cluster, message_id, timeout=ORPHAN_AFTER + REAPER_INTERVAL + 6)
    assert (row["status"], row["stop_reason"]) == ("interrupted", "server_restart")
    shown = tab.text(message_id)
    assert shown.startswith(row["content"])
    # At most CHAT_CHECKPOINT_INTERVAL (2 s) of text is lost (plus the write's own latency).
    assert row["content"].startswith(tab.text(message_id, before=killed_at - 2.3))
    assert len(row["content"]) > 0
    await tab.close()


async def test_a_process_told_to_stop_saves_its_streaming_reply_before_it_exits(
    cluster: Cluster,
) -> None:
    reply = await long_reply_on_own_process(cluster, "sigterm")
    leaving, tab, marker, message_id = reply.process, reply.tab, reply.marker, reply.message_id

    leaving.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(leaving.process.wait, 15)

    row = cluster.message(message_id)
    assert (row["status"], row["stop_reason"]) == ("interrupted", "disconnect")
    assert row["content"] == tab.text(message_id) != ""
    record = await upstream(cluster.control, marker, finished=True)
    assert record.outcome == "client_disconnected"
    await tab.close()


async def test_http_stop_of_a_reply_whose_process_died_closes_it_at_once(
    cluster: Cluster,
) -> None:
    reply = await long_reply_on_own_process(cluster, "orphan")
    doomed, cid, tab, message_id = reply.process, reply.conversation_id, reply.tab, reply.message_id
    session = cluster.session
    watcher = await Tab.open(cluster.b.base_url, cid, session)
    await asyncio.sleep(2.5)
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(timeout=10)

    started = time.monotonic()
    status, body = await asyncio.to_thread(
        session.post_json, cluster.b.base_url, f"/conversations/{cid}/stop/"
    )
    took = time.monotonic() - started

    assert status == 200, body
    assert body["outcome"] == "orphan", body
    assert took < 4.0, f"the orphan stop took {took:.1f} s"  # the 2 s wait for an answer
    row = cluster.message(message_id)
    assert (row["status"], row["stop_reason"]) == ("interrupted", "server_restart")
    assert body["chars_saved"] == len(row["content"])
    # A tab open on a surviving process is shown the final form.
    assert await watcher.finished(message_id) == "interrupted"
    await tab.close()
    await watcher.close()


# --------------------------------------------------------------------------------------------
# Redis restarts
# --------------------------------------------------------------------------------------------


@alone
async def test_after_redis_restarts_stops_work_again_and_while_it_is_down_they_say_so(
    cluster: Cluster, private_redis: PrivateRedis
) -> None:
    one = await asyncio.to_thread(cluster.start_process, "redis-1", REDIS_URL=private_redis.url)
    two = await asyncio.to_thread(cluster.start_process, "redis-2", REDIS_URL=private_redis.url)
    try:
        session = cluster.session
        cid = await asyncio.to_thread(session.new_conversation, one.base_url)
        owner = await Tab.open(one.base_url, cid, session)
        other = await Tab.open(two.base_url, cid, session)
        await asyncio.sleep(0.3)
        marker = f"redis-{secrets.token_hex(4)}"
        message_id = await owner.start_reply(f"{marker} [[fake:deltas=3000]]")
        await other.batches(message_id, 3)

        private_redis.stop()
        # While Redis is down: a stop from another process cannot be delivered, and says so.
        status, body = await asyncio.to_thread(
            session.post_json, two.base_url, f"/conversations/{cid}/stop/"
        )
        assert status == 503, body
        assert body["outcome"] == "unavailable"
        assert "unreachable" in body["detail"]
        notices = len(other.notices())
        await other.send("stop")
        await other.until(r"notice--error[^>]*>[^<]*unreachable", start=len(other.frames))
        assert len(other.notices()) > notices
        # The reply itself goes on: its owner's socket needs no Redis.
        count = owner.batch_count(message_id)
        await owner.batches(message_id, count + 3)
        assert cluster.message(message_id)["status"] == "streaming"

        private_redis.start()
        await asyncio.sleep(3.0)  # the sockets' layer loops retry at most every 2 s

        stop_sent_at = time.monotonic()
        status, body = await asyncio.to_thread(
            session.post_json, two.base_url, f"/conversations/{cid}/stop/"
        )
        assert status == 200, body
        assert body["outcome"] == "stopped", body
        await assert_cut_within_budget(cluster.control, marker, stop_sent_at)
        assert await owner.finished(message_id) == "interrupted"
        # The other tab re-joined the group after the restart and is shown the final form.
        assert await other.finished(message_id) == "interrupted"
        row = cluster.message(message_id)
        assert (row["status"], row["stop_reason"]) == ("interrupted", "user_stop")
        assert row["content"] == owner.text(message_id)
        await owner.close()
        await other.close()
    finally:
        one.stop()
        two.stop()
