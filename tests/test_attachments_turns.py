"""Attachments in turns: from the page's socket to Claude as the right block with the same
bytes, in every later turn, counted by the context trimming; and a reply stopped (Stop, Stop &
Send, a page that leaves) with files in play ends as any reply does. Through the real upload
view, socket, SDK and the fake Anthropic API."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from chat.files import store
from chat.models import Attachment, Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer
from chat.testing.files import image_bytes, pdf_bytes
from tests.helpers import (
    QUICK,
    SocketFactory,
    blocks,
    files_in,
    start_slow_reply,
    upload_file,
    uploaded_id,
)

pytestmark = pytest.mark.django_db(transaction=True)

NOTES = "# Notes\n\nCafé, 世界 and <b>tags</b> stay as they are.\n"


async def upload_three(client: AsyncClient) -> list[str]:
    """An image, a PDF and a text file, uploaded as the page does; their ids in that order."""
    return [
        uploaded_id(await upload_file(client, "shot.png", image_bytes(64, 48), "image/png")),
        uploaded_id(await upload_file(client, "spec.pdf", pdf_bytes(2), "application/pdf")),
        uploaded_id(await upload_file(client, "notes.md", NOTES.encode(), "text/markdown")),
    ]


async def stored_bytes(attachment_id: str) -> bytes:
    attachment = await Attachment.objects.aget(pk=attachment_id)
    return await database_sync_to_async(store.read)(attachment)


def decoded(block: dict[str, Any]) -> bytes:
    return base64.b64decode(block["source"]["data"])


async def test_each_type_reaches_claude_as_its_block_with_the_same_bytes_in_every_later_turn(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    conversation: Conversation,
) -> None:
    image, pdf, notes = await upload_three(owner_client)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "What are these?", [image, pdf, notes])
    user_id, reply_id = await sock.turn_started()
    # The sender's bubble shows them at once, and its composer lets go of exactly these chips.
    assert f"/attachments/{image}/thumbnail/" in sock.frames[-1]
    assert f'data-sent-files="{image} {pdf} {notes} "' in sock.frames[-1]
    assert await sock.finished(reply_id) == "complete"

    first = fake_anthropic.requests[-1].body
    sent = blocks(first, 0)
    assert [b["type"] for b in sent] == ["image", "document", "text", "text"]
    assert sent[0]["source"]["media_type"] == "image/png"
    assert decoded(sent[0]) == await stored_bytes(image)  # the re-encoded copy, byte for byte
    assert sent[1] == {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(pdf_bytes(2)).decode(),
        },
        "title": "spec.pdf",
    }
    assert sent[2]["text"] == f'<document name="notes.md">\n{NOTES}\n</document>'
    assert sent[3] == {"type": "text", "text": "What are these?"}

    # The next turn sends them again, in their place (the first message), and the new message
    # as plain text.
    await sock.send("send", "And the second page?")
    _, second = await sock.turn_started()
    assert await sock.finished(second) == "complete"
    later = fake_anthropic.requests[-1].body
    assert blocks(later, 0) == sent
    assert later["messages"][2] == {"role": "user", "content": "And the second page?"}
    saved = await Attachment.objects.filter(message_id=user_id).order_by("position").acount()
    assert saved == 3


async def test_a_message_of_files_only_is_sent_and_named_by_them(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
) -> None:
    conversation = await Conversation.objects.acreate(user=user)
    image = uploaded_id(await upload_file(owner_client, "cat.png", image_bytes()))
    sock = await chat_socket(conversation, user)
    await sock.send("send", "", image)  # one hidden input: htmx sends a string
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    assert [b["type"] for b in blocks(fake_anthropic.requests[-1].body, 0)] == ["image"]
    await conversation.arefresh_from_db()
    assert conversation.title == "cat.png"


async def test_the_context_trimming_counts_files_and_leaves_the_oldest_out(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    conversation: Conversation,
    settings: Any,
) -> None:
    # A window of 9,000 tokens less a 1,000-token reply: a 4-page PDF (6,000 tokens) fits
    # once, not twice.
    settings.CHAT_CONTEXT_TOKENS = 9000
    settings.CHAT_MAX_TOKENS = 1000
    sock = await chat_socket(conversation, user)
    for n in (1, 2):
        pdf = uploaded_id(await upload_file(owner_client, f"big{n}.pdf", pdf_bytes(4)))
        await sock.send("send", f"Read PDF {n}", pdf)
        _, reply_id = await sock.turn_started()
        assert await sock.finished(reply_id) == "complete"
    body = fake_anthropic.requests[-1].body
    assert len(body["messages"]) == 1
    assert [b.get("title") for b in blocks(body, 0)] == ["big2.pdf", None]
    assert "The 2 oldest messages" in "".join(sock.frames)


async def test_stop_with_files_keeps_the_partial_and_the_files_and_the_next_turn_has_them(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    conversation: Conversation,
) -> None:
    image, pdf, notes = await upload_three(owner_client)
    sock = await chat_socket(conversation, user)
    reply = await start_slow_reply(sock, fake_anthropic, "Describe", attachments=[image, pdf])
    await sock.send("stop")
    assert await sock.finished(reply.reply_id) == "interrupted"
    disconnected = await fake_anthropic.await_disconnect(reply.record)
    assert disconnected is not None
    stopped = await Message.objects.aget(pk=reply.reply_id)
    assert stopped.content == sock.text_sent(reply.reply_id) != ""
    assert await Attachment.objects.filter(message_id=reply.user_id).acount() == 2
    fake_anthropic.reset(QUICK)
    await sock.send("send", "Go on", notes)
    _, again = await sock.turn_started()
    assert await sock.finished(again) == "complete"
    body = fake_anthropic.requests[-1].body
    assert [b["type"] for b in blocks(body, 0)] == ["image", "document", "text"]
    assert body["messages"][1]["content"].endswith("[Interrupted]")
    assert [b["type"] for b in blocks(body, 2)] == ["text", "text"]


async def test_stop_and_send_with_files_stops_the_reply_and_the_new_message_carries_them(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    conversation: Conversation,
) -> None:
    sock = await chat_socket(conversation, user)
    reply = await start_slow_reply(sock, fake_anthropic, "Talk for a while")
    image = uploaded_id(await upload_file(owner_client, "shot.png", image_bytes()))
    number = len(fake_anthropic.requests) + 1
    fake_anthropic.update_config(interval=0.001, deltas=3)
    await sock.send("stop_and_send", "Look at this instead", [image])
    assert await sock.finished(reply.reply_id) == "interrupted"
    user_id, second = await sock.turn_started()
    assert await sock.finished(second) == "complete"
    stopped = await Message.objects.aget(pk=reply.reply_id)
    assert stopped.status == "interrupted" and stopped.content == sock.text_sent(reply.reply_id)
    assert await Attachment.objects.filter(message_id=user_id).acount() == 1
    body = (await fake_anthropic.await_request(number)).body
    assert [b["type"] for b in blocks(body, 2)] == ["image", "text"]


async def test_a_page_that_leaves_stops_the_reply_and_the_files_stay(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    conversation: Conversation,
    attachments_dir: Path,
) -> None:
    image = uploaded_id(await upload_file(owner_client, "shot.png", image_bytes()))
    sock = await chat_socket(conversation, user)
    reply = await start_slow_reply(sock, fake_anthropic, "Describe", attachments=[image])
    await sock.comm.disconnect()
    await fake_anthropic.await_disconnect(reply.record)
    for _ in range(100):
        stopped = await Message.objects.aget(pk=reply.reply_id)
        if stopped.status != "streaming":
            break
        await sock.comm.receive_nothing(0.05)
    assert (stopped.status, stopped.stop_reason) == ("interrupted", "disconnect")
    assert await Attachment.objects.filter(message_id=reply.user_id).acount() == 1
    assert len(files_in(attachments_dir)) == 2


async def test_a_refused_turn_saves_nothing_and_keeps_the_uploads_for_another_try(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    other_user: User,
    conversation: Conversation,
) -> None:
    sock = await chat_socket(conversation, user)
    reply = await start_slow_reply(sock, fake_anthropic, "Busy")
    image = uploaded_id(await upload_file(owner_client, "shot.png", image_bytes()))
    # A second reply while one streams (as from another tab) is refused.
    await sock.send("send", "Another", [image])
    await sock.until("already streaming")
    assert await Attachment.objects.filter(pk=image, message=None).aexists()
    await sock.send("stop")
    assert await sock.finished(reply.reply_id) == "interrupted"
    # Someone else's upload, or an id that is no upload, is refused too; nothing is saved.
    others = AsyncClient()
    await others.aforce_login(other_user)
    theirs = uploaded_id(await upload_file(others, "theirs.txt", b"private"))
    before = await Message.objects.acount()
    for ids in ([image, theirs], ["00000000-0000-4000-8000-000000000000"], ["../../x"]):
        await sock.send("send", "With these", ids)
        notice = await sock.until(r'notice--error" role="alert"[^>]*>([^<]*)<')
        assert "attach" in notice.group(1).lower() or "not recognised" in notice.group(1)
    assert await Message.objects.acount() == before
    assert await Attachment.objects.filter(message=None).acount() == 2
    # Then it goes, once.
    fake_anthropic.reset(QUICK)
    await sock.send("send", "Now", [image])
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    await sock.send("send", "Again with it", [image])
    await sock.until("no longer there")


async def test_the_demo_model_says_what_it_received(
    chat_socket: SocketFactory,
    owner_client: AsyncClient,
    user: User,
    conversation: Conversation,
    settings: Any,
) -> None:
    settings.CHAT_PROVIDER = "demo"
    settings.CHAT_DEMO_TOKEN_DELAY = 0
    image, pdf, notes = await upload_three(owner_client)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "What did you get?", [image, pdf, notes])
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    text = (await Message.objects.aget(pk=reply_id)).content
    assert text.startswith("I received 3 files: **shot.png** (an image, image/png")
    assert "**spec.pdf** (a PDF document" in text
    assert "**notes.md** (a text file, 4 lines)" in text


def test_a_file_missing_from_storage_is_said_to_be_gone_rather_than_failing_the_turn(
    user: User, conversation: Conversation, attachments_dir: Path
) -> None:
    from chat.data import selectors, services

    attachment = store.attach(user=user, name="gone.png", data=image_bytes())
    user_message, reply = services.turn_create(
        conversation=conversation, text="see", model="m", attachments=[attachment.pk]
    )
    for path in files_in(attachments_dir):
        path.unlink()
    turns = selectors.history_for_model(conversation=conversation, before_message_id=reply.pk)
    loaded = store.with_bytes(turns)
    assert loaded[0].files[0].kind == "text"
    assert "gone.png is no longer available" in loaded[0].files[0].content
    assert user_message.files == [attachment]


def test_files_past_one_requests_bytes_leave_the_oldest_turns_out_of_it() -> None:
    from chat.providers import ChatTurn, FilePart
    from chat.replies.context import ContextTooSmall, fit_history

    def pdf(size: int) -> tuple[FilePart, ...]:
        return (
            FilePart(
                kind="document", media_type="application/pdf", name="a.pdf", tokens=10, size=size
            ),
        )

    turns = [
        ChatTurn("user", "one", pdf(8_000)),
        ChatTurn("assistant", "ok"),
        ChatTurn("user", "two", pdf(8_000)),
        ChatTurn("assistant", "ok"),
        ChatTurn("user", "three", pdf(8_000)),
    ]
    window = {"context_tokens": 100_000, "max_tokens": 1000, "system": ""}
    assert fit_history(turns, **window, file_bytes=24_000).dropped == 0
    fitted = fit_history(turns, **window, file_bytes=20_000)
    assert (fitted.dropped, [t.content for t in fitted.turns]) == (2, ["two", "ok", "three"])
    with pytest.raises(ContextTooSmall, match="files are too large together"):
        fit_history(turns, **window, file_bytes=5_000)


async def test_a_messages_files_past_one_requests_bytes_are_refused_by_every_door(
    owner_client: AsyncClient,
    chat_socket: SocketFactory,
    user: User,
    conversation: Conversation,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chat.files import checks

    monkeypatch.setattr(checks, "MAX_REQUEST_FILE_BYTES", 1500)
    ids = [uploaded_id(await upload_file(owner_client, f"{n}.txt", b"x" * 1000)) for n in range(2)]
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Both", ids)
    notice = await sock.until(r'notice--error" role="alert"[^>]*>([^<]*)<')
    assert "These files come to 2.0 KB together" in notice.group(1)
    assert "at most 1.5 KB together" in notice.group(1)
    assert await Message.objects.acount() == 0
    assert await Attachment.objects.filter(message=None).acount() == 2
