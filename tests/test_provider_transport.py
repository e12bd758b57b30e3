"""The Anthropic provider's HTTP transport (aiohttp, chat/providers/anthropic.py): a stopped
stream still closes its connection at once, even to an upstream that keeps connections alive,
and transport failures still read as the same plain words on the page."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

import chat.testing.fake_anthropic as fake_module
from chat.providers import ChatTurn, ProviderError, TextDelta
from chat.providers.anthropic import AnthropicProvider, _HangUpAtOnce
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import SLOW

HISTORY = [ChatTurn("user", "Hello")]


@pytest.fixture
def keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake answers without `connection: close`, as the real API does (HTTP/1.1 keep-alive):
    a client that pooled a stopped stream's connection instead of closing it would show."""
    base_headers = fake_module._base_headers

    def without_close(request_id: str) -> dict[str, str]:
        headers = base_headers(request_id)
        headers.pop("connection", None)
        return headers

    monkeypatch.setattr(fake_module, "_base_headers", without_close)


async def test_the_provider_talks_http_through_aiohttp(fake_server: FakeAnthropicServer) -> None:
    fake_server.reset(FakeConfig(interval=0.001, deltas=3))
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)
    events = [e async for e in provider.stream(model="m", system="", history=HISTORY, max_tokens=9)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta))
    transport = provider._client()._client._transport  # the SDK's httpx2 client's transport
    assert isinstance(transport, _HangUpAtOnce)
    assert type(transport._inner).__name__ == "AiohttpTransport"


@pytest.mark.parametrize("keep", [False, True], ids=["connection-close", "keep-alive"])
async def test_a_stop_hangs_up_before_the_event_loop_runs_anything_else(
    fake_server: FakeAnthropicServer, request: pytest.FixtureRequest, keep: bool
) -> None:
    """The FIN leaves while the stopped task still holds the loop (as a stopped reply's save and
    final frame do right after its upstream ends), not at the loop's next turn."""
    if keep:
        request.getfixturevalue("keep_alive")
    fake_server.reset(SLOW)
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)
    seen: list[float] = []

    async def consume() -> None:
        try:
            async for _ in provider.stream(model="m", system="", history=HISTORY, max_tokens=50):
                pass
        except asyncio.CancelledError:
            # Blocks the loop: only a hang-up already sent can reach the fake meanwhile.
            seen.append(fake_server.wait_for_disconnect(record, timeout=1.0))
            raise

    task = asyncio.create_task(consume())
    record = await fake_server.await_request()
    await fake_server.await_delta(record, 3)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen and seen[0] - cancelled_at < 0.1


@pytest.mark.usefixtures("keep_alive")
async def test_stopped_streams_close_their_connections_at_once_under_keep_alive(
    fake_server: FakeAnthropicServer,
) -> None:
    """One stream stopped alone, then the rest at once: every connection is closed (the fake sees
    the hang-up), none is kept in the pool, and at most one delta follows a stop."""
    fake_server.reset(SLOW)
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)
    got: list[int] = [0] * 10

    async def consume(i: int) -> None:
        async for event in provider.stream(
            model="m", system="", history=[ChatTurn("user", f"stream {i}")], max_tokens=500
        ):
            if isinstance(event, TextDelta):
                got[i] += 1

    tasks = [asyncio.create_task(consume(i)) for i in range(len(got))]
    deadline = time.monotonic() + 10
    while min(got) < 3:
        assert time.monotonic() < deadline, "not every stream streamed"
        await asyncio.sleep(0.01)
    records = {fake_module.last_user_text(r.body): r for r in fake_server.requests}
    cancelled: dict[int, float] = {0: time.monotonic()}
    tasks[0].cancel()
    await fake_server.await_disconnect(records["stream 0"])
    for i in range(1, len(tasks)):
        cancelled[i] = time.monotonic()
        tasks[i].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for i in range(len(tasks)):
        record = records[f"stream {i}"]
        closed_at = await fake_server.await_disconnect(record)
        assert closed_at - cancelled[i] < 0.1, f"stream {i}"
        assert record.deltas_after(cancelled[i]) <= 1, f"stream {i}"
        assert not record.completed


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("drop_midstream", "The connection to Anthropic was lost mid-reply."),
        ("reset_midstream", "The connection to Anthropic was lost mid-reply."),
        ("stall", "Anthropic stopped sending (the stream stalled)."),
        ("error_midstream", "Anthropic is overloaded right now. Retry in a moment."),
    ],
)
async def test_midstream_failures_read_as_before_on_aiohttp(
    fake_server: FakeAnthropicServer, settings: Any, error: str, expected: str
) -> None:
    settings.CHAT_STALL_TIMEOUT = 0.3
    fake_server.reset(FakeConfig(interval=0.002, deltas=20, error=error, error_after=4))
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)
    texts: list[str] = []
    with pytest.raises(ProviderError) as raised:
        async for event in provider.stream(model="m", system="", history=HISTORY, max_tokens=50):
            if isinstance(event, TextDelta):
                texts.append(event.text)
    assert str(raised.value) == expected
    assert "".join(texts) == fake_server.requests[-1].text_written  # the partial came first


async def test_an_unreachable_upstream_reads_as_a_failed_connection(settings: Any) -> None:
    settings.CHAT_MAX_RETRIES = 0
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = AnthropicProvider(api_key="k", base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError) as raised:
        async for _ in provider.stream(model="m", system="", history=HISTORY, max_tokens=5):
            pass
    assert str(raised.value) == "The connection to Anthropic failed."
