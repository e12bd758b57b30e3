"""Attachments through the streaming HTTP API: base64 files beside the message, checked as the
page's are, kept only if the turn starts; the conversation lists each message's files with the
URL its owner opens them at. Through the real API views, SDK and fake Anthropic API."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.urls import reverse

from chat.data import api_tokens
from chat.models import Attachment, Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer
from chat.testing.files import HTML_PAGE, image_bytes, pdf_bytes
from tests.helpers import blocks, files_in

pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    """The API as a script calls it, with a token of the user."""

    def __init__(self, token: str) -> None:
        self.client = AsyncClient()
        self.auth = {"Authorization": f"Bearer {token}"}

    async def get(self, url: str) -> Any:
        return await self.client.get(url, headers=self.auth)

    async def post(self, url: str, body: str) -> Any:
        return await self.client.post(
            url, data=body, content_type="application/json", headers=self.auth
        )


@pytest.fixture
async def api(user: User) -> Api:
    _, token = await database_sync_to_async(api_tokens.token_create)(user=user, name="tests")
    return Api(token)


def file(name: str, data: bytes, media_type: str = "") -> dict[str, str]:
    return {"name": name, "media_type": media_type, "data": base64.b64encode(data).decode()}


async def post(api: Api, conversation: Conversation, body: dict[str, Any]) -> Any:
    return await api.post(reverse("chat:api_messages", args=[conversation.pk]), json.dumps(body))


async def events(response: Any) -> list[tuple[str, dict[str, Any]]]:
    raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
    parsed = []
    for block in raw.strip().split("\n\n"):
        name = block.split("\n")[0].removeprefix("event: ")
        parsed.append((name, json.loads(block.split("\n")[1].removeprefix("data: "))))
    return parsed


async def test_files_go_with_the_message_and_the_conversation_lists_them(
    fake_anthropic: FakeAnthropicServer,
    api: Api,
    owner_client: AsyncClient,
    conversation: Conversation,
) -> None:
    pdf = pdf_bytes(1)
    response = await post(
        api,
        conversation,
        {
            "message": "What are these?",
            "attachments": [
                file("chart.png", image_bytes(), "image/png"),
                file("spec.pdf", pdf, "application/pdf"),
                file("data.csv", b"a,b\n1,2\n"),
            ],
        },
    )
    assert response.status_code == 200
    sent = await events(response)
    assert sent[-1][0] == "end" and sent[-1][1]["status"] == "complete"
    body = fake_anthropic.requests[-1].body
    assert [b["type"] for b in blocks(body, 0)] == ["image", "document", "text", "text"]
    assert base64.b64decode(blocks(body, 0)[1]["source"]["data"]) == pdf

    listed = await api.get(reverse("chat:api_conversation", args=[conversation.pk]))
    files = listed.json()["messages"][0]["attachments"]
    assert [(f["name"], f["media_type"], f["kind"]) for f in files] == [
        ("chart.png", "image/png", "image"),
        ("spec.pdf", "application/pdf", "document"),
        ("data.csv", "text/csv", "text"),
    ]
    assert files[1]["size"] == len(pdf)
    assert files[1]["url"] == f"http://testserver/attachments/{files[1]['id']}/"
    assert listed.json()["messages"][1]["attachments"] == []
    # The URL is the file's page: its owner, signed in, opens it; the token alone does not.
    opened = await owner_client.get(files[1]["url"])
    assert opened.status_code == 200 and opened["Content-Type"] == "application/pdf"
    assert (await api.get(files[1]["url"])).status_code == 302


async def test_a_message_of_files_only_is_accepted(
    fake_anthropic: FakeAnthropicServer, api: Api, conversation: Conversation
) -> None:
    response = await post(api, conversation, {"attachments": [file("a.txt", b"hello")]})
    assert response.status_code == 200
    await events(response)
    assert blocks(fake_anthropic.requests[-1].body, 0)[0]["text"].endswith("hello\n</document>")


@pytest.mark.parametrize(
    ("attachments", "status", "says"),
    [
        ([file("x.png", HTML_PAGE, "image/png")], 400, "says it is an image"),
        ([file("empty.txt", b"")], 400, "is empty"),
        ([file("big.txt", b"a" * 5000)], 413, "at most 4.0 KB"),
        ([file(f"{n}.txt", b"t") for n in range(3)], 400, "at most 2 files; this one has 3"),
        ([{"name": "a.png", "data": "not base64!"}], 400, "not valid base64"),
        ([{"name": "a.png"}], 400, 'with the file in base64 as "data"'),
        ("a.png", 400, '"attachments" must be a list'),
        ([file("ok.txt", b"fine"), file("cut.png", image_bytes()[:60])], 400, "cut.png could not"),
    ],
)
async def test_a_refused_message_says_why_and_keeps_nothing(
    fake_anthropic: FakeAnthropicServer,
    api: Api,
    conversation: Conversation,
    settings: Any,
    attachments_dir: Path,
    attachments: Any,
    status: int,
    says: str,
) -> None:
    settings.CHAT_MAX_ATTACHMENT_BYTES = 4096
    settings.CHAT_MAX_ATTACHMENTS = 2
    response = await post(api, conversation, {"message": "see", "attachments": attachments})
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"]
    assert error["type"] == ("request_too_large" if status == 413 else "invalid_request_error")
    assert await Message.objects.acount() == 0
    assert await Attachment.objects.acount() == 0
    assert files_in(attachments_dir) == []
    assert fake_anthropic.requests == []


async def test_a_body_over_the_apis_limit_is_413_by_its_length_before_it_is_read(
    api: Api, conversation: Conversation, settings: Any
) -> None:
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1024
    settings.CHAT_MAX_ATTACHMENTS = 1
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    response = await post(api, conversation, {"message": "x" * 100, "pad": "y" * 100_000})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert await Message.objects.acount() == 0


async def test_a_turn_refused_after_the_files_were_checked_keeps_none_of_them(
    fake_anthropic: FakeAnthropicServer,
    api: Api,
    conversation: Conversation,
    attachments_dir: Path,
) -> None:
    from chat.data import services

    # A reply already streams in the conversation (from another door): 409, nothing kept.
    await database_sync_to_async(services.turn_create)(
        conversation=conversation, text="first", model="m"
    )
    response = await post(
        api, conversation, {"message": "second", "attachments": [file("a.pdf", pdf_bytes())]}
    )
    assert response.status_code == 409
    assert await Attachment.objects.acount() == 0
    assert files_in(attachments_dir) == []
