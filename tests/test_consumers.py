"""The chat socket end to end: the real ASGI stack, the real SDK, the fake Anthropic server."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import QUICK, SLOW, TEST_API_KEY, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)


async def messages_of(conversation: Conversation) -> list[Message]:
    return [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]


async def test_reply_streams_in_batches_and_completes_with_real_usage(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.002, deltas=60))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello there")
    user_id, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"

    record = fake_anthropic.requests[-1]
    assert record.completed and record.deltas_written == 60
    # Tokens are coalesced: far fewer frames than deltas, and nothing lost on the way.
    assert 1 <= sock.batches(reply_id) < 60
    assert sock.text_sent(reply_id) == record.text_written

    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.COMPLETE
    assert reply.stop_reason == "end_turn"
    assert reply.content == record.text_written
    assert reply.input_tokens == record.input_tokens
    assert reply.output_tokens == 60 and not reply.tokens_estimated
    assert reply.time_to_first_token_ms is not None
    assert record.body["messages"] == [{"role": "user", "content": "Hello there"}]
    assert record.headers.get("x-api-key") == TEST_API_KEY or TEST_API_KEY in record.headers.get(
        "authorization", ""
    )
    assert (await Message.objects.aget(pk=user_id)).content == "Hello there"


async def test_stop_closes_upstream_within_100ms_and_keeps_exactly_what_was_sent(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    started = await start_slow_reply(sock, fake_anthropic, "Tell me a long story", deltas=10)
    reply_id, record = started.reply_id, started.record

    stopped_at = time.monotonic()
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"

    closed_at = await fake_anthropic.await_disconnect(record)
    assert closed_at - stopped_at < 0.1
    assert record.deltas_after(stopped_at) <= 1
    assert not record.completed

    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.stop_reason == Message.StopReason.USER_STOP
    assert reply.content == sock.text_sent(reply_id)
    assert reply.content and record.text_written.startswith(reply.content)
    assert reply.tokens_estimated and reply.output_tokens
    assert reply.display_text.endswith("[Interrupted]")
    assert "[Interrupted]" in sock.frames[-1] or any("[Interrupted]" in f for f in sock.frames[-2:])

    # The conversation is ready for the next message at once.
    fake_anthropic.update_config(interval=0.001, deltas=5)
    await sock.send("send", "Shorter, please")
    _, next_id = await sock.turn_started()
    assert await sock.finished(next_id) == "complete"


async def test_stop_and_send_saves_partial_then_new_message_and_sends_whole_history(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    started = await start_slow_reply(sock, fake_anthropic, "First question", deltas=5)
    first_reply, first = started.reply_id, started.record

    fake_anthropic.update_config(interval=0.001, deltas=5)
    stopped_at = time.monotonic()
    await sock.send("stop_and_send", "Actually, something else")
    assert await sock.finished(first_reply) == "interrupted"
    assert await fake_anthropic.await_disconnect(first) - stopped_at < 0.1
    _, second_reply = await sock.turn_started()
    assert await sock.finished(second_reply) == "complete"

    partial = sock.text_sent(first_reply)
    second = fake_anthropic.requests[-1]
    assert second.body["messages"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": f"{partial}\n\n[Interrupted]"},
        {"role": "user", "content": "Actually, something else"},
    ]
    saved = await messages_of(conversation)
    assert [(m.role, m.status) for m in saved] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert saved[1].content == partial


async def test_disconnect_mid_reply_saves_partial_with_reason_disconnect(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    started = await start_slow_reply(sock, fake_anthropic, "Go on")
    reply_id, record = started.reply_id, started.record

    closed_at = time.monotonic()
    await sock.comm.disconnect(timeout=5)
    assert await fake_anthropic.await_disconnect(record) - closed_at < 0.1

    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.stop_reason == Message.StopReason.DISCONNECT
    assert reply.content == sock.text_sent(reply_id)


async def test_stop_before_first_token_saves_an_empty_marked_reply(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(first_delay=5, deltas=5))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Think hard")
    _, reply_id = await sock.turn_started()
    record = await fake_anthropic.await_request()

    stopped_at = time.monotonic()
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"
    assert await fake_anthropic.await_disconnect(record) - stopped_at < 0.1
    assert record.deltas_written == 0

    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content, reply.output_tokens) == ("interrupted", "", 0)
    assert reply.display_text == "[Interrupted]"


async def test_stop_before_the_provider_answers_at_all(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(SLOW)
    sock = await chat_socket(conversation, user)
    # Send and stop back to back: the stop may arrive before the request's headers are answered.
    await sock.send("send", "Quick")
    await sock.send("stop")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "interrupted"
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content == sock.text_sent(reply_id)
    for record in fake_anthropic.requests:
        assert (await fake_anthropic.await_finish(record)).completed is False


async def test_double_stop_is_harmless(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    reply_id = (await start_slow_reply(sock, fake_anthropic, "Hi")).reply_id
    await sock.send("stop")
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"
    await sock.until("Nothing is streaming")
    saved = await messages_of(conversation)
    assert [m.status for m in saved] == ["complete", "interrupted"]


async def test_stop_when_idle_says_so_and_changes_nothing(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    await sock.send("stop")
    frame = await sock.next_frame()
    assert "Nothing is streaming" in frame and 'id="notice"' in frame
    assert await messages_of(conversation) == []
    assert fake_anthropic.requests == []


async def test_send_while_streaming_is_refused_and_nothing_is_saved(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(SLOW)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "One")
    _, reply_id = await sock.turn_started()
    await sock.send("send", "Two")
    await sock.until("Stop &amp; Send to stop it")
    saved = await messages_of(conversation)
    assert [(m.role, m.content) for m in saved if m.role == "user"] == [("user", "One")]
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"


async def test_stop_and_send_when_idle_just_sends(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(QUICK)
    sock = await chat_socket(conversation, user)
    await sock.send("stop_and_send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"


async def test_anonymous_socket_is_refused(
    chat_socket: SocketFactory, conversation: Conversation
) -> None:
    await chat_socket(conversation, None, expect_connected=False)


async def test_another_users_conversation_is_refused(
    chat_socket: SocketFactory, conversation: Conversation, other_user: User
) -> None:
    await chat_socket(conversation, other_user, expect_connected=False)


async def test_cross_origin_socket_is_refused(
    chat_socket: SocketFactory, conversation: Conversation, user: User
) -> None:
    await chat_socket(conversation, user, origin="https://evil.example", expect_connected=False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"action": "explode"}', "Unknown action"),
        ('{"action": "send", "message": "   "}', "Type a message first"),
        ('{"action": "send", "message": 42}', "must be text"),
    ],
)
async def test_bad_frames_get_a_clear_error_and_store_nothing(
    chat_socket: SocketFactory, conversation: Conversation, user: User, raw: str, expected: str
) -> None:
    sock = await chat_socket(conversation, user)
    await sock.comm.send_to(text_data=raw)
    frame = await sock.next_frame()
    assert expected in frame and 'role="alert"' in frame
    assert await messages_of(conversation) == []


async def test_model_output_arrives_escaped_in_every_frame(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    hostile = '<script>alert("x")</script> <img src=x onerror=alert(1)> & done'
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=6, text=hostile))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "<b>bold?</b>")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    everything = "".join(sock.frames)
    assert "<script>" not in everything and "<img" not in everything and "<b>" not in everything
    assert "&lt;script&gt;" in everything and "&lt;b&gt;bold?&lt;/b&gt;" in everything
    assert sock.text_sent(reply_id) == hostile
    assert (await Message.objects.aget(pk=reply_id)).content == hostile


async def test_upstream_error_mid_stream_keeps_partial_with_status_error(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(
        FakeConfig(interval=0.005, deltas=20, error="error_midstream", error_after=5)
    )
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hi")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "error"
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.stop_reason == Message.StopReason.ERROR
    assert "overloaded" in reply.error.lower()
    assert reply.content == sock.text_sent(reply_id) and reply.content
    assert TEST_API_KEY not in "".join(sock.frames)


async def test_overloaded_before_stream_is_retried_by_the_sdk(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=4, error="status_529", fail_times=1))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hi")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    assert len(fake_anthropic.requests) == 2


async def test_rejected_api_key_is_a_clear_error(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(error="status_401"))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hi")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "error"
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.error == "The Anthropic API key was rejected."
    # The conversation is usable again right away.
    fake_anthropic.reset(QUICK)
    await sock.send("send", "Again")
    _, next_id = await sock.turn_started()
    assert await sock.finished(next_id) == "complete"


async def test_two_sockets_cannot_stream_two_replies_in_one_conversation(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(SLOW)
    first = await chat_socket(conversation, user)
    second = await chat_socket(conversation, user)
    await first.send("send", "From tab one")
    _, reply_id = await first.turn_started()
    await second.send("send", "From tab two")
    await second.until("already streaming")
    saved = await messages_of(conversation)
    assert [m.content for m in saved if m.role == "user"] == ["From tab one"]
    await first.send("stop")
    assert await first.finished(reply_id) == "interrupted"
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("drop_midstream", "The connection to Anthropic was lost mid-reply."),
        ("stall", "Anthropic stopped sending (the stream stalled)."),
    ],
)
async def test_dropped_or_stalled_stream_keeps_partial_with_a_clear_reason(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: object,
    error: str,
    expected: str,
) -> None:
    settings.CHAT_STALL_TIMEOUT = 0.5  # type: ignore[attr-defined]
    fake_anthropic.reset(FakeConfig(interval=0.005, deltas=20, error=error, error_after=4))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hi")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "error"
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.error == expected
    assert reply.content == sock.text_sent(reply_id)
    assert reply.content.startswith("Token 1 of 20.")
    assert expected in sock.frames[-1] or any(expected in f for f in sock.frames[-3:])


async def test_streaming_reply_is_checkpointed_on_a_timer_even_before_its_first_token(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: object,
) -> None:
    settings.CHAT_CHECKPOINT_INTERVAL = 0.2  # type: ignore[attr-defined]
    fake_anthropic.reset(FakeConfig(first_delay=0.7, interval=0.02, deltas=300))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hi")
    _, reply_id = await sock.turn_started()
    started = (await Message.objects.aget(pk=reply_id)).heartbeat_at
    await asyncio.sleep(0.5)  # no token yet: only the timer can have beaten the heartbeat
    before_first_token = await Message.objects.aget(pk=reply_id)
    assert before_first_token.heartbeat_at > started
    await sock.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')
    await asyncio.sleep(0.5)
    checkpoint = await Message.objects.aget(pk=reply_id)
    assert checkpoint.status == "streaming" and checkpoint.content
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"
    # A checkpoint holds only text already sent to the browser.
    assert sock.text_sent(reply_id).startswith(checkpoint.content)
