"""Shared fixtures: users, conversations, the fake Anthropic server, and a chat socket driver."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import AsyncClient

from chat.models import Conversation
from tests.fake_anthropic import FakeAnthropicServer, FakeConfig

TEST_API_KEY = "sk-ant-test-0123456789-secret"
ORIGIN = "http://127.0.0.1:8000"

BATCH = re.compile(r'<span id="msg-(\d+)-body" hx-swap-oob="beforeend">(.*?)</span>', re.DOTALL)
ARTICLE = re.compile(r'<article id="msg-(\d+)" class="msg msg--(\w+) msg--(\w+)"')
FINAL = re.compile(
    r'<article id="msg-(\d+)" class="msg msg--assistant msg--(\w+)" hx-swap-oob="true"'
)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def fake_anthropic(fake_server: FakeAnthropicServer, settings: Any) -> FakeAnthropicServer:
    """The app's Anthropic provider, through the real SDK, against the fake API server."""
    fake_server.reset(FakeConfig(interval=0.01, deltas=30))
    settings.CHAT_PROVIDER = "anthropic"
    settings.ANTHROPIC_API_KEY = TEST_API_KEY
    settings.ANTHROPIC_BASE_URL = fake_server.base_url
    return fake_server


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> None:
    """Tests count the fake's requests; a title request after each first reply would shift
    them (the title tests turn it back on). And tests send more than a person would: the
    limits are set by tests/test_limits.py where it tests them."""
    settings.CHAT_AUTO_TITLE = False
    settings.CHAT_MESSAGES_PER_MINUTE = 100_000
    settings.CHAT_MAX_CONCURRENT_REPLIES = 1000


@pytest.fixture
def user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("alice", password="correct-horse-battery")


@pytest.fixture
def other_user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("mallory", password="correct-horse-battery")


@pytest.fixture
def conversation(user: User) -> Conversation:
    return Conversation.objects.create(user=user, title="Test chat")


@dataclass
class ChatSocket:
    """Drives the real ASGI app's chat socket and keeps every frame it received."""

    comm: WebsocketCommunicator
    frames: list[str] = field(default_factory=list)

    async def send(self, action: str, message: str = "") -> None:
        # The shape htmx's ws-send produces: the form's values plus HEADERS.
        await self.comm.send_to(
            text_data=json.dumps(
                {"action": action, "message": message, "HEADERS": {"HX-Request": "true"}}
            )
        )

    async def next_frame(self, timeout: float = 5.0) -> str:
        frame = await self.comm.receive_from(timeout=timeout)
        assert isinstance(frame, str)
        self.frames.append(frame)
        return frame

    async def until(self, pattern: str | re.Pattern[str], timeout: float = 5.0) -> re.Match[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.next_frame(timeout=max(0.01, deadline - loop.time()))
            match = re.search(pattern, frame)
            if match:
                return match

    async def turn_started(self) -> tuple[int, int]:
        """Wait for the frame that adds a turn; the ids of its user and assistant messages."""
        while True:
            frame = await self.next_frame()
            if 'id="messages" hx-swap-oob="beforeend"' in frame:
                ids = [(int(m[0]), m[1]) for m in ARTICLE.findall(frame)]
                assert [role for _, role in ids] == ["user", "assistant"]
                return ids[0][0], ids[1][0]

    async def finished(self, message_id: int, timeout: float = 10.0) -> str:
        """Wait for a reply's final form; its status."""
        final = rf'<article id="msg-{message_id}" class="msg msg--assistant msg--(\w+)" hx-swap-oob'
        match = await self.until(final, timeout=timeout)
        return match.group(1)

    def text_sent(self, message_id: int) -> str:
        """The reply text as the browser received it: every batch for that bubble, unescaped."""
        return "".join(
            html.unescape(text)
            for frame in self.frames
            for mid, text in BATCH.findall(frame)
            if int(mid) == message_id
        )

    def batches(self, message_id: int) -> int:
        return sum(
            1 for frame in self.frames for mid, _ in BATCH.findall(frame) if int(mid) == message_id
        )


SocketFactory = Callable[..., Awaitable[ChatSocket]]


async def session_cookie(user: User) -> str:
    client = AsyncClient()
    await client.aforce_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


@pytest.fixture
async def chat_socket() -> AsyncIterator[SocketFactory]:
    """Open sockets through the full ASGI stack (origin check, session auth, routing)."""
    from chatsite.asgi import application

    opened: list[WebsocketCommunicator] = []

    async def open_socket(
        conversation: Conversation,
        user: User | None,
        *,
        origin: str = ORIGIN,
        expect_connected: bool = True,
        after: int | None = None,
    ) -> ChatSocket:
        headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
        if user is not None:
            headers.append((b"cookie", (await session_cookie(user)).encode()))
        # `after`: the newest message id of the page that opens the socket, as the page sends.
        query = "" if after is None else f"?after={after}"
        comm = WebsocketCommunicator(
            application, f"/ws/chat/{conversation.pk}/{query}", headers=headers
        )
        connected, _ = await comm.connect(timeout=5)
        assert connected is expect_connected
        if connected:
            opened.append(comm)
        return ChatSocket(comm)

    yield open_socket
    for comm in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            await comm.disconnect(timeout=5)
