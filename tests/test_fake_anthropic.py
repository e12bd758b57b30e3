"""Tests for the fake Anthropic server, driven through the REAL ``anthropic`` SDK.

Why: every "Stop really stops the model" test in this project trusts the fake's records
(``disconnected_at``, ``delta_times``). These tests prove the fake speaks the wire format the SDK
expects, injects each fault the way the SDK will see it in production, and notices a client
hang-up within milliseconds. They need no Django settings.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from chat.testing.fake_anthropic import (
    FakeAnthropicControl,
    FakeAnthropicServer,
    FakeConfig,
    default_text,
    plan_chunks,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "claude-fake-model"


def _messages(text: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": text},
    ]


async def _stream_text(
    sdk_client: anthropic.AsyncAnthropic, text: str = "hello there", max_tokens: int = 1024
) -> tuple[str, Any]:
    """Stream one reply to the end; return (concatenated text events, final message)."""
    parts: list[str] = []
    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=max_tokens, messages=_messages(text)
    ) as stream:
        async for event in stream:
            if event.type == "text":
                parts.append(event.text)
        final = await stream.get_final_message()
    return "".join(parts), final


# ---- normal replies -----------------------------------------------------------------------


async def test_full_stream_matches_config(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """The whole SSE sequence parses into the configured text, usage and stop_reason."""
    server.config = FakeConfig(interval=0.002, deltas=12)
    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=_messages("hello there")
    ) as stream:
        events = [event.type async for event in stream]
        final = await stream.get_final_message()
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-cache"
        request_id = stream.request_id

    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert events.count("text") == 12
    assert final.content[0].text == default_text(12) == "".join(plan_chunks(None, 12))
    assert final.usage.output_tokens == 12
    assert final.usage.input_tokens >= 1
    assert final.stop_reason == "end_turn"
    assert final.model == MODEL

    record = server.wait_for_request(1)
    server.wait_for_finish(record)
    assert record.completed and record.outcome == "completed"
    assert record.deltas_written == 12 == len(record.delta_times)
    assert record.disconnected_at is None
    assert record.request_id == request_id
    assert record.path == "/v1/messages"
    assert record.body["model"] == MODEL and record.body["stream"] is True
    # SDK 2.x sends api_key as "Authorization: Bearer"; the fake accepts that or x-api-key
    assert record.headers["authorization"] == "Bearer test-key"
    assert record.delta_times == sorted(record.delta_times)
    assert record.started_at <= record.delta_times[0] <= record.finished_at  # type: ignore[operator]


async def test_text_is_chunked_and_max_tokens_truncates(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """Custom text is cut at words; a small max_tokens cuts the reply with stop_reason."""
    server.config = FakeConfig(interval=0.001, deltas=3, text="alpha beta gamma")
    text, final = await _stream_text(sdk_client)
    assert text == "alpha beta gamma"
    assert plan_chunks("alpha beta gamma", 3) == ["alpha ", "beta ", "gamma"]

    text, final = await _stream_text(sdk_client, max_tokens=2)
    assert text == "alpha beta "
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 2


# ---- client hang-ups ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["cancel_task", "leave_async_with"])
async def test_client_hangup_is_recorded_promptly(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic, how: str
) -> None:
    """Cancelling the consumer (or leaving ``async with``) is seen within 100 ms, and the
    fake stops writing at once: at most one delta after the hang-up."""
    server.config = FakeConfig(interval=0.01, deltas=100)
    hung_up_at: list[float] = []

    async def consume() -> None:
        seen = 0
        async with sdk_client.messages.stream(
            model=MODEL, max_tokens=1024, messages=_messages("go")
        ) as stream:
            async for event in stream:
                if event.type == "text":
                    seen += 1
                    if how == "leave_async_with" and seen == 5:
                        hung_up_at.append(time.monotonic())
                        break

    task = asyncio.create_task(consume())
    record = await server.await_request(1)
    if how == "cancel_task":
        await server.await_delta(record, 5)
        hung_up_at.append(time.monotonic())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        await task

    disconnected_at = await server.await_disconnect(record, timeout=1)
    assert disconnected_at - hung_up_at[0] < 0.1
    assert record.deltas_after(hung_up_at[0]) <= 1
    await server.await_finish(record)
    assert not record.completed
    assert record.outcome == "client_disconnected"
    assert record.deltas_written < 10


async def test_hangup_during_first_delay(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """message_start arrives before ``first_delay``; cancelling then is still a disconnect."""
    server.config = FakeConfig(first_delay=2, interval=0.01, deltas=5)
    started = asyncio.Event()

    async def consume() -> None:
        async with sdk_client.messages.stream(
            model=MODEL, max_tokens=1024, messages=_messages("go")
        ) as stream:
            async for event in stream:
                if event.type == "message_start":
                    started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 1)
    record = await server.await_request(1)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnected_at = await server.await_disconnect(record, timeout=1)
    assert disconnected_at - cancelled_at < 0.1
    assert record.deltas_written == 0
    assert not record.completed


# ---- faults -------------------------------------------------------------------------------


async def test_status_529_once_is_retried_by_sdk(server: FakeAnthropicServer) -> None:
    """With ``fail_times=1`` the first attempt gets 529; the SDK retries (fast, thanks to
    ``retry-after-ms``) and the second attempt streams normally."""
    server.config = FakeConfig(interval=0.001, deltas=4, error="status_529", fail_times=1)
    sdk = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test-key", max_retries=2)
    try:
        began = time.monotonic()
        text, _final = await _stream_text(sdk)
        elapsed = time.monotonic() - began
    finally:
        await sdk.close()
    assert text == default_text(4)
    first, second = server.requests
    await server.await_finish(second)  # the client may see message_stop a moment earlier
    assert (first.status, first.outcome) == (529, "status_error")
    assert second.completed
    assert second.headers["x-stainless-retry-count"] == "1"
    assert elapsed < 0.4  # without retry-after-ms the SDK would back off ~0.5 s


async def test_status_401_raises_authentication_error(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """A 401 surfaces as ``anthropic.AuthenticationError`` with the real error body."""
    server.config = FakeConfig(error="status_401")
    with pytest.raises(anthropic.AuthenticationError) as excinfo:
        await _stream_text(sdk_client)
    assert excinfo.value.status_code == 401
    assert excinfo.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.OverloadedError),
    ],
)
async def test_status_errors_map_to_sdk_classes(
    server: FakeAnthropicServer,
    sdk_client: anthropic.AsyncAnthropic,
    status: int,
    error_class: type[Exception],
) -> None:
    """Each status fault carries the error type the SDK maps to its specific class."""
    server.config = FakeConfig(error=f"status_{status}")
    with pytest.raises(error_class):
        await _stream_text(sdk_client)


async def test_required_key_accepts_x_api_key_or_bearer(server: FakeAnthropicServer) -> None:
    """``required_key`` rejects a wrong key with 401 and accepts the right one either way."""
    server.config = FakeConfig(interval=0.001, deltas=2, required_key="right-key")
    wrong = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="nope", max_retries=0)
    by_bearer = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="right-key")
    by_x_api_key = anthropic.AsyncAnthropic(
        base_url=server.base_url,
        api_key="unused",
        default_headers={"X-Api-Key": "right-key", "Authorization": anthropic.omit},
    )
    try:
        with pytest.raises(anthropic.AuthenticationError):
            await _stream_text(wrong)
        assert (await _stream_text(by_bearer))[0] == default_text(2)
        assert (await _stream_text(by_x_api_key))[0] == default_text(2)
    finally:
        for sdk in (wrong, by_bearer, by_x_api_key):
            await sdk.close()
    assert server.requests[1].headers["authorization"] == "Bearer right-key"
    assert server.requests[2].headers["x-api-key"] == "right-key"
    assert "authorization" not in server.requests[2].headers


async def test_error_event_midstream_raises_api_status_error(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """An ``event: error`` after some deltas raises ``anthropic.APIStatusError`` while
    iterating (status_code is the stream's 200; the body says overloaded_error)."""
    server.config = FakeConfig(interval=0.001, deltas=10, error="error_midstream", error_after=3)
    parts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as excinfo:
        async with sdk_client.messages.stream(
            model=MODEL, max_tokens=1024, messages=_messages("go")
        ) as stream:
            async for event in stream:
                if event.type == "text":
                    parts.append(event.text)
    assert excinfo.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert "".join(parts) == "".join(plan_chunks(None, 10)[:3])
    record = await server.await_finish(server.requests[0])
    assert record.outcome == "error_event" and not record.completed


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        # The SDK does not wrap transport errors raised while iterating a stream: a FIN
        # before the terminating chunk surfaces as httpx2.RemoteProtocolError ("peer closed
        # connection without sending complete message body (incomplete chunked read)").
        ("drop_midstream", httpx2.RemoteProtocolError),
        # A TCP reset surfaces as httpx2.ReadError (cause: anyio BrokenResourceError).
        ("reset_midstream", httpx2.ReadError),
    ],
)
async def test_connection_dropped_midstream_raises(
    server: FakeAnthropicServer,
    sdk_client: anthropic.AsyncAnthropic,
    fault: str,
    error_class: type[Exception],
) -> None:
    """A server-side drop mid-reply raises while iterating; no message_stop arrives."""
    server.config = FakeConfig(interval=0.001, deltas=10, error=fault, error_after=4)
    parts: list[str] = []
    with pytest.raises(error_class):
        async with sdk_client.messages.stream(
            model=MODEL, max_tokens=1024, messages=_messages("go")
        ) as stream:
            async for event in stream:
                if event.type == "text":
                    parts.append(event.text)
    assert len(parts) == 4
    record = await server.await_finish(server.requests[0])
    assert record.deltas_written == 4
    assert not record.completed and record.disconnected_at is None


