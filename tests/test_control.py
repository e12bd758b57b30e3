"""Stop from anywhere (in one process): a second tab, the HTTP endpoints, orphans, the reaper."""

from __future__ import annotations

import html
import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import BATCH, QUICK, SLOW, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)

SNAPSHOT_BODY = re.compile(r'<div class="msg-body" id="msg-(\d+)-body"[^>]*>(.*?)</div>', re.DOTALL)


async def signed_in(user: User) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


def seen_by_follower(frames: list[str], message_id: int) -> str:
    """A following tab's text: the last snapshot of the bubble, then the batches after it."""
    text = ""
    for frame in frames:
        for mid, body in SNAPSHOT_BODY.findall(frame):
            if int(mid) == message_id and 'hx-swap-oob="true"' in frame:
                text = html.unescape(body)
        for mid, body in BATCH.findall(frame):
            if int(mid) == message_id:
                text += html.unescape(body)
    return text


async def test_second_tab_follows_the_reply_and_its_stop_closes_upstream(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    owner = await chat_socket(conversation, user)
    started = await start_slow_reply(owner, fake_anthropic, "Tell me everything", deltas=5)
    reply_id, record = started.reply_id, started.record

    follower = await chat_socket(conversation, user)  # opens mid-reply
    await follower.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')  # live batches

    stopped_at = time.monotonic()
    await follower.send("stop")
    assert await owner.finished(reply_id) == "interrupted"
    assert await follower.finished(reply_id) == "interrupted"
    assert await fake_anthropic.await_disconnect(record) - stopped_at < 0.1
    assert record.deltas_after(stopped_at) <= 1

    saved = await Message.objects.aget(pk=reply_id)
    assert saved.stop_reason == Message.StopReason.USER_STOP
    assert saved.content == owner.text_sent(reply_id)
    assert seen_by_follower(follower.frames, reply_id) == saved.content
    # Both tabs are ready: the follower can send the next message itself.
    fake_anthropic.update_config(interval=0.001, deltas=3)
    await follower.send("send", "Next")
    _, next_id = await follower.turn_started()
    assert await follower.finished(next_id) == "complete"


async def test_a_page_rendered_before_a_turn_started_is_caught_up_when_its_socket_opens(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    page_newest = 0  # the second page was rendered while the conversation was empty
    owner = await chat_socket(conversation, user)
    started = await start_slow_reply(owner, fake_anthropic, "Tell me everything", deltas=5)
    user_id, reply_id = started.user_id, started.reply_id

    late = await chat_socket(conversation, user, after=page_newest)
    caught_up = await late.until(r'(?s)<div id="messages" hx-swap-oob="innerHTML">(.*)</div>')
    assert f'id="msg-{user_id}"' in caught_up.group(1)
    assert f'id="msg-{reply_id}"' in caught_up.group(1)
    await late.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')  # then live batches

    await late.send("stop")
    assert await late.finished(reply_id) == "interrupted"
    assert await owner.finished(reply_id) == "interrupted"
    saved = await Message.objects.aget(pk=reply_id)
    assert seen_by_follower(late.frames, reply_id) == saved.content == owner.text_sent(reply_id)
    # The turn was added to that page once: by the catch-up, not again by its start frame.
    assert not any('id="messages" hx-swap-oob="beforeend"' in f for f in late.frames)
    # Its checkpointed text was never extended by live batches before the owner's snapshot.
    snapshot = f'id="msg-{reply_id}" class="msg msg--assistant msg--streaming" hx-swap-oob'
    first_snapshot = next(i for i, f in enumerate(late.frames) if snapshot in f)
    first_batch = next(i for i, f in enumerate(late.frames) if f'id="msg-{reply_id}-body" hx' in f)
    assert first_snapshot < first_batch

    # A page that is up to date gets no catch-up.
    current = await chat_socket(conversation, user, after=reply_id)
    await current.until(rf'id="msg-{reply_id}" class="msg msg--assistant msg--interrupted"')
    assert not any('hx-swap-oob="innerHTML"' in f for f in current.frames)


async def test_stop_and_send_from_the_second_tab_keeps_the_order(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    owner = await chat_socket(conversation, user)
    follower = await chat_socket(conversation, user)
    first_reply = (await start_slow_reply(owner, fake_anthropic, "First")).reply_id
    fake_anthropic.update_config(interval=0.001, deltas=3)
    await follower.send("stop_and_send", "Second, from the other tab")
    assert await owner.finished(first_reply) == "interrupted"
    assert (await follower.turn_started())[1] == first_reply  # the other tab saw it start
    _, second_reply = await follower.turn_started()
    assert await follower.finished(second_reply) == "complete"
    saved = [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]
    assert [(m.role, m.status) for m in saved] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert saved[2].content == "Second, from the other tab"


async def test_http_stop_answers_with_the_outcome_and_closes_upstream(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    started = await start_slow_reply(sock, fake_anthropic, "Go", deltas=5)
    reply_id, record = started.reply_id, started.record

    client = await signed_in(user)
    url = reverse("chat:conversation_stop", kwargs={"conversation_id": conversation.pk})
    stopped_at = time.monotonic()
    response = await client.post(url, headers={"accept": "application/json"})
    assert await fake_anthropic.await_disconnect(record) - stopped_at < 0.1
    body = response.json()
    saved = await Message.objects.aget(pk=reply_id)
    assert response.status_code == 200
    assert body["outcome"] == "stopped" and body["message"] == reply_id
    assert body["chars_saved"] == len(saved.content) > 0
    assert saved.status == "interrupted"
    assert await sock.finished(reply_id) == "interrupted"

    again = await client.post(url, headers={"accept": "application/json"})
    assert again.json()["outcome"] == "nothing"
    fragment = (await client.post(url)).content.decode()
    assert 'id="notice"' in fragment and "Nothing is streaming" in fragment


async def test_stop_all_stops_every_reply_of_the_user_and_says_how_many(
    fake_anthropic: FakeAnthropicServer, chat_socket: SocketFactory, user: User
) -> None:
    fake_anthropic.reset(SLOW)
    conversations = [await Conversation.objects.acreate(user=user) for _ in range(2)]
    sockets = [await chat_socket(c, user) for c in conversations]
    replies = []
    for sock in sockets:
        await sock.send("send", "Go")
        replies.append((await sock.turn_started())[1])
    client = await signed_in(user)
    active = (
        await client.get(reverse("chat:active_replies"), headers={"accept": "application/json"})
    ).json()["active"]
    assert sorted(a["message"] for a in active) == sorted(replies)
    page = (await client.get(reverse("chat:active_replies"))).content.decode()
    assert page.count("characters so far") == 2
    assert "Stop all" in page

    response = await client.post(reverse("chat:conversation_stop_all"))
    assert "Stopped 2 replies." in response.content.decode()
    for sock, reply_id in zip(sockets, replies, strict=True):
        assert await sock.finished(reply_id) == "interrupted"
    for record in fake_anthropic.requests:
        assert (await fake_anthropic.await_finish(record)).completed is False


async def test_http_stop_of_an_orphan_closes_it_from_its_last_checkpoint(
    conversation: Conversation, user: User, settings: object
) -> None:
    settings.CHAT_STOP_ANSWER_TIMEOUT = 0.2  # type: ignore[attr-defined]
    await Message.objects.acreate(conversation=conversation, role="user", content="Hi")
    orphan = await Message.objects.acreate(
        conversation=conversation, role="assistant", status="streaming", content="Checkpointed"
    )
    client = await signed_in(user)
    response = await client.post(
        reverse("chat:conversation_stop", kwargs={"conversation_id": conversation.pk}),
        headers={"accept": "application/json"},
    )
    assert response.json()["outcome"] == "orphan"
    assert response.json()["chars_saved"] == len("Checkpointed")
    await orphan.arefresh_from_db()
    assert (orphan.status, orphan.stop_reason, orphan.content) == (
        "interrupted",
        "server_restart",
        "Checkpointed",
    )


def test_http_stop_is_owner_only_and_csrf_protected(
    conversation: Conversation, user: User, other_user: User
) -> None:
    url = reverse("chat:conversation_stop", kwargs={"conversation_id": conversation.pk})
    anonymous = Client()
    assert anonymous.post(url).status_code == 302
    stranger = Client()
    stranger.force_login(other_user)
    assert stranger.post(url).status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(url).status_code == 403
    assert strict.get(url).status_code == 405


def test_reaper_closes_only_replies_whose_heartbeat_is_stale(
    conversation: Conversation, user: User
) -> None:
    other = Conversation.objects.create(user=user)
    stale = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        content="Saved two seconds ago",
        heartbeat_at=timezone.now() - timedelta(seconds=60),
    )
    live = Message.objects.create(
        conversation=other, role="assistant", status="streaming", heartbeat_at=timezone.now()
    )
    call_command("reap_orphans", "--older-than", "10")
    stale.refresh_from_db()
    live.refresh_from_db()
    assert (stale.status, stale.stop_reason, stale.content) == (
        "interrupted",
        "server_restart",
        "Saved two seconds ago",
    )
    assert stale.tokens_estimated
    assert live.status == "streaming"


async def test_a_stop_racing_the_owners_reload_answers_without_waiting_for_the_timeout(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    # The owner tab closes (a reload): it ends its reply itself but reads no more events, so
    # the other tab's Stop must notice the reply ended instead of waiting for an answer.
    fake_anthropic.reset(SLOW)
    one = await chat_socket(conversation, user, after=0)
    two = await chat_socket(conversation, user, after=0)
    await one.send("send", "Go")
    _, reply_id = await one.turn_started()
    await two.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')
    await one.comm.send_input({"type": "websocket.disconnect", "code": 1001})
    started = time.monotonic()
    await two.send("stop")
    await two.until(r'id="notice" class="notice notice--')
    assert time.monotonic() - started < 1.0  # not CHAT_STOP_ANSWER_TIMEOUT (2 s)
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.stop_reason == Message.StopReason.DISCONNECT


async def test_new_settings_apply_to_the_next_reply_of_an_already_open_socket(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(QUICK)
    sock = await chat_socket(conversation, user)  # opened before the change
    await Conversation.objects.filter(pk=conversation.pk).aupdate(
        model="claude-haiku-5-5", system_prompt="Answer like a pirate."
    )
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    record = await fake_anthropic.await_request()
    assert record.body["model"] == "claude-haiku-5-5"
    assert "Answer like a pirate." in str(record.body.get("system"))
    assert (await Message.objects.aget(pk=reply_id)).model == "claude-haiku-5-5"


async def test_a_live_reply_closed_elsewhere_stops_streaming_at_its_next_checkpoint(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: object,
) -> None:
    """A stop that gave up waiting for a slow owner (or a reaper that misjudged it) has closed
    the reply in the database: the owner, still alive, must stop spending tokens on it."""
    settings.CHAT_CHECKPOINT_INTERVAL = 0.2  # type: ignore[attr-defined]
    sock = await chat_socket(conversation, user)
    started = await start_slow_reply(sock, fake_anthropic, "Go on", deltas=2)
    reply_id, record = started.reply_id, started.record
    closed_at = time.monotonic()
    await Message.objects.filter(pk=reply_id).aupdate(
        status=Message.Status.INTERRUPTED, stop_reason=Message.StopReason.SERVER_RESTART
    )
    await fake_anthropic.await_disconnect(record, timeout=2)
    assert record.disconnected_at is not None and record.disconnected_at - closed_at < 0.5
    await sock.finished(reply_id)
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.status == Message.Status.INTERRUPTED  # the outcome recorded elsewhere stands
    assert saved.stop_reason == Message.StopReason.SERVER_RESTART


async def test_the_reaper_never_closes_a_reply_still_streaming_in_its_own_process(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    """Under heavy load a live reply's heartbeat falls behind; its own process is not dead.
    (The benchmark at 500 concurrent replies saw the reaper close hundreds of live replies.)"""
    from chat.replies.reaper import reap_once

    fake_anthropic.reset(SLOW)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Go on")
    _, live = await sock.turn_started()
    other = await Conversation.objects.acreate(user=user, title="dead process")
    dead = await Message.objects.acreate(
        conversation=other, role="assistant", status="streaming", content="half"
    )
    long_ago = timezone.now() - timedelta(minutes=5)
    await Message.objects.filter(pk__in=[live, dead.pk]).aupdate(heartbeat_at=long_ago)

    assert await reap_once(older_than=10) == 1
    assert (await Message.objects.aget(pk=dead.pk)).status == "interrupted"
    assert (await Message.objects.aget(pk=live)).status == "streaming"
    await sock.send("stop")
    assert await sock.finished(live) == "interrupted"
