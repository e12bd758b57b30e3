"""Every way the model ends a reply is told to the user: through the real SDK and the fake
Anthropic server, to the page, the database and the admin's filter."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import RECORDINGS, SocketFactory, read_recording

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("stop_reason", "deltas", "said"),
    [
        ("refusal", 3, "Claude declined to answer this."),
        ("refusal", 0, "Claude declined to answer this."),
        ("max_tokens", 3, "Cut off at the length limit."),
        ("model_context_window_exceeded", 2, "the conversation filled the model's context window"),
        ("pause_turn", 2, "Claude paused this turn; Continue lets it go on."),
        ("tool_use", 2, "Claude asked to use a tool, which this chat does not offer."),
        (
            "a_reason_from_the_future",
            2,
            "a reason this app does not know (a_reason_from_the_future)",
        ),
        ("end_turn", 0, "The reply had no text."),
    ],
)
async def test_the_page_says_how_the_model_ended_a_reply_and_keeps_its_text(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    stop_reason: str,
    deltas: int,
    said: str,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=deltas, stop_reason=stop_reason))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"

    final = next(f for f in reversed(sock.frames) if f'id="msg-{reply_id}"' in f)
    assert said in html.unescape(final)
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.stop_reason == stop_reason
    assert saved.content == fake_anthropic.requests[-1].text_written  # the partial is kept
    assert saved.stop_note and said in saved.stop_note


async def test_an_ordinary_end_says_nothing_more(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=3))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    final = next(f for f in reversed(sock.frames) if f'id="msg-{reply_id}"' in f)
    assert "stop-note" not in final


async def test_a_paused_turn_can_be_continued(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=2, stop_reason="pause_turn"))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    await sock.finished(reply_id)
    final = next(f for f in reversed(sock.frames) if f'id="msg-{reply_id}"' in f)
    assert "continue-btn" in final
    fake_anthropic.reset(FakeConfig(interval=0.001, deltas=2))
    await sock.send("continue")
    await sock.until(rf'<article id="msg-{reply_id}" class="msg msg--assistant msg--complete"')
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.stop_reason == "end_turn" and not saved.stop_note


@pytest.mark.parametrize("name", RECORDINGS)
async def test_every_recorded_stream_ends_with_its_answer_thinking_and_reason_saved_and_told(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    name: str,
) -> None:
    """The recorded event sequences (thinking with signatures, refusals, tool use, server tools,
    compaction, the other stop reasons) played through the whole app: the answer saved is the
    text blocks only, the thinking apart, the stop reason told; nothing crashes or leaks."""
    recording = read_recording(name)
    fake_anthropic.reset(FakeConfig(interval=0.001, replay=name))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.content, saved.thinking) == (recording.answer, recording.thinking)
    assert saved.stop_reason == recording.stop_reason
    assert sock.text_sent(reply_id) == recording.answer
    assert "{" not in saved.content or "{" in recording.answer  # no tool JSON leaked
    final = html.unescape(sock.frames[-1])
    if recording.stop_reason not in ("end_turn", "stop_sequence"):
        assert saved.stop_note and saved.stop_note in final
    elif not recording.answer:
        assert "The reply had no text." in final
    if recording.thinking:
        assert saved.thinking_signature and recording.thinking in final
