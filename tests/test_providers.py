"""Providers through their real transports: the SDK against the fake server, and the demo."""

from __future__ import annotations

import asyncio
import time

from chat.providers import (
    ChatTurn,
    StreamEnd,
    StreamStart,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ThinkingSigned,
)
from chat.providers.anthropic import AnthropicProvider
from chat.providers.demo import DEMO_ANSWER, DEMO_THINKING, DemoProvider
from chat.testing.fake_anthropic import (
    FakeAnthropicServer,
    FakeConfig,
    default_text,
    thinking_steps,
)
from tests.helpers import SLOW

HISTORY = [ChatTurn("user", "Hello")]


async def test_anthropic_provider_streams_start_text_and_real_usage(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.reset(FakeConfig(interval=0.001, deltas=8))
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)
    events = [
        e
        async for e in provider.stream(
            model="m", system="Be brief.", history=HISTORY, max_tokens=50
        )
    ]
    assert isinstance(events[0], StreamStart) and events[0].input_tokens
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == fake_server.requests[-1].text_written
    assert events[-1] == StreamEnd(stop_reason="end_turn", output_tokens=8)
    body = fake_server.requests[-1].body
    assert body["system"] == "Be brief." and body["stream"] is True and body["max_tokens"] == 50


async def test_cancelling_the_anthropic_stream_closes_the_connection_at_once(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.reset(SLOW)
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)

    async def consume() -> None:
        async for _ in provider.stream(model="m", system="", history=HISTORY, max_tokens=50):
            pass

    task = asyncio.create_task(consume())
    record = await fake_server.await_request()
    await fake_server.await_delta(record, 3)
    cancelled_at = time.monotonic()
    task.cancel()
    closed_at = await fake_server.await_disconnect(record)
    assert closed_at - cancelled_at < 0.1
    assert record.deltas_after(cancelled_at) <= 1


async def test_anthropic_provider_streams_only_the_answer_text_past_other_blocks(
    fake_server: FakeAnthropicServer,
) -> None:
    """Thinking, an unknown block and a tool_use block around the text: the provider neither
    crashes nor leaks thinking or tool JSON into the text, and reports the tool_use stop."""
    fake_server.reset(
        FakeConfig(interval=0.001, deltas=6, thinking=4, unknown_block=True, tool_use=True)
    )
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)
    events = [
        e async for e in provider.stream(model="m", system="", history=HISTORY, max_tokens=50)
    ]
    record = await fake_server.await_finish(fake_server.requests[-1])
    assert record.outcome == "completed"
    assert record.thinking_written and record.tool_json_written
    assert isinstance(events[0], StreamStart)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == record.text_written == default_text(6)
    assert "Thinking" not in text and "Paris" not in text and "{" not in text
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "tool_use"


async def test_anthropic_provider_streams_thinking_then_its_signature_then_the_answer(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.reset(FakeConfig(interval=0.001, deltas=3, thinking=4))
    provider = AnthropicProvider(api_key="k", base_url=fake_server.base_url)
    events = [
        e
        async for e in provider.stream(
            model="m",
            system="",
            history=HISTORY,
            max_tokens=5000,
            thinking=Thinking(budget_tokens=2048),
            cache=True,
        )
    ]
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "StreamStart",
        *["ThinkingDelta"] * 4,
        "ThinkingSigned",
        *["TextDelta"] * 3,
        "StreamEnd",
    ]
    thought = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    assert thought == "".join(thinking_steps(4))
    (signed,) = [e for e in events if isinstance(e, ThinkingSigned)]
    assert signed.signature
    start = events[0]
    assert isinstance(start, StreamStart) and start.cache_read_input_tokens == 0
    body = fake_server.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048, "display": "summarized"}
    assert body["cache_control"] == {"type": "ephemeral"}


async def test_demo_provider_thinks_first_when_asked() -> None:
    events = [
        e
        async for e in DemoProvider(token_delay=0).stream(
            model="demo",
            system="",
            history=HISTORY,
            max_tokens=10_000,
            thinking=Thinking(budget_tokens=2048),
        )
    ]
    thought = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    assert thought == DEMO_THINKING
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(not isinstance(e, ThinkingDelta) for e in events[first_text:])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == DEMO_ANSWER


async def test_demo_provider_streams_the_canned_answer_with_usage() -> None:
    events = [
        e
        async for e in DemoProvider(token_delay=0).stream(
            model="demo", system="", history=HISTORY, max_tokens=10_000
        )
    ]
    assert isinstance(events[0], StreamStart)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == DEMO_ANSWER
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "end_turn"
    assert end.output_tokens and end.output_tokens > 200  # long enough to click Stop


async def test_demo_provider_is_paced_like_a_real_model() -> None:
    provider = DemoProvider(token_delay=0.025)
    started = time.monotonic()
    count = 0
    async for event in provider.stream(model="demo", system="", history=HISTORY, max_tokens=20):
        count += isinstance(event, TextDelta)
    elapsed = time.monotonic() - started
    assert count == 20
    assert 20 / elapsed < 60  # 30 to 60 tokens a second, never a dump
