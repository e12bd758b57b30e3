"""What several test modules share that is not a fixture: constants, the in-process chat socket
driver, "start a slow reply", and the Content-Security-Policy parser.

Fixtures are in the conftest.py files (tests/, tests/live/, tests/browser/); the fake Anthropic
server and the live-server harness are in chat/testing/.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import html
import http.client
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import AsyncClient

from chat.testing.fake_anthropic import (
    DEFAULT_RECORDINGS,
    SLOW_DELTAS,
    SLOW_INTERVAL,
    FakeAnthropicServer,
    FakeConfig,
    RequestRecord,
)
from chat.testing.live import app_env

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

#: The API key the in-process app is given (tests check it never leaks).
TEST_API_KEY = "sk-ant-test-0123456789-secret"
#: The origin (and host) of the in-process app's sockets.
ORIGIN = "http://127.0.0.1:8000"

#: A reply that streams for 6 s unless stopped (see chat.testing.fake_anthropic.SLOW_INTERVAL).
SLOW = FakeConfig(interval=SLOW_INTERVAL, deltas=SLOW_DELTAS)
#: A reply that completes at once.
QUICK = FakeConfig(interval=0.001, deltas=3)
#: The same two, as ``[[fake:...]]`` directives in a message (for a fake in another process).
SLOW_REPLY = f"[[fake:interval={SLOW_INTERVAL},deltas={SLOW_DELTAS}]]"
QUICK_REPLY = "[[fake:deltas=4,interval=0.01]]"

#: A text batch of a reply, appended to its bubble: (message id, escaped text).
BATCH = re.compile(r'<span id="msg-(\d+)-body" hx-swap-oob="beforeend">(.*?)</span>', re.DOTALL)
THINKING_BATCH = re.compile(
    r'<span id="msg-(\d+)-thinking" hx-swap-oob="beforeend">(.*?)</span>', re.DOTALL
)
#: A message bubble: (id, role, status).
ARTICLE = re.compile(r'<article id="msg-(\d+)" class="msg msg--(\w+) msg--(\w+)"')
#: A reply's final form, swapped in by id: (id, status).
FINAL = re.compile(
    r'<article id="msg-(\d+)" class="msg msg--assistant msg--(\w+)" hx-swap-oob="true"'
)


#: The CHAT_MAX_TOKENS of tests/test_metrics.py (the ``metrics_settings`` fixture): the fallback
#: its figures of tokens not generated are worked out with.
METRICS_MAX_TOKENS = 2000


def first_thinking(message_id: int) -> str:
    """The pattern of any thinking batch of that reply (its thinking is streaming)."""
    return rf'id="msg-{message_id}-thinking" hx-swap-oob="beforeend"'


def first_batch(message_id: int) -> str:
    """The pattern of any text batch of that reply (its text is streaming)."""
    return rf'id="msg-{message_id}-body" hx-swap-oob="beforeend"'


@contextlib.contextmanager
def workers_lock(directory: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold, across the xdist workers of one run, a lock in ``directory``: shared by every test,
    exclusive for a test that must run alone (a latency budget measured across processes).

    A turnstile in front keeps a test waiting to run alone from being overtaken by the other
    workers' next tests: once it waits, they wait behind it.
    """
    with (
        open(directory / "workers.turnstile", "a") as turnstile,
        open(directory / "workers.lock", "a") as lock,
    ):
        if exclusive:
            fcntl.flock(turnstile, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            fcntl.flock(turnstile, fcntl.LOCK_SH)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_SH)
        yield  # (closing the files releases the locks)


# --------------------------------------------------------------------------------------------
# The chat socket, in-process (the real ASGI app through channels.testing)
# --------------------------------------------------------------------------------------------


@dataclass
class ChatSocket:
    """Drives the real ASGI app's chat socket and keeps every frame it received."""

    comm: WebsocketCommunicator
    frames: list[str] = field(default_factory=list)

    async def send(
        self, action: str, message: str = "", attachments: list[str] | str | None = None
    ) -> None:
        # The shape htmx's ws-send produces: the form's values plus HEADERS (a lone hidden
        # `attachments` input is a string, several a list).
        frame: dict[str, Any] = {"action": action, "message": message}
        if attachments is not None:
            frame["attachments"] = attachments
        frame["HEADERS"] = {"HX-Request": "true"}
        await self.comm.send_to(text_data=json.dumps(frame))

    async def next_frame(self, timeout: float = 5.0) -> str:
        frame = await self.comm.receive_from(timeout=timeout)
        assert isinstance(frame, str)
        self.frames.append(frame)
        return frame

    async def until(self, pattern: str | re.Pattern[str], timeout: float = 5.0) -> re.Match[str]:
        """Read frames until one matches; the match. (Frames read on the way are kept in
        ``frames`` but not searched again by a later ``until``.)"""
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

    def thinking_sent(self, message_id: int) -> str:
        """The reply's thinking as the browser received it, unescaped."""
        return "".join(
            html.unescape(text)
            for frame in self.frames
            for mid, text in THINKING_BATCH.findall(frame)
            if int(mid) == message_id
        )

    def batches(self, message_id: int) -> int:
        return sum(
            1 for frame in self.frames for mid, _ in BATCH.findall(frame) if int(mid) == message_id
        )


SocketFactory = Callable[..., Awaitable[ChatSocket]]


async def session_cookie(user: User) -> str:
    """A ``Cookie`` header value that signs ``user`` in."""
    client = AsyncClient()
    await client.aforce_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


