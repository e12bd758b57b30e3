"""Limits: replies streaming at once and messages a minute per user, frame floods, and a history
longer than the model's context window. (A 1 MB frame through daphne: tests/live/test_limits.py.)"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.providers import ChatTurn
from chat.replies.context import ContextTooSmall, estimate_prompt_tokens, fit_history
from chat.testing.conversations import add
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import QUICK, SLOW, SocketFactory


async def count_messages(user: User) -> int:
    return await Message.objects.filter(conversation__user=user).acount()


@pytest.mark.django_db(transaction=True)
async def test_a_user_may_have_three_replies_streaming_and_the_fourth_is_refused_until_one_ends(
    fake_anthropic: FakeAnthropicServer, chat_socket: SocketFactory, user: User, settings: Any
) -> None:
    settings.CHAT_MAX_CONCURRENT_REPLIES = 3  # the default
    fake_anthropic.reset(SLOW)
    socks, replies = [], []
    for n in range(4):
        conversation = await Conversation.objects.acreate(user=user, title=f"c{n}")
        socks.append(await chat_socket(conversation, user))
    for sock in socks[:3]:
        await sock.send("send", "Long answer please")
        replies.append((await sock.turn_started())[1])
    before = await count_messages(user)

    await socks[3].send("send", "One more")
    await socks[3].until(r"You already have 3 replies streaming.*still in the box")
    assert await count_messages(user) == before  # nothing saved
    await fake_anthropic.await_request(3)
    assert len(fake_anthropic.requests) == 3

    await socks[0].send("stop")
    assert await socks[0].finished(replies[0]) == "interrupted"
    await socks[3].send("send", "One more")
    _, fourth = await socks[3].turn_started()
    for sock, reply in [(socks[1], replies[1]), (socks[2], replies[2]), (socks[3], fourth)]:
        await sock.send("stop")
        assert await sock.finished(reply) == "interrupted"


@pytest.mark.django_db(transaction=True)
async def test_messages_a_minute_are_limited_per_user_and_the_refused_one_is_not_saved(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_MESSAGES_PER_MINUTE = 2
    fake_anthropic.reset(QUICK)
    sock = await chat_socket(conversation, user)
    for text in ("one", "two"):
        await sock.send("send", text)
        _, reply = await sock.turn_started()
        assert await sock.finished(reply) == "complete"
    await sock.send("send", "three")
    await sock.until(r"You have sent 2 messages in the last minute")
    assert await count_messages(user) == 4
    # Regenerating is not a new message: it is only held to the streaming limit.
    await sock.send("regenerate")
    match = await sock.until(r'<div id="messages" hx-swap-oob="beforeend"><article id="msg-(\d+)"')
    assert await sock.finished(int(match.group(1))) == "complete"


@pytest.mark.django_db(transaction=True)
async def test_a_flood_of_frames_is_cut_to_a_budget_stop_still_works_and_nothing_is_stored(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_FRAME_BURST = 5
    settings.CHAT_FRAMES_PER_SECOND = 2
    fake_anthropic.reset(SLOW)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Long answer please")
    _, reply = await sock.turn_started()
    # 200 frames at once: replies cannot be started while one streams, each is refused.
    for _ in range(200):
        await sock.send("send", "spam")
    await sock.send("stop")  # never limited, however many frames came before
    assert await sock.finished(reply, timeout=10) == "interrupted"
    notices = sum(frame.count('class="notice notice--error"') for frame in sock.frames)
    assert 1 <= notices <= 12, notices  # answered by a few notices, not by 200
    assert any("Too many frames" in frame for frame in sock.frames)
    # Bad frames in a flood are answered by a few notices too (once the notice budget, spent
    # on the flood above, has refilled: 5 at once, 2 a second).
    await asyncio.sleep(2.6)
    seen = len(sock.frames)
    for _ in range(200):
        await sock.comm.send_to(text_data="not json")
    await asyncio.sleep(1.2)
    while not await sock.comm.receive_nothing(timeout=0.1):
        await sock.next_frame()
    bad_notices = sum("not JSON" in frame for frame in sock.frames[seen:])
    assert 1 <= bad_notices <= 10, bad_notices
    # The socket is still usable once the flood is over.
    fake_anthropic.update_config(interval=0.001, deltas=3)
    await sock.send("send", "Hello again")
    _, second = await sock.turn_started()
    assert await sock.finished(second) == "complete"
    assert [m.role async for m in Message.objects.filter(conversation=conversation)] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_history_longer_than_the_context_window_is_trimmed_oldest_first_with_a_note(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_CONTEXT_TOKENS = 2000
    settings.CHAT_MAX_TOKENS = 500
    fake_anthropic.reset(QUICK)
    for n in range(10):  # ten exchanges of ~200 estimated tokens a message
        await database_sync_to_async(add)(conversation, "user", f"q{n} " * 150)
        await database_sync_to_async(add)(conversation, "assistant", f"a{n} " * 150)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "And the newest question?")
    _, reply = await sock.turn_started()
    notice = sock.frames[-1]
    assert "oldest messages of this conversation were left out" in notice
    assert await sock.finished(reply) == "complete"
    sent = fake_anthropic.requests[-1].body["messages"]
    assert sent[0]["role"] == "user" and sent[-1]["content"] == "And the newest question?"
    assert sent[-2]["content"].startswith("a9 ")  # the newest kept, the oldest left out
    assert len(sent) < 21
    assert sum(estimate_prompt_tokens(m["content"]) for m in sent) <= 2000 - 500


@pytest.mark.django_db(transaction=True)
async def test_a_message_too_long_for_the_window_ends_as_an_error_without_calling_the_model(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_CONTEXT_TOKENS = 1000
    settings.CHAT_MAX_TOKENS = 500
    sock = await chat_socket(conversation, user)
    await sock.send("send", "word " * 400)
    _, reply = await sock.turn_started()
    assert await sock.finished(reply) == "error"
    saved = await Message.objects.aget(pk=reply)
    assert "too long for the model's context window" in saved.error
    assert len(fake_anthropic.requests) == 0


def test_fit_history_keeps_the_newest_turns_and_starts_with_the_user() -> None:
    turns = [
        ChatTurn("user", "u1" * 100),
        ChatTurn("assistant", "a1" * 100),
        ChatTurn("user", "u2" * 100),
        ChatTurn("assistant", "a2" * 100),
        ChatTurn("user", "u3"),
    ]
    whole = fit_history(turns, context_tokens=10_000, max_tokens=100, system="")
    assert whole.turns == turns and whole.dropped == 0
    # Room for the last three turns only: the leading assistant turn goes too.
    fitted = fit_history(turns, context_tokens=100 + 2 + 67 + 67 + 10, max_tokens=100, system="")
    assert fitted.turns == turns[2:] and fitted.dropped == 2
    with pytest.raises(ContextTooSmall):
        fit_history([ChatTurn("user", "x" * 3000)], context_tokens=500, max_tokens=100, system="")


def test_a_trimmed_history_keeps_its_start_for_several_turns_so_the_cache_can_read_it() -> None:
    """Trimmed turn by turn, every request's prefix would be new to Anthropic's prompt cache;
    the start moves in steps of about a quarter of the budget instead."""
    context, max_tokens = 3_000, 500
    budget = context - max_tokens
    history: list[ChatTurn] = []
    starts: list[str] = []
    for n in range(60):
        history += [ChatTurn("user", f"q{n} " + "x" * 150), ChatTurn("assistant", "y" * 300)]
        asked = [*history, ChatTurn("user", f"next {n}")]
        fitted = fit_history(asked, context_tokens=context, max_tokens=max_tokens, system="")
        used = sum(estimate_prompt_tokens(t.content) for t in fitted.turns)
        assert used <= budget and fitted.turns[0].role == "user"
        assert fitted.turns[-1] == asked[-1]
        if fitted.dropped:
            assert used >= budget // 2  # steps of a quarter: never trimmed far below the budget
            starts.append(fitted.turns[0].content[:4])
    runs = [len(list(group)) for _, group in itertools.groupby(starts)]
    assert len(runs) > 3 and min(runs[:-1]) >= 3  # the same start for 3+ turns in a row
