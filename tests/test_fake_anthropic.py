"""Tests for the fake Anthropic server, driven through the REAL ``anthropic`` SDK.

Why: every "Stop really stops the model" test in this project trusts the fake's records
(``disconnected_at``, ``delta_times``). These tests prove the fake speaks the wire format the SDK
expects, injects each fault the way the SDK will see it in production, and notices a client
hang-up within milliseconds. They need no Django settings.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import (
    InputJSONDelta,
    MessageParam,
    RedactedThinkingBlock,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingConfigEnabledParam,
    ThinkingDelta,
    ToolUseBlock,
)

from chat.testing.fake_anthropic import (
    REDACTED_THINKING_DATA,
    REQUESTED_THINKING_STEPS,
    TOOL_INPUT,
    TOOL_NAME,
    FakeAnthropicControl,
    FakeAnthropicServer,
    FakeConfig,
    count_input_tokens,
    default_text,
    plan_chunks,
    thinking_steps,
    tool_json_parts,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "claude-fake-model"


def _messages(text: str) -> list[MessageParam]:
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
    assert isinstance(final.content[0], TextBlock)
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
        default_headers={"X-Api-Key": "right-key", "Authorization": anthropic.omit},  # type: ignore[dict-item]
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
        "--recordings",
        str(REPO_ROOT / "tests" / "recordings"),
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

            text, final = await _stream_text(sdk, "[[fake:replay=refusal]]")
            assert final.stop_reason == "refusal" and text.endswith("but I can't")

            await asyncio.to_thread(control.reset)
            assert await asyncio.to_thread(control.requests) == []
        finally:
            await sdk.close()
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 5) == 0


# ---- more of the real stream: thinking, tool use, unknown blocks, cache usage --------------


async def test_thinking_block_streams_typed_deltas_and_signature(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``thinking=N``: a thinking block (index 0) with N typed thinking deltas and a signature,
    then the text as block 1; the helper's final message holds both blocks."""
    server.config = FakeConfig(interval=0.001, deltas=4, thinking=3)
    raw: list[Any] = []
    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=_messages("think first")
    ) as stream:
        thinking_events = []
        async for event in stream:
            if event.type == "thinking":
                thinking_events.append(event.thinking)
            elif event.type in ("content_block_start", "content_block_delta"):
                raw.append(event)
        final = await stream.get_final_message()

    assert thinking_events == thinking_steps(3)
    deltas = [e.delta for e in raw if e.type == "content_block_delta"]
    assert [type(d) for d in deltas[:4]] == [ThinkingDelta] * 3 + [SignatureDelta]
    assert all(isinstance(d, TextDelta) for d in deltas[4:]) and len(deltas) == 8
    assert [(e.index, e.content_block.type) for e in raw if e.type == "content_block_start"] == [
        (0, "thinking"),
        (1, "text"),
    ]
    thinking, text = final.content
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking == "".join(thinking_steps(3))
    assert thinking.signature.startswith("sig_")
    assert isinstance(text, TextBlock) and text.text == default_text(4)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4 + 3

    record = await server.await_finish(server.requests[0])
    assert record.thinking_written == "".join(thinking_steps(3))
    assert record.text_written == default_text(4) and record.deltas_written == 4


