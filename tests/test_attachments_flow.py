"""Attachments from the page's socket to Claude: uploaded, sent with a message, carried as the
right block with the same bytes, in every later turn; Stop, Stop & Send and disconnect with
files. Through the real upload view, the real socket, the real SDK and the fake API server."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.urls import reverse
from PIL import Image

from chat.models import Attachment, Conversation
from chat.testing.fake_anthropic import FakeAnthropicServer
from chat.testing.files import image_bytes, pdf_bytes
from tests.helpers import SocketFactory

pytestmark = pytest.mark.django_db(transaction=True)


async def upload(user: User, name: str, data: bytes, content_type: str = "") -> str:
    client = AsyncClient()
    await client.aforce_login(user)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = await client.post(
        reverse("chat:attachment_upload"),
        {
            "file": SimpleUploadedFile(
                name, data, content_type=content_type or "application/octet-stream"
            )
        },
    )
    assert response.status_code == 201, response.content
    attachment = await Attachment.objects.filter(user=user).alatest("created_at")
    return str(attachment.pk)


def blocks_of(body: dict[str, Any], index: int) -> list[dict[str, Any]]:
    content = body["messages"][index]["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


async def test_smoke(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    user: User,
    conversation: Conversation,
) -> None:
    png = image_bytes(64, 48, exif_comment="at home")
    pdf = pdf_bytes(2)
    ids = [
        await upload(user, "shot.png", png, "image/png"),
        await upload(user, "spec.pdf", pdf),
        await upload(user, "notes.md", b"# Notes\n\nhello"),
    ]
    sock = await chat_socket(conversation, user)
    await sock.send("send", "What are these?", ids)
    _, reply_id = await sock.turn_started()
    assert await sock.finished(reply_id) == "complete"
    body = fake_anthropic.requests[-1].body
    blocks = blocks_of(body, 0)
    print([b["type"] for b in blocks])
    assert [b["type"] for b in blocks] == ["image", "document", "text", "text"]
    stored = await database_sync_to_async(lambda: list(Attachment.objects.order_by("position")))()
    from chat.files import store

    assert base64.b64decode(blocks[0]["source"]["data"]) == await database_sync_to_async(
        store.read
    )(stored[0])
    assert base64.b64decode(blocks[1]["source"]["data"]) == pdf
    assert "# Notes\n\nhello" in blocks[2]["text"]
    img = Image.open(io.BytesIO(base64.b64decode(blocks[0]["source"]["data"])))
    assert not img.getexif()
    await sock.send("send", "And now?")
    _, reply2 = await sock.turn_started()
    assert await sock.finished(reply2) == "complete"
    body = fake_anthropic.requests[-1].body
    assert [b["type"] for b in blocks_of(body, 0)] == ["image", "document", "text", "text"]
