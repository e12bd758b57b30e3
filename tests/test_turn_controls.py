"""Regenerate, edit and resend, continue, automatic titles and deletion, over the real socket
(the real ASGI stack, the real SDK, the fake Anthropic server)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.providers.anthropic import AnthropicProvider
from chat.providers.demo import DemoProvider
from chat.replies import titles
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import SLOW, TEST_API_KEY, ChatSocket, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)

NEW_ASSISTANT = re.compile(
    r'<div id="messages" hx-swap-oob="beforeend"><article id="msg-(\d+)" '
    r'class="msg msg--assistant msg--streaming"'
)


async def messages_of(conversation: Conversation) -> list[Message]:
    return [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]


async def first_exchange(sock: ChatSocket, text: str = "Hello") -> tuple[int, int]:
    await sock.send("send", text)
    user_id, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    return user_id, reply_id


async def test_regenerate_answers_again_with_the_same_history_and_keeps_the_old_reply(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.002, deltas=10))
    sock = await chat_socket(conversation, user)
    user_id, old_reply = await first_exchange(sock, "Tell me a story")

    await sock.send("regenerate")
    match = await sock.until(NEW_ASSISTANT)
    new_reply = int(match.group(1))
    frame = sock.frames[-1]
    assert f'<div id="msg-{old_reply}" hx-swap-oob="delete"></div>' in frame
    assert "msg--user" not in frame  # the question stays as it is on the page
    assert '<span class="version-count">2/2</span>' in frame
    assert await sock.finished(new_reply) == "complete"

    saved = await messages_of(conversation)
    assert [(m.pk, m.role, m.parent_id, m.active) for m in saved] == [
        (user_id, "user", None, True),
        (old_reply, "assistant", user_id, False),  # kept: version 1 of 2
        (new_reply, "assistant", user_id, True),
    ]
    assert fake_anthropic.requests[-1].body["messages"] == [
        {"role": "user", "content": "Tell me a story"}
    ]


async def test_edit_keeps_the_earlier_text_as_a_version_and_answers_the_new_one(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.002, deltas=10))
    sock = await chat_socket(conversation, user)
    first_user, first_reply = await first_exchange(sock, "First question")
    user_id, old_reply = await first_exchange(sock, "Second qestion")

    await sock.send("edit", "Second question, spelled right")
    match = await sock.until(
        r'<div id="messages" hx-swap-oob="beforeend"><article id="msg-(\d+)" class="msg msg--user'
    )
    edited = int(match.group(1))
    frame = sock.frames[-1]
    assert f'<div id="msg-{user_id}" hx-swap-oob="delete"></div>' in frame
    assert f'<div id="msg-{old_reply}" hx-swap-oob="delete"></div>' in frame
    assert "Second question, spelled right" in frame
    new_reply = int(re.findall(r'<article id="msg-(\d+)" class="msg msg--assistant', frame)[-1])
    assert await sock.finished(new_reply) == "complete"

    saved = await messages_of(conversation)
    assert [(m.pk, m.parent_id, m.active) for m in saved] == [
        (first_user, None, True),
        (first_reply, first_user, True),
        (user_id, first_reply, False),  # the earlier text, version 1 of 2
        (old_reply, user_id, True),  # its reply, under it
        (edited, first_reply, True),
        (new_reply, edited, True),
    ]
    assert saved[4].content == "Second question, spelled right"
    sent = fake_anthropic.requests[-1].body["messages"]
    assert sent[0] == {"role": "user", "content": "First question"}
    assert sent[-1] == {"role": "user", "content": "Second question, spelled right"}
    assert len(sent) == 3  # the earlier version is not in the history sent


async def test_continue_streams_on_from_the_cut_and_keeps_one_bubble_with_all_its_tokens(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    reply_id = (await start_slow_reply(sock, fake_anthropic, "Write a long essay")).reply_id
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"
    cut = await Message.objects.aget(pk=reply_id)
    assert cut.content and cut.can_continue
    partial = cut.content
    shown_before = sock.text_sent(reply_id)
    assert partial == shown_before

    fake_anthropic.update_config(interval=0.002, deltas=10, text="and so the essay ends.")
    await sock.send("continue")
    # The same bubble goes back to streaming, showing the text it had.
    await sock.until(rf'<article id="msg-{reply_id}" class="msg msg--assistant msg--streaming"')
    assert await sock.finished(reply_id) == "complete"

    record = fake_anthropic.requests[-1]
    # The partial goes up as the start of the model's own turn (prefill), without the marker
    # and without trailing whitespace (the API refuses a prefill ending in whitespace).
    assert record.body["messages"][-1] == {"role": "assistant", "content": partial.rstrip()}
    done = await Message.objects.aget(pk=reply_id)
    assert done.status == Message.Status.COMPLETE
    assert done.content == partial.rstrip() + record.text_written
    assert done.content == partial.rstrip() + sock.text_sent(reply_id)[len(shown_before) :]
    # Tokens of both parts: the stopped part was estimated, so the sum is too.
    assert done.output_tokens is not None and cut.output_tokens is not None
    assert done.output_tokens == cut.output_tokens + 10
    assert done.tokens_estimated
    assert len(await messages_of(conversation)) == 2


async def test_stopping_a_continuation_keeps_the_old_text_and_what_was_shown_of_the_new(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    sock = await chat_socket(conversation, user)
    reply_id = (await start_slow_reply(sock, fake_anthropic, "Go on and on")).reply_id
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"
    partial = (await Message.objects.aget(pk=reply_id)).content.rstrip()
    shown_before = sock.text_sent(reply_id)

    await sock.send("continue")
    await sock.until(rf'<article id="msg-{reply_id}" class="msg msg--assistant msg--streaming"')
    await sock.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"
    record = fake_anthropic.requests[-1]
    await fake_anthropic.await_disconnect(record)
    saved = await Message.objects.aget(pk=reply_id)
    continued = sock.text_sent(reply_id)[len(shown_before) :]
    assert saved.content == partial + continued
    assert saved.display_text.endswith("[Interrupted]")


async def test_regenerate_edit_and_continue_refuse_clearly_when_there_is_nothing_to_act_on(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(FakeConfig(interval=0.002, deltas=5))
    sock = await chat_socket(conversation, user)
    await sock.send("regenerate")
    assert "no message to answer again" in await sock.next_frame()
    await sock.send("edit", "")
    assert "edited message is empty" in await sock.next_frame()
    await first_exchange(sock)
    await sock.send("continue")  # a complete reply was not cut off
    assert "only if it was cut off" in await sock.next_frame()
    assert len(await messages_of(conversation)) == 2
    assert len(fake_anthropic.requests) == 1


async def test_controls_wait_for_a_streaming_reply_to_be_stopped(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    fake_anthropic.reset(SLOW)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Long one")
    _, reply_id = await sock.turn_started()
    for action in ("regenerate", "continue"):
        await sock.send(action)
        await sock.until("stop it first")
    other = await chat_socket(conversation, user)  # another tab cannot replace it either
    await other.send("regenerate")
    await other.until("(?i)stop it first")
    await sock.send("stop")
    assert await sock.finished(reply_id) == "interrupted"
    assert [m.pk for m in await messages_of(conversation)][-1] == reply_id


async def test_after_the_first_reply_the_model_names_the_conversation(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_AUTO_TITLE = True
    conversation = await Conversation.objects.acreate(user=user)
    fake_anthropic.reset(FakeConfig(interval=0.002, deltas=5, text='"Pancakes for a crowd."'))
    sock = await chat_socket(conversation, user)
    await first_exchange(sock, "How do I make pancakes for twenty people at once?")
    await sock.until(r'id="chat-title" hx-swap-oob="true">Pancakes for a crowd</h1>')
    await conversation.arefresh_from_db()
    assert conversation.title == "Pancakes for a crowd"
    title_request = fake_anthropic.requests[-1]
    assert not title_request.stream and title_request.body["max_tokens"] == 30
    assert "pancakes for twenty" in title_request.body["messages"][0]["content"]

    # Only the first exchange names it.
    await first_exchange(sock, "And for forty?")
    assert len(fake_anthropic.requests) == 3


async def test_a_rename_made_while_the_title_is_asked_for_is_kept(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_AUTO_TITLE = True
    conversation = await Conversation.objects.acreate(user=user)
    fake_anthropic.reset(FakeConfig(interval=0.002, deltas=3, text="Model title"))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hi there")
    _, reply_id = await sock.turn_started()
    # The user renames it before the reply (and so the title request) is done.
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="My own name")
    assert await sock.finished(reply_id) == "complete"
    await fake_anthropic.await_finish(await fake_anthropic.await_request(2))
    await conversation.arefresh_from_db()
    assert conversation.title == "My own name"


async def test_a_failed_title_request_is_logged_and_suggests_no_title(
    fake_anthropic: FakeAnthropicServer, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHAT_AUTO_TITLE = True
    settings.CHAT_MAX_RETRIES = 0
    fake_anthropic.update_config(error="status_500")
    provider = AnthropicProvider(api_key=TEST_API_KEY, base_url=fake_anthropic.base_url)
    assert await titles.suggest(provider, user_text="Plan a trip", reply="Sure") == ""
    assert "no title from the model" in caplog.text
    assert TEST_API_KEY not in caplog.text


def test_titles_are_cleaned_of_quotes_markup_and_length() -> None:
    assert titles.clean('"Pancakes for a crowd."\nExtra line') == "Pancakes for a crowd"
    assert titles.clean("# Title: **Rust lifetimes**") == "Rust lifetimes"
    assert titles.clean("\n\n  “Quoted”  ") == "Quoted"
    long = titles.clean("word " * 40)
    assert len(long) <= titles.MAX_CHARS + 1 and long.endswith("…")
    assert titles.clean("") == ""


async def test_the_demo_provider_keeps_the_first_words_as_the_title(settings: Any) -> None:
    settings.CHAT_AUTO_TITLE = True
    provider = DemoProvider(token_delay=0)
    assert await titles.suggest(provider, user_text="Hello there", reply="Hi") == ""


async def test_deleting_a_conversation_tells_its_open_tabs_and_they_stop_reconnecting(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
) -> None:
    from chat.replies import layer

    sock = await chat_socket(conversation, user)
    await first_exchange(sock)
    await layer.group_send(conversation.pk, {"type": "chat.gone"})
    await sock.until("This conversation was deleted")
    closed = await sock.comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4404}


async def test_the_demo_model_continues_its_answer_where_it_was_cut() -> None:
    from chat.providers.base import ChatTurn, TextDelta
    from chat.providers.demo import DEMO_ANSWER

    cut = DEMO_ANSWER[:200].rstrip()
    history = [ChatTurn("user", "Hi"), ChatTurn("assistant", cut)]
    stream = DemoProvider(token_delay=0).stream(
        model="demo", system="", history=history, max_tokens=10_000
    )
    text = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
    assert cut + text == DEMO_ANSWER


async def test_demo_replies_are_recorded_as_the_demo_model_and_cost_nothing(
    chat_socket: SocketFactory, conversation: Conversation, user: User, settings: Any
) -> None:
    settings.CHAT_PROVIDER = "demo"
    settings.CHAT_DEMO_TOKEN_DELAY = 0.0005
    sock = await chat_socket(conversation, user)
    _, reply_id = await first_exchange(sock)
    frame = sock.frames[-1]
    usage = re.search(r'<span id="conversation-usage"[^>]*>([^<]*)</span>', frame)
    assert usage is not None and usage.group(1).endswith("· $0.00"), usage
    assert (await Message.objects.aget(pk=reply_id)).model == "demo"
