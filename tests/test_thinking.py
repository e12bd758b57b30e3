"""Extended thinking: asked for per conversation, streamed live into its own part of the bubble,
stopped like any reply, saved apart from the answer. Through the real SDK and the fake
Anthropic server, from the page's socket to the database."""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.urls import reverse

from chat.data import services
from chat.models import Conversation, Message
from chat.testing.fake_anthropic import (
    FakeAnthropicServer,
    FakeConfig,
    RequestRecord,
    thinking_steps,
)
from tests.helpers import ChatSocket, SocketFactory, first_batch, first_thinking

pytestmark = pytest.mark.django_db(transaction=True)

#: Thinking that streams for about 3 s unless stopped, then a short answer.
LONG_THOUGHT = "[[fake:thinking=60,interval=0.05,deltas=3]]"


async def think(conversation: Conversation, budget: int = 8192, model: str = "") -> None:
    conversation.thinking_budget = budget
    conversation.model = model
    await conversation.asave(update_fields=["thinking_budget", "model"])


async def start_long_thought(
    sock: ChatSocket, fake: FakeAnthropicServer
) -> tuple[int, RequestRecord]:
    """Send a message whose reply thinks for about 3 s; return once the page shows thinking."""
    fake.reset(FakeConfig())
    await sock.send("send", f"Think hard {LONG_THOUGHT}")
    _, reply_id = await sock.turn_started()
    record = await fake.await_request()
    await sock.until(first_thinking(reply_id))
    return reply_id, record


def final_frame(frames: list[str], reply_id: int) -> str:
    return next(
        f for f in reversed(frames) if f'<article id="msg-{reply_id}" class="msg msg--' in f
    )


async def test_thinking_streams_live_above_the_answer_and_is_saved_apart(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    await think(conversation, 8192)
    fake_anthropic.reset(FakeConfig(interval=0.01, deltas=4, thinking=5))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Why is the sky blue?")
    _, reply_id = await sock.turn_started()
    await sock.until(first_thinking(reply_id))
    assert await sock.finished(reply_id) == "complete"

    record = fake_anthropic.requests[-1]
    # The default model thinks adaptively: an effort, not a budget; the thinking shown.
    assert record.body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert record.body["output_config"] == {"effort": "medium"}
    assert record.body["max_tokens"] == 4096 + 8192

    saved = await Message.objects.aget(pk=reply_id)
    assert saved.content == record.text_written  # the answer alone
    assert saved.thinking == record.thinking_written == "".join(thinking_steps(5))
    assert sock.thinking_sent(reply_id) == saved.thinking
    assert sock.text_sent(reply_id) == saved.content
    assert saved.thinking_signature  # a whole thought keeps its signature
    assert saved.thinking_ms is not None and saved.status == "complete"
    # Every thinking batch reached the page before the first batch of the answer.
    frames = "".join(sock.frames)
    assert frames.rindex(first_thinking(reply_id)) < frames.index(first_batch(reply_id))

    final = html.unescape(final_frame(sock.frames, reply_id))
    assert '<details class="thinking"' in final and '<details class="thinking" id' in final
    assert " open>" not in final.split("<summary>")[0]  # collapsed once the reply has ended
    assert "Thought for" in final and "thought for" in final
    assert saved.thinking in final


async def test_stop_during_thinking_closes_upstream_and_keeps_the_thought_so_far(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    await think(conversation, 8192)
    sock = await chat_socket(conversation, user)
    reply_id, record = await start_long_thought(sock, fake_anthropic)
    await sock.until(first_thinking(reply_id))  # a few steps in

    written_at_stop = record.thinking_written
    stopped_at = time.monotonic()
    await sock.send("stop")
    disconnected_at = await fake_anthropic.await_disconnect(record)
    assert await sock.finished(reply_id) == "interrupted"

    assert disconnected_at - stopped_at < 0.1
    after = record.thinking_written[len(written_at_stop) :]
    assert after.count("Thinking step") <= 1  # at most one delta after the stop
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.status, saved.stop_reason) == ("interrupted", "user_stop")
    assert saved.content == "" and record.text_written == ""
    assert saved.thinking == sock.thinking_sent(reply_id) != ""  # exactly what was shown
    assert saved.thinking_signature == ""  # a thought cut short is not signed
    final = html.unescape(final_frame(sock.frames, reply_id))
    assert "[Interrupted]" in final and saved.thinking in final


async def test_stop_and_send_during_thinking(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    await think(conversation, 2048)
    sock = await chat_socket(conversation, user)
    reply_id, record = await start_long_thought(sock, fake_anthropic)
    await sock.send("stop_and_send", "Never mind [[fake:deltas=2,interval=0.01]]")
    await fake_anthropic.await_disconnect(record)
    _, next_reply = await sock.turn_started()
    assert await sock.finished(next_reply) == "complete"
    stopped = await Message.objects.aget(pk=reply_id)
    assert stopped.status == "interrupted" and stopped.thinking == sock.thinking_sent(reply_id)


async def test_a_page_closed_during_thinking_stops_the_reply(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    await think(conversation, 2048)
    sock = await chat_socket(conversation, user)
    reply_id, record = await start_long_thought(sock, fake_anthropic)
    closed_at = time.monotonic()
    await sock.comm.disconnect()
    assert await fake_anthropic.await_disconnect(record) - closed_at < 0.5
    saved = await Message.objects.aget(pk=reply_id)
    for _ in range(50):
        if saved.status != "streaming":
            break
        await asyncio.sleep(0.05)
        saved = await Message.objects.aget(pk=reply_id)
    assert (saved.status, saved.stop_reason) == ("interrupted", "disconnect")
    assert saved.thinking.startswith("Thinking step 1 of 60.")


async def test_a_model_with_budgeted_thinking_gets_a_budget_and_room_to_answer(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    await think(conversation, 2048, model="claude-haiku-4-5")
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=2, thinking=2))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    await sock.finished(reply_id)
    body = fake_anthropic.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048, "display": "summarized"}
    assert "output_config" not in body
    assert body["max_tokens"] == 4096 + 2048
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.thinking_budget == 2048 and saved.max_tokens == 4096 + 2048


async def test_thinking_off_is_said_outright_to_a_model_that_may_think_unasked(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=2))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    await sock.finished(reply_id)
    body = fake_anthropic.requests[-1].body
    assert body["thinking"] == {"type": "disabled"} and body["max_tokens"] == 4096
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.thinking == "" and saved.thinking_ms is None
    final = final_frame(sock.frames, reply_id)
    assert "thinking" not in final.lower().replace("msg-", "")


