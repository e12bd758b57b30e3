"""Talking to a live app like a browser, without one: a signed-in HTTP session and chat tabs.

``Session`` signs in over HTTP (cookies, CSRF) and calls the JSON endpoints; ``Tab`` is one
chat socket (the ``websockets`` client) that reads every frame in the background, with the time
it arrived, so a test can wait for patterns and compare what each tab was shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chat.testing.fake_anthropic import FakeAnthropicControl, RequestRecord

BATCH = re.compile(r'<span id="msg-(\d+)-body" hx-swap-oob="beforeend">(.*?)</span>', re.DOTALL)
TURN = re.compile(r'<article id="msg-(\d+)" class="msg msg--assistant msg--streaming"')
NOTICE = re.compile(r'<div id="notice" class="notice notice--(\w+)"[^>]*>(.*?)</div>', re.DOTALL)
#: A reply as it stands, sent to a page that starts watching it mid-reply (chat/ws/render.py):
#: its text so far, then only the batches after it.
SNAPSHOT = re.compile(
    r'<article id="msg-(\d+)" class="msg msg--assistant msg--streaming" hx-swap-oob="true".*?'
    r'<div class="msg-body" id="msg-\1-body">(.*?)</div>.*?'
    r"Still answering",
    re.DOTALL,
)


def final_pattern(message_id: int) -> str:
    """A reply's final form (swapped in by id); group 1 is its status. (A tab that joins
    mid-reply is also sent the reply by id, as a snapshot with status streaming.)"""
    return (
        rf'<article id="msg-{message_id}" class="msg msg--assistant '
        r'msg--(complete|interrupted|error)" hx-swap-oob'
    )


class Session:
    """A signed-in user's cookies, usable against every server process of one app.

    Cookies ignore ports, so one sign-in works on all processes on 127.0.0.1 (the session is
    in the shared database). Blocking: call from ``asyncio.to_thread`` in async tests.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def cookie(self, name: str) -> str:
        for cookie in self.jar:
            if cookie.name == name and cookie.value is not None:
                return cookie.value
        raise KeyError(name)

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def _open(self, request: urllib.request.Request, timeout: float) -> tuple[int, str, str]:
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.geturl(), exc.read().decode()

    def sign_in(self, username: str, password: str) -> None:
        self._open(urllib.request.Request(self.base_url + "/accounts/login/"), timeout=10)
        form = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": self.cookie("csrftoken"),
                "username": username,
                "password": password,
            }
        ).encode()
        status, url, _ = self._open(
            urllib.request.Request(self.base_url + "/accounts/login/", data=form), timeout=10
        )
        assert status == 200 and "/accounts/login/" not in url, f"sign-in failed ({status})"

    def new_conversation(self, base_url: str | None = None) -> str:
        """Create a conversation (as the New chat button does); its id."""
        status, url, _ = self.post(base_url, "/conversations/new/", accept="text/html")
        assert status == 200, f"creating a conversation failed ({status})"
        match = re.search(r"/conversations/([0-9a-f-]{36})/$", url)
        assert match, url
        return match.group(1)

    def get(self, base_url: str | None, path: str) -> tuple[int, str, str]:
        request = urllib.request.Request((base_url or self.base_url).rstrip("/") + path)
        return self._open(request, timeout=30)

    def post(
        self, base_url: str | None, path: str, *, accept: str = "application/json"
    ) -> tuple[int, str, str]:
        request = urllib.request.Request(
            (base_url or self.base_url).rstrip("/") + path,
            data=b"",
            method="POST",
            headers={"X-CSRFToken": self.cookie("csrftoken"), "Accept": accept},
        )
        return self._open(request, timeout=30)

    def post_json(self, base_url: str | None, path: str) -> tuple[int, dict[str, Any]]:
        status, _, body = self.post(base_url, path)
        return status, json.loads(body)


@dataclass
class Frame:
    at: float
    """time.monotonic() when it arrived."""
    text: str