@dataclass
class StreamingReply:
    """A reply started by ``start_slow_reply``, streaming now."""

    user_id: int
    """The user message of its turn."""
    reply_id: int
    record: RequestRecord
    """The fake's record of its upstream request (live: ``deltas_written``, ``disconnected_at``)."""


async def start_slow_reply(
    sock: ChatSocket,
    fake: FakeAnthropicServer,
    text: str = "Tell me everything",
    *,
    deltas: int = 1,
    config: FakeConfig | None = SLOW,
    action: str = "send",
    attachments: list[str] | None = None,
) -> StreamingReply:
    """Send ``text`` on ``sock`` and return once the reply is streaming: the fake has written
    ``deltas`` deltas of it and the socket has shown its first text.

    The fake is reset to ``config`` first (records cleared): ``SLOW`` streams for 6 s, so the
    reply is still streaming when this returns. ``config=None`` keeps the fake's config and
    records (a second reply in the same test).
    """
    if config is not None:
        fake.reset(config)
    number = len(fake.requests) + 1
    await sock.send(action, text, attachments)
    user_id, reply_id = await sock.turn_started()
    record = await fake.await_request(number)
    await fake.await_delta(record, deltas)
    await sock.until(first_batch(reply_id))
    return StreamingReply(user_id, reply_id, record)


# --------------------------------------------------------------------------------------------
# Security headers (tests/test_security_headers.py and its live and browser twins)
# --------------------------------------------------------------------------------------------


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The README's production variables (a fresh 67-character key), nothing inherited of
    the app's own variables; ``extra`` adds or overrides."""
    return app_env(
        database_url=f"sqlite:///{tmp_path / 'prod.db'}",
        anthropic_base_url="http://127.0.0.1:9",  # never called here
        **{
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "chat.example.com",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
        }
        | extra,
    )


#: The policy, directive by directive; style-src also carries the response's nonce when the
#: page used one (see expected_policy).
POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
NONCE = re.compile(r'\bnonce="([A-Za-z0-9_-]{16,})"')


def directives(header: str) -> dict[str, list[str]]:
    """A CSP header as {directive: [source, ...]}, refusing a directive given twice."""
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} twice in {header!r}"
        parsed[name] = sources
    return parsed


def expected_policy(nonce: str | None = None) -> dict[str, list[str]]:
    policy = {name: list(sources) for name, sources in POLICY.items()}
    if nonce:
        policy["style-src"].append(f"'nonce-{nonce}'")
    return policy


def assert_strict(policy: dict[str, list[str]]) -> None:
    for name, sources in policy.items():
        for weak in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:"):
            assert weak not in sources, f"{weak} in {name}"
    assert policy["script-src"] == ["'self'"]


def page_nonce(html: str) -> str:
    """The one nonce every nonce attribute of the page carries."""
    nonces = set(NONCE.findall(html))
    assert len(nonces) == 1, f"expected one nonce in the page, found {nonces}"
    return nonces.pop()


# --------------------------------------------------------------------------------------------
# Recorded Messages API streams (tests/recordings/*.sse)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """What a recorded stream says, read from its events: the answer (text deltas), the
    thinking (thinking deltas) and the stop reason."""

    name: str
    answer: str
    thinking: str
    stop_reason: str


def read_recording(name: str) -> Recording:
    answer: list[str] = []
    thinking: list[str] = []
    stop_reason = ""
    for line in (DEFAULT_RECORDINGS / f"{name}.sse").read_text().splitlines():
        if not line.startswith("data: "):
            continue
        event = json.loads(line.removeprefix("data: "))
        delta = event.get("delta", {})
        if event["type"] == "content_block_delta" and delta.get("type") == "text_delta":
            answer.append(delta["text"])
        elif event["type"] == "content_block_delta" and delta.get("type") == "thinking_delta":
            thinking.append(delta["thinking"])
        elif event["type"] == "message_delta":
            stop_reason = delta.get("stop_reason") or stop_reason
    return Recording(name, "".join(answer), "".join(thinking), stop_reason)


RECORDINGS = sorted(path.stem for path in DEFAULT_RECORDINGS.glob("*.sse"))


# --------------------------------------------------------------------------------------------
# Attachments
# --------------------------------------------------------------------------------------------


async def upload_file(
    client: AsyncClient,
    name: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    *,
    conversation: object = None,
) -> Any:
    """Upload a file as the page does (POST /attachments/, field `file`, and the conversation
    whose composer it goes in, if any); the response."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    form: dict[str, Any] = {"file": SimpleUploadedFile(name, data, content_type=content_type)}
    if conversation is not None:
        form["conversation"] = str(conversation)
    return await client.post(reverse("chat:attachment_upload"), form)


def uploaded_id(response: Any) -> str:
    """The attachment id in an upload's chip (its 201 response)."""
    assert response.status_code == 201, response.content
    match = re.search(rb'data-attachment="([0-9a-f-]{36})"', response.content)
    assert match is not None, response.content
    return match.group(1).decode()


def blocks(body: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """The blocks of message `index` of a Messages API request body (a string is one text)."""
    content = body["messages"][index]["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def files_in(directory: Path) -> list[Path]:
    """Every file stored under an attachments directory."""
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def http_get(
    server: Any, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """GET ``path`` from a daphne process (a ``DaphneProcess``) over plain HTTP: the status,
    the headers and the body."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()