async def test_tool_use_block_accumulates_input_json(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``tool_use``: after the text, a tool_use block whose input_json_delta pieces the helper
    accumulates into the input; stop_reason "tool_use" unless set otherwise."""
    server.config = FakeConfig(interval=0.001, deltas=3, tool_use=True)
    json_deltas: list[str] = []
    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=_messages("weather?")
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and isinstance(event.delta, InputJSONDelta):
                json_deltas.append(event.delta.partial_json)
        final = await stream.get_final_message()

    assert json_deltas == tool_json_parts() and json_deltas[0] == ""
    text, tool = final.content
    assert isinstance(text, TextBlock) and text.text == default_text(3)
    assert isinstance(tool, ToolUseBlock)
    assert tool.name == TOOL_NAME and tool.input == TOOL_INPUT and tool.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 3 + len(tool_json_parts())
    record = await server.await_finish(server.requests[0])
    assert json.loads(record.tool_json_written) == TOOL_INPUT

    # an explicit stop_reason wins; a max_tokens cut drops the tool block
    _, final = await _stream_text(sdk_client, "[[fake:tool_use,stop_reason=pause_turn]]")
    assert final.stop_reason == "pause_turn" and final.content[-1].type == "tool_use"
    _, final = await _stream_text(sdk_client, "[[fake:tool_use]]", max_tokens=2)
    assert final.stop_reason == "max_tokens" and [b.type for b in final.content] == ["text"]


async def test_unknown_block_does_not_crash_raw_iteration(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``unknown_block``: a block and delta type the SDK has never heard of pass through the
    raw event stream (and the helper) without an error, and the text is intact."""
    server.config = FakeConfig(interval=0.001, deltas=3, unknown_block=True, tool_use=True)
    stream = await sdk_client.messages.create(
        model=MODEL, max_tokens=1024, messages=_messages("surprise me"), stream=True
    )
    events: list[Any] = []
    async with stream:
        async for event in stream:
            events.append(event)
    assert events[0].type == "message_start"
    assert [e.type for e in events[-2:]] == ["message_delta", "message_stop"]
    starts = [(e.index, e.content_block.type) for e in events if e.type == "content_block_start"]
    assert starts == [(0, "text"), (1, "future_block"), (2, "tool_use")]
    assert [e.index for e in events if e.type == "content_block_stop"] == [0, 1, 2]
    kinds = {e.delta.type for e in events if e.type == "content_block_delta"}
    assert kinds == {"text_delta", "future_delta", "input_json_delta"}
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == default_text(3)

    # the messages.stream() helper survives it too
    text, final = await _stream_text(sdk_client, "[[fake:unknown_block]]")
    assert text == default_text(3)
    assert [b.type for b in final.content] == ["text", "future_block", "tool_use"]


async def test_cache_usage_reaches_message_usage(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``cache_read``/``cache_creation`` arrive in message_start's usage and the final one."""
    server.config = FakeConfig(interval=0.001, deltas=2, cache_read=1200, cache_creation=34)
    stream = await sdk_client.messages.create(
        model=MODEL, max_tokens=1024, messages=_messages("cached"), stream=True
    )
    async with stream:
        events = [event async for event in stream]
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.cache_read_input_tokens == 1200
    assert start.message.usage.cache_creation_input_tokens == 34
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.cache_read_input_tokens == 1200
    assert delta.usage.cache_creation_input_tokens == 34
    assert delta.usage.input_tokens == start.message.usage.input_tokens

    _, final = await _stream_text(sdk_client, "[[fake:cache_read=7]]")
    assert final.usage.cache_read_input_tokens == 7
    assert final.usage.cache_creation_input_tokens == 34
    assert final.usage.output_tokens == 2

    # unset, and nothing asked to be cached: zeros at the start and in the final usage, which
    # also repeats input_tokens (cumulative, as the API reports them)
    server.config = FakeConfig(interval=0.001, deltas=2)
    stream = await sdk_client.messages.create(
        model=MODEL, max_tokens=1024, messages=_messages("plain"), stream=True
    )
    async with stream:
        events = [event async for event in stream]
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.cache_read_input_tokens == 0
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.cache_read_input_tokens == delta.usage.cache_creation_input_tokens == 0
    assert delta.usage.input_tokens == start.message.usage.input_tokens
    assert delta.usage.output_tokens == 2


async def test_extra_blocks_in_non_streaming_reply_and_midstream_fault(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """The non-streaming reply carries the same blocks and usage; a midstream fault still
    counts text deltas only, after the whole thinking block."""
    server.config = FakeConfig(
        interval=0.001, deltas=3, thinking=2, tool_use=True, unknown_block=True, cache_read=5
    )
    message = await sdk_client.messages.create(
        model=MODEL, max_tokens=100, messages=_messages("whole")
    )
    assert [b.type for b in message.content] == ["thinking", "text", "future_block", "tool_use"]
    assert message.stop_reason == "tool_use" and message.usage.cache_read_input_tokens == 5

    with pytest.raises(anthropic.APIStatusError):
        await _stream_text(sdk_client, "[[fake:error=error_midstream,error_after=1]]")
    record = await server.await_finish(server.requests[-1])
    assert record.outcome == "error_event"
    assert record.thinking_written == "".join(thinking_steps(2))
    assert record.deltas_written == 1 and record.tool_json_written == ""


# ---- thinking as the request asks, redacted thinking, unknown models ----------------------


async def _raw_events(sdk_client: anthropic.AsyncAnthropic, **params: Any) -> list[Any]:
    """Every typed event of one raw ``create(stream=True)`` reply."""
    params.setdefault("messages", _messages("hello there"))
    stream = await sdk_client.messages.create(
        model=params.pop("model", MODEL),
        max_tokens=params.pop("max_tokens", 4096),
        stream=True,
        **params,
    )
    async with stream:
        return [event async for event in stream]


def _block_types(events: list[Any]) -> list[str]:
    return [e.content_block.type for e in events if e.type == "content_block_start"]


def _thinking_text(events: list[Any]) -> str:
    return "".join(
        e.delta.thinking
        for e in events
        if e.type == "content_block_delta" and isinstance(e.delta, ThinkingDelta)
    )


@pytest.mark.parametrize(
    ("thinking", "directive", "expected_steps"),
    [
        (None, "", 0),
        ({"type": "disabled"}, "", 0),
        ({"type": "enabled", "budget_tokens": 2048}, "", REQUESTED_THINKING_STEPS),
        ({"type": "adaptive"}, "", REQUESTED_THINKING_STEPS),
        ({"type": "adaptive"}, "[[fake:thinking=0]]", 0),
        (None, "[[fake:thinking=2]]", 2),
        ({"type": "adaptive"}, "[[fake:thinking=5]]", 5),
    ],
)
async def test_thinking_follows_the_request_unless_forced(
    server: FakeAnthropicServer,
    sdk_client: anthropic.AsyncAnthropic,
    thinking: dict[str, Any] | None,
    directive: str,
    expected_steps: int,
) -> None:
    """Left at ``None``, ``thinking`` streams a thinking block exactly when the request turns
    thinking on (``enabled`` or ``adaptive``); ``thinking=0`` never does, ``thinking=N`` always."""
    server.config = FakeConfig(interval=0.001, deltas=2)
    extra: dict[str, Any] = {"thinking": thinking} if thinking is not None else {}
    events = await _raw_events(sdk_client, messages=_messages(f"think? {directive}"), **extra)

    if expected_steps:
        assert _block_types(events) == ["thinking", "text"]
    else:
        assert _block_types(events) == ["text"]
    assert _thinking_text(events) == "".join(thinking_steps(expected_steps))
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.output_tokens == 2 + expected_steps
    record = await server.await_finish(server.requests[0])
    assert record.body.get("thinking") == thinking  # what the app asked for is on the record
    assert record.thinking_written == "".join(thinking_steps(expected_steps))


async def test_thinking_display_omitted_streams_only_the_signature(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``display: "omitted"``: the thinking block has no thinking_delta, only its signature;
    its thinking tokens are still billed."""
    server.config = FakeConfig(interval=0.001, deltas=3)
    thinking: ThinkingConfigEnabledParam = {
        "type": "enabled",
        "budget_tokens": 1024,
        "display": "omitted",
    }
    events = await _raw_events(sdk_client, thinking=thinking)
    block_deltas = [e.delta for e in events if e.type == "content_block_delta" and e.index == 0]
    assert [type(d) for d in block_deltas] == [SignatureDelta]
    assert _block_types(events) == ["thinking", "text"]
    assert events[-2].usage.output_tokens == 3 + REQUESTED_THINKING_STEPS

    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=4096, messages=_messages("again"), thinking=thinking
    ) as stream:
        final = await stream.get_final_message()
    block, text = final.content
    assert isinstance(block, ThinkingBlock) and block.thinking == ""
    assert block.signature.startswith("sig_")
    assert isinstance(text, TextBlock) and text.text == default_text(3)
    record = await server.await_finish(server.requests[-1])
    assert record.thinking_written == "" and record.deltas_written == 3


async def test_redacted_thinking_block_arrives_whole_in_its_start(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``redacted_thinking``: a block with opaque ``data`` and no deltas, after any thinking and
    before the text, streaming and not."""
    server.config = FakeConfig(interval=0.001, deltas=2, redacted_thinking=True)
    events = await _raw_events(sdk_client, thinking={"type": "adaptive"})
    assert _block_types(events) == ["thinking", "redacted_thinking", "text"]
    start = next(
        e
        for e in events
        if e.type == "content_block_start" and e.content_block.type == "redacted_thinking"
    )
    assert start.index == 1 and start.content_block.data == REDACTED_THINKING_DATA
    assert not [e for e in events if e.type == "content_block_delta" and e.index == 1]

    events = await _raw_events(sdk_client)  # alone, it is block 0 (the SDK hides pings)
    assert [(e.type, getattr(e, "index", None)) for e in events[:4]] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
    ]
    message = await sdk_client.messages.create(
        model=MODEL, max_tokens=100, messages=_messages("whole")
    )
    redacted, text = message.content
    assert isinstance(redacted, RedactedThinkingBlock)
    assert redacted.data == REDACTED_THINKING_DATA and isinstance(text, TextBlock)


async def test_unknown_models_get_the_apis_404(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """A ``claude-unknown*`` model, or one in ``reject_models``, gets the real 404 body; the
    SDK raises ``NotFoundError``. Other models are served."""
    server.config = FakeConfig(interval=0.001, deltas=2, reject_models=("claude-gone-1",))
    for model in ("claude-unknown-9", "claude-gone-1"):
        with pytest.raises(anthropic.NotFoundError) as excinfo:
            await _raw_events(sdk_client, model=model)
        record = await server.await_finish(server.requests[-1])
        assert excinfo.value.body == {
            "type": "error",
            "error": {"type": "not_found_error", "message": f"model: {model}"},
            "request_id": record.request_id,
        }
        assert (record.status, record.outcome) == (404, "status_error")
    with pytest.raises(anthropic.NotFoundError):
        await sdk_client.messages.count_tokens(model="claude-unknown", messages=_messages("x"))

    directive = _messages("[[fake:reject_models=claude-a|claude-b]]")
    with pytest.raises(anthropic.NotFoundError):
        await _raw_events(sdk_client, model="claude-b", messages=directive)
    assert _block_types(await _raw_events(sdk_client, model="claude-c", messages=directive)) == [
        "text"
    ]
    assert server.update_config(reject_models=["x", "y"]).reject_models == ("x", "y")


# ---- the simulated prompt cache -----------------------------------------------------------


def _long(label: str) -> str:
    """A message of ~90 tokens by the fake's count."""
    return f"{label}: " + "lorem ipsum dolor " * 20


def _input_usage(events: list[Any]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(input, creation, read) tokens of message_start and of the final message_delta."""
    start = next(e for e in events if e.type == "message_start").message.usage
    end = next(e for e in events if e.type == "message_delta").usage
    return (
        (start.input_tokens, start.cache_creation_input_tokens, start.cache_read_input_tokens),
        (end.input_tokens, end.cache_creation_input_tokens, end.cache_read_input_tokens),
    )


async def test_prompt_cache_over_a_conversation_with_top_level_cache_control(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """Turn 1 creates its whole prompt; each later turn reads the previous turn's prompt and
    creates the new part; nothing comes after the breakpoint, so input_tokens is 0. The final
    message_delta repeats the numbers."""
    server.config = FakeConfig(interval=0.001, deltas=2, cache_min_tokens=50)
    history: list[MessageParam] = []
    previous = 0  # tokens of the previous turn's whole prompt
    for turn in range(1, 5):
        history.append({"role": "user", "content": _long(f"question {turn}")})
        events = await _raw_events(
            sdk_client, system="Be terse.", messages=history, cache_control={"type": "ephemeral"}
        )
        record = await server.await_finish(server.requests[-1])
        whole = count_input_tokens(record.body)
        expected = (0, whole - previous, previous)
        assert _input_usage(events) == (expected, expected), f"turn {turn}"
        assert record.body["cache_control"] == {"type": "ephemeral"}
        assert (
            record.input_tokens,
            record.cache_creation_input_tokens,
            record.cache_read_input_tokens,
        ) == expected
        previous = whole
        history.append({"role": "assistant", "content": record.text_written})
    assert len(server.prompt_cache) == 4


async def test_prompt_cache_reads_and_writes_nothing_without_cache_control(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """Without cache_control nothing is read or written (zeros, as the API reports); the same
    prompt asked to be cached afterwards is created, not read, then read."""
    server.config = FakeConfig(interval=0.001, deltas=2, cache_min_tokens=50)
    messages: list[MessageParam] = [{"role": "user", "content": _long("same question")}]
    whole = count_input_tokens({"messages": messages})
    for _ in range(2):
        assert _input_usage(await _raw_events(sdk_client, messages=messages))[0] == (whole, 0, 0)
    assert len(server.prompt_cache) == 0

    cached = {"cache_control": {"type": "ephemeral"}}
    assert _input_usage(await _raw_events(sdk_client, messages=messages, **cached))[0] == (
        0,
        whole,
        0,
    )
    assert _input_usage(await _raw_events(sdk_client, messages=messages, **cached))[0] == (
        0,
        0,
        whole,
    )
    # another model has its own cache
    usage = _input_usage(
        await _raw_events(sdk_client, model="claude-other", messages=messages, **cached)
    )
    assert usage[0] == (0, whole, 0)
    # the non-streaming reply reports the same usage
    message = await sdk_client.messages.create(
        model=MODEL, max_tokens=100, messages=messages, cache_control={"type": "ephemeral"}
    )
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (0, whole)


async def test_prompt_cache_skips_short_prefixes_expires_and_resets(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """A prefix under ``cache_min_tokens`` is not cached; an entry lives ``cache_ttl`` seconds;
    ``reset`` forgets them all."""
    server.config = FakeConfig(interval=0.001, deltas=2)  # cache_min_tokens: 1024
    cached = {"cache_control": {"type": "ephemeral"}}
    short: list[MessageParam] = [{"role": "user", "content": _long("short")}]
    whole = count_input_tokens({"messages": short})
    assert whole < 1024
    for _ in range(2):
        usage = _input_usage(await _raw_events(sdk_client, messages=short, **cached))
        assert usage[0] == (whole, 0, 0)
    assert len(server.prompt_cache) == 0

    server.config = FakeConfig(interval=0.001, deltas=2, cache_min_tokens=50, cache_ttl=0.5)
    first = _input_usage(await _raw_events(sdk_client, messages=short, **cached))[0]
    assert first == (0, whole, 0)
    assert _input_usage(await _raw_events(sdk_client, messages=short, **cached))[0] == (0, 0, whole)
    await asyncio.sleep(0.6)
    assert _input_usage(await _raw_events(sdk_client, messages=short, **cached))[0] == first

    server.reset()
    assert len(server.prompt_cache) == 0
    assert _input_usage(await _raw_events(sdk_client, messages=short, **cached))[0] == first


async def test_prompt_cache_block_breakpoints_and_lookback(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """A breakpoint on a system block caches the system prompt alone: another conversation
    with it reads it. A hit must lie within 20 blocks before a breakpoint."""
    server.config = FakeConfig(interval=0.001, deltas=2, cache_min_tokens=50)
    system_text = _long("system")
    system = [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral"}}]
    system_tokens = len(system_text) // 4
    for question in ("first", "second"):
        messages: list[MessageParam] = [{"role": "user", "content": _long(question)}]
        events = await _raw_events(sdk_client, system=system, messages=messages)
        whole = count_input_tokens(server.requests[-1].body)
        read = 0 if question == "first" else system_tokens
        creation = system_tokens - read
        assert _input_usage(events)[0] == (whole - system_tokens, creation, read)

    def conversation(extra_blocks: int) -> list[dict[str, Any]]:
        head = {"type": "text", "text": _long("head"), "cache_control": {"type": "ephemeral"}}
        blocks = [head] + [{"type": "text", "text": f"part {i}"} for i in range(extra_blocks)]
        return [{"role": "user", "content": blocks}]

    await _raw_events(sdk_client, messages=conversation(0))  # writes the head's prefix
    head_tokens = count_input_tokens({"messages": conversation(0)})
    cached = {"cache_control": {"type": "ephemeral"}}
    near, far = conversation(19), conversation(20)
    for unmarked in (near, far):  # the head block no longer carries the marker
        unmarked[0]["content"][0].pop("cache_control")
    far_usage = _input_usage(await _raw_events(sdk_client, messages=far, **cached))[0]
    assert far_usage[2] == 0  # 21 blocks back: out of reach
    near_usage = _input_usage(await _raw_events(sdk_client, messages=near, **cached))[0]
    assert near_usage[2] == head_tokens  # 20 blocks back (the breakpoint's own included)


# ---- replaying recordings -----------------------------------------------------------------

THINKING_RECORDING_ANSWER = "27 × 453 = **12,231** (27 × 400 = 10,800, plus 27 × 53 = 1,431)."  # noqa: RUF001


async def test_replay_plays_a_recording_paced_and_recorded(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """``replay=<name>`` plays ``tests/recordings/<name>.sse`` verbatim, one content delta per
    ``interval``; the record counts its text, thinking and tool JSON deltas as for a generated
    reply, and takes its message id and input usage."""
    server.config = FakeConfig(interval=0.02, replay="thinking")
    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=_messages("play it")
    ) as stream:
        final = await stream.get_final_message()
    record = await server.await_finish(server.requests[0])
    assert record.outcome == "completed" and record.completed
    assert record.message_id == final.id == "msg_01ThinkRec7Hq2nVb4XcP9aLm"
    assert record.deltas_planned == record.deltas_written == len(record.delta_times) == 3
    assert record.text_written == THINKING_RECORDING_ANSWER
    thinking = final.content[0]
    assert isinstance(thinking, ThinkingBlock) and record.thinking_written == thinking.thinking
    assert (record.input_tokens, record.cache_read_input_tokens) == (14, 2048)
    gaps = [b - a for a, b in zip(record.delta_times, record.delta_times[1:], strict=False)]
    assert min(gaps) >= 0.015  # paced: one interval between two content deltas

    _, final = await _stream_text(sdk_client, "[[fake:replay=tool_use,interval=0]]")
    record = await server.await_finish(server.requests[-1])
    assert json.loads(record.tool_json_written) == {"timezone": "Asia/Tokyo"}
    assert final.stop_reason == "tool_use"


async def test_replay_hangup_is_recorded_like_a_generated_stream(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """Leaving a replayed stream is a client disconnect: recorded at once, nothing more sent."""
    server.config = FakeConfig(interval=0.05, replay="max_tokens")
    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=_messages("go")
    ) as stream:
        async for event in stream:
            if event.type == "text":
                break
    left_at = time.monotonic()
    record = server.requests[0]
    disconnected_at = await server.await_disconnect(record, timeout=1)
    assert disconnected_at - left_at < 0.1
    await server.await_finish(record)
    assert record.outcome == "client_disconnected" and not record.completed
    # Only the delta the client read was written: nothing after it left. (Not by the delta's
    # time: it is stamped once the write has drained, which a loaded machine may finish after
    # the client already read it and left.)
    assert record.deltas_written == 1


@pytest.mark.parametrize(("error_after", "text_deltas"), [(1, 1), (10, 3)])
async def test_replay_midstream_fault(
    server: FakeAnthropicServer,
    sdk_client: anthropic.AsyncAnthropic,
    error_after: int,
    text_deltas: int,
) -> None:
    """A midstream fault replaces the first content delta after ``error_after`` text deltas,
    or, when the recording has fewer, its message_delta."""
    server.config = FakeConfig(interval=0.001)
    directive = f"[[fake:replay=thinking,error=error_midstream,error_after={error_after}]]"
    with pytest.raises(anthropic.APIStatusError) as excinfo:
        await _stream_text(sdk_client, directive)
    assert excinfo.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    record = await server.await_finish(server.requests[0])
    assert record.outcome == "error_event" and not record.completed
    assert record.deltas_written == text_deltas


async def test_replay_is_refused_when_it_cannot_be_played(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """A non-streaming request, a missing recording and a name that is no file name get a
    400; a config with such a name cannot be built."""
    with pytest.raises(anthropic.BadRequestError, match="streaming requests only"):
        await sdk_client.messages.create(
            model=MODEL, max_tokens=100, messages=_messages("[[fake:replay=thinking]]")
        )
    with pytest.raises(anthropic.BadRequestError, match="no recording 'no_such_thing'"):
        await _stream_text(sdk_client, "[[fake:replay=no_such_thing]]")
    with pytest.raises(anthropic.BadRequestError, match="not a recording name"):
        await _stream_text(sdk_client, "[[fake:replay=../secrets]]")
    with pytest.raises(ValueError, match="not a recording name"):
        FakeConfig(replay="Thinking.sse")
    with FakeAnthropicServer(recordings=REPO_ROOT / "docs") as elsewhere:
        assert elsewhere.recordings == REPO_ROOT / "docs"
        sdk = anthropic.AsyncAnthropic(
            base_url=elsewhere.base_url, api_key="test-key", max_retries=0
        )
        try:
            with pytest.raises(anthropic.BadRequestError, match="no recording 'thinking'"):
                await _stream_text(sdk, "[[fake:replay=thinking]]")
        finally:
            await sdk.close()