@dataclass
class Tab:
    """One chat socket on a conversation; every frame kept in order with its arrival time."""

    ws: ClientConnection
    frames: list[Frame] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, base_url: str, conversation_id: str, session: Session) -> Tab:
        origin = base_url.rstrip("/")
        url = origin.replace("http://", "ws://") + f"/ws/chat/{conversation_id}/"
        ws = await connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": session.cookie_header},
            proxy=None,
            max_size=None,
        )
        tab = cls(ws)
        tab._reader = asyncio.create_task(tab._read())
        return tab

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(Frame(time.monotonic(), str(raw)))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    async def send(self, action: str, message: str = "") -> float:
        """Send a frame as htmx's ws-send does; when it was sent (time.monotonic())."""
        sent_at = time.monotonic()
        await self.ws.send(
            json.dumps({"action": action, "message": message, "HEADERS": {"HX-Request": "true"}})
        )
        return sent_at

    async def until(
        self, pattern: str | re.Pattern[str], *, timeout: float = 10.0, start: int = 0
    ) -> re.Match[str]:
        """The first match of ``pattern`` in a frame (from index ``start``), waiting for it."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for frame in self.frames[seen:]:
                match = re.search(pattern, frame.text)
                if match:
                    return match
            seen = len(self.frames)
            if self.closed.is_set():
                raise AssertionError(f"the socket closed before {pattern!r} arrived")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} did not arrive within {timeout} s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()

    async def start_reply(self, text: str, *, batches: int = 3, timeout: float = 10.0) -> int:
        """Send ``text`` and wait until ``batches`` text batches of its reply have arrived (the
        reply is streaming); the reply's id. Give the fake a slow pace (its start-up default,
        or a ``[[fake:...]]`` directive in ``text``) so the reply is still streaming then."""
        start = len(self.frames)
        await self.send("send", text)
        message_id = await self.turn_started(start=start, timeout=timeout)
        await self.batches(message_id, batches, timeout=timeout)
        return message_id

    async def turn_started(self, **kwargs: Any) -> int:
        """The streaming assistant message a turn announced; its id."""
        return int((await self.until(TURN, **kwargs)).group(1))

    async def batches(self, message_id: int, count: int, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` text batches of that reply have arrived."""
        deadline = time.monotonic() + timeout
        while self.batch_count(message_id) < count:
            assert time.monotonic() < deadline, f"fewer than {count} batches in {timeout} s"
            await asyncio.sleep(0.01)

    async def finished(self, message_id: int, timeout: float = 10.0) -> str:
        """Wait for the reply's final form; its status."""
        return (await self.until(final_pattern(message_id), timeout=timeout)).group(1)

    def batch_count(self, message_id: int) -> int:
        return sum(
            1 for f in self.frames for mid, _ in BATCH.findall(f.text) if int(mid) == message_id
        )

    def text(self, message_id: int, *, before: float | None = None) -> str:
        """The reply's text as this tab was shown it: its snapshot, if it was sent one, then
        batch by batch (optionally only what had arrived before a moment)."""
        shown = ""
        for f in self.frames:
            if before is not None and f.at >= before:
                break
            for mid, text in SNAPSHOT.findall(f.text):
                if int(mid) == message_id:
                    shown = html.unescape(text)
            shown += "".join(
                html.unescape(text) for mid, text in BATCH.findall(f.text) if int(mid) == message_id
            )
        return shown

    def notices(self) -> list[tuple[str, str]]:
        """Every notice shown: (level, text)."""
        return [
            (level, html.unescape(text).strip())
            for f in self.frames
            for level, text in NOTICE.findall(f.text)
        ]

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


async def upstream(
    control: FakeAnthropicControl, marker: str, *, finished: bool = False, timeout: float = 10
) -> RequestRecord:
    """The fake's record of the request whose last message contains ``marker`` (with
    ``finished``, once the fake is done with it), without blocking the event loop."""
    until = {"finished": True} if finished else {}
    return await asyncio.to_thread(control.request_for, marker, timeout=timeout, **until)