async def test_continue_after_a_partial_answer_goes_on_without_thinking_again(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    """Thinking cannot be combined with a prefilled answer: the continuation is asked with
    thinking off, prefilled with the partial answer; the reply keeps its first thought."""
    await think(conversation, 8192)
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=3, thinking=2, stop_reason="max_tokens"))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    await sock.finished(reply_id)
    first = await Message.objects.aget(pk=reply_id)
    assert first.can_continue and first.thinking

    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=2))
    await sock.send("continue")
    await sock.until(rf'<article id="msg-{reply_id}" class="msg msg--assistant msg--complete"')
    body = fake_anthropic.requests[-1].body
    assert body["thinking"] == {"type": "disabled"} and "output_config" not in body
    assert body["messages"][-1] == {"role": "assistant", "content": first.content.rstrip()}
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.thinking == first.thinking
    assert saved.content.startswith(first.content.rstrip())
    assert len(saved.content) > len(first.content.rstrip())


async def test_continue_after_a_stop_in_thinking_thinks_again_after_the_first_thought(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    """No answer yet, so nothing to prefill: the model is asked afresh, thinking on (a thought
    cannot be resumed). The thought shown before the stop is kept, the new one follows it."""
    await think(conversation, 8192)
    fake_anthropic.reset(FakeConfig(thinking=60, interval=0.05, deltas=3))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Think hard")
    _, reply_id = await sock.turn_started()
    record = await fake_anthropic.await_request()
    await sock.until(first_thinking(reply_id))
    await sock.send("stop")
    await fake_anthropic.await_disconnect(record)
    await sock.finished(reply_id)
    stopped = await Message.objects.aget(pk=reply_id)
    assert stopped.content == "" and stopped.thinking and stopped.can_continue

    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=2, thinking=2))
    await sock.send("continue")
    await sock.until(rf'<article id="msg-{reply_id}" class="msg msg--assistant msg--complete"')
    body = fake_anthropic.requests[-1].body
    assert body["thinking"]["type"] == "adaptive"
    assert body["messages"][-1]["role"] == "user"  # no empty prefill
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.thinking == stopped.thinking + "\n\n" + "".join(thinking_steps(2))
    assert saved.content == fake_anthropic.requests[-1].text_written


async def test_a_page_opened_mid_thought_sees_the_thinking_so_far(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    await think(conversation, 8192)
    sock = await chat_socket(conversation, user)
    reply_id, _ = await start_long_thought(sock, fake_anthropic)
    await sock.until(first_thinking(reply_id))

    late = await chat_socket(conversation, user)
    snapshot = html.unescape(
        (await late.until(rf'<article id="msg-{reply_id}"[^>]*msg--streaming')).string
    )
    assert "Thinking step 1 of 60." in snapshot
    assert f'id="msg-{reply_id}-thinking-part" open' in snapshot
    await sock.send("stop")
    await sock.finished(reply_id)
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.thinking.startswith(late.thinking_sent(reply_id) or "Thinking step 1")


async def test_the_settings_offer_thinking_and_new_conversations_take_the_site_default(
    user: User, settings: Any
) -> None:
    settings.CHAT_THINKING_BUDGET = 4096
    conversation = await database_sync_to_async(services.conversation_create)(user=user)
    assert conversation.thinking_budget == 4096

    web = AsyncClient()
    await web.aforce_login(user)
    page = (
        await web.get(
            reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
        )
    ).content.decode()
    assert 'name="thinking_budget"' in page and "4,096 tokens" in page
    url = reverse("chat:conversation_settings", kwargs={"conversation_id": conversation.pk})
    response = await web.post(
        url, {"model": "claude-sonnet-5-5", "system_prompt": "", "thinking_budget": "24576"}
    )
    assert response.status_code == 302
    await conversation.arefresh_from_db()
    assert conversation.thinking_budget == 24576
    response = await web.post(
        url, {"model": "claude-sonnet-5-5", "system_prompt": "", "thinking_budget": "100"}
    )
    assert response.status_code == 400
    await conversation.arefresh_from_db()
    assert conversation.thinking_budget == 24576