async def test_stall_then_client_timeout_is_a_disconnect(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """After a stall the client sees nothing more; giving up is recorded as a disconnect."""
    server.config = FakeConfig(interval=0.001, deltas=10, error="stall", error_after=2)
    events: list[str] = []

    async def consume() -> None:
        async with sdk_client.messages.stream(
            model=MODEL, max_tokens=1024, messages=_messages("go")
        ) as stream:
            async for event in stream:
                events.append(event.type)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(), timeout=0.3)
    gave_up_at = time.monotonic()
    record = server.requests[0]
    disconnected_at = await server.await_disconnect(record, timeout=1)
    assert disconnected_at - gave_up_at < 0.1
    assert events.count("text") == 2 and "message_stop" not in events
    assert record.deltas_written == 2 and not record.completed


# ---- directives ---------------------------------------------------------------------------


async def test_directive_overrides_config_for_one_request(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``[[fake:...]]`` in the last user message wins over the config, for that request."""
    server.config = FakeConfig(interval=0.001, deltas=40)
    text, final = await _stream_text(sdk_client, "please [[fake:deltas=3]]")
    assert text == default_text(3)
    assert final.usage.output_tokens == 3
    assert server.requests[0].config["deltas"] == 3
    assert server.config.deltas == 40

    text, _ = await _stream_text(sdk_client, "[[fake:echo, deltas=2]] ping pong")
    assert text == "Echo: ping pong"

    with pytest.raises(anthropic.BadRequestError):
        await _stream_text(sdk_client, "[[fake:no_such_knob=1]]")


async def test_directive_fail_times_counts_retries(server: FakeAnthropicServer) -> None:
    """``fail_times`` in a directive counts the SDK's retries of that same request."""
    sdk = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test-key", max_retries=3)
    try:
        text, _ = await _stream_text(sdk, "[[fake:error=status_429,fail_times=2,deltas=2]]")
    finally:
        await sdk.close()
    assert text == default_text(2)
    assert [r.status for r in server.requests] == [429, 429, 200]


# ---- other endpoints and the sync API -----------------------------------------------------


async def test_non_streaming_create_and_count_tokens(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``messages.create`` without streaming and ``count_tokens`` also work."""
    server.config = FakeConfig(interval=0.001, deltas=3, text="one two three")
    message = await sdk_client.messages.create(
        model=MODEL, max_tokens=100, messages=_messages("12345678")
    )
    assert message.content[0].text == "one two three"  # type: ignore[union-attr]
    assert message.usage.output_tokens == 3
    counted = await sdk_client.messages.count_tokens(model=MODEL, messages=_messages("12345678"))
    assert counted.input_tokens == message.usage.input_tokens == (15 + 14 + 8) // 4
    for record in server.requests:
        assert (await server.await_finish(record)).outcome == "completed"
    assert [r.path for r in server.requests] == ["/v1/messages", "/v1/messages/count_tokens"]


def test_sync_waiters_and_reset() -> None:
    """The blocking helpers work from plain sync code with the sync SDK in a thread."""
    with FakeAnthropicServer(FakeConfig(interval=0.005, deltas=6)) as server:
        sdk = anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0)
        result: list[str] = []

        def run() -> None:
            with sdk.messages.stream(
                model=MODEL, max_tokens=100, messages=_messages("sync")
            ) as stream:
                result.append(stream.get_final_text())

        worker = threading.Thread(target=run)
        worker.start()
        record = server.wait_for_request(1, timeout=2)
        assert server.wait_for_delta(record, 3, timeout=2) == record.delta_times[2]
        server.wait_for_finish(record, timeout=2)
        worker.join(2)
        sdk.close()
        assert result == [default_text(6)]
        with pytest.raises(RuntimeError, match="without a client disconnect"):
            server.wait_for_disconnect(record, timeout=1)
        with pytest.raises(TimeoutError):
            server.wait_for_request(2, timeout=0.05)
        server.reset()
        assert server.requests == []


# ---- standalone mode ----------------------------------------------------------------------


async def test_standalone_process_and_control_endpoints() -> None:
    """``python -m chat.testing.fake_anthropic --port 0`` prints its URL, serves the SDK, and
    reports/accepts config over ``/_fake/*`` for tests running the app in another process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chat.testing.fake_anthropic",
        "--port",
        "0",
        "--interval",
        "0.002",
        "--deltas",
        "5",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        control = FakeAnthropicControl(base_url)

        sdk = anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key", max_retries=0)
        try:
            text, _ = await _stream_text(sdk)
            assert text == default_text(5)
            records = await asyncio.to_thread(control.requests, 1, finished=True)
            assert len(records) == 1
            assert records[0].completed and records[0].deltas_written == 5
            assert records[0].body["model"] == MODEL

            new_config = await asyncio.to_thread(control.set_config, deltas=2)
            assert new_config["deltas"] == 2
            text, _ = await _stream_text(sdk)
            assert text == default_text(2)

            await asyncio.to_thread(control.reset)
            assert await asyncio.to_thread(control.requests) == []
        finally:
            await sdk.close()
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 5) == 0
