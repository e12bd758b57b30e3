"""The recorded Messages API streams (tests/recordings/*.sse) through the real SDK and the app.

Why: the fake's generated stream only has the shapes we thought of. These recordings are the
event sequences the API sends for thinking, refusals, tool use, server tools, compaction and the
other stop reasons, written after the documented wire format; the fake plays one verbatim with
``replay=<name>``. Each must parse into the SDK's typed events, accumulate into the expected
final message with the SDK's ``messages.stream()`` helper, and give the app's provider exactly
the answer text and the stop reason, whatever else the stream carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RedactedThinkingBlock,
    ServerToolUseBlock,
    ThinkingBlock,
    ToolUseBlock,
    WebSearchToolResultBlock,
)
from anthropic.types.beta import BetaCompactionBlock

from chat.providers import ChatTurn, StreamEnd, TextDelta
from chat.providers.anthropic import AnthropicProvider
from chat.testing.fake_anthropic import DEFAULT_RECORDINGS, FakeAnthropicServer, FakeConfig

MODEL = "claude-fake-model"
RAW_EVENT_TYPES = (
    RawMessageStartEvent,
    RawContentBlockStartEvent,
    RawContentBlockDeltaEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStopEvent,
)


@dataclass(frozen=True)
class Expected:
    """What a recording holds, written down by hand from the file."""

    blocks: list[str]
    """Content block types of the final message."""
    stop_reason: str
    answer: str
    """The text of its text blocks, concatenated (no thinking, no tool JSON)."""
    input_tokens: int
    output_tokens: int
    cache_creation: int = 0
    cache_read: int = 0


EXPECTED: dict[str, Expected] = {
    "thinking": Expected(
        ["thinking", "text"],
        "end_turn",
        "27 × 453 = **12,231** (27 × 400 = 10,800, plus 27 × 53 = 1,431).",  # noqa: RUF001
        14,
        138,
        cache_creation=312,
        cache_read=2048,
    ),
    "refusal": Expected(
        ["text"],
        "refusal",
        "I can explain how pin-tumbler locks work in general, but I can't",
        31,
        19,
    ),
    "refusal_empty": Expected(["text"], "refusal", "", 27, 3),
    "tool_use": Expected(
        ["text", "tool_use"], "tool_use", "I'll look up the current time in Tokyo.", 402, 61
    ),
    "server_tool": Expected(
        ["text", "server_tool_use", "web_search_tool_result", "text"],
        "end_turn",
        "I'll search for the Python 3.13 release date."
        "Python 3.13.0 was released on October 7, 2024.",
        2679,
        96,
    ),
    "max_tokens": Expected(
        ["text"],
        "max_tokens",
        "Once upon a time, in a village by the sea, there lived a lighthouse keeper who",
        18,
        20,
    ),
    "pause_turn": Expected(
        ["text", "server_tool_use", "web_search_tool_result"],
        "pause_turn",
        "This needs a few searches. Starting with the release notes.",
        3120,
        74,
    ),
    "context_window": Expected(
        ["text"],
        "model_context_window_exceeded",
        "Summary of the logs so far: the service restarted three times, each after",
        199260,
        740,
    ),
    "compaction": Expected(
        ["compaction", "text"],
        "end_turn",
        "For Kyoto, plan three days: temples in the east on day one.",
        4205,
        58,
    ),
    "redacted_thinking": Expected(
        ["thinking", "redacted_thinking", "text"],
        "end_turn",
        "Based on my analysis, the answer is 42.",
        96,
        211,
    ),
}
NAMES = sorted(EXPECTED)


def _replaying(name: str) -> list[anthropic.types.MessageParam]:
    """A conversation whose directive makes the fake play recording ``name``."""
    return [{"role": "user", "content": f"Replay, please. [[fake:replay={name}]]"}]


def _event_names(name: str) -> list[str]:
    """The ``event:`` names in the recording file, pings left out (the SDK drops them)."""
    text = (DEFAULT_RECORDINGS / f"{name}.sse").read_text(encoding="utf-8")
    return [e for e in re.findall(r"^event: (\w+)$", text, re.MULTILINE) if e != "ping"]


def test_every_recording_has_expectations() -> None:
    assert sorted(p.stem for p in DEFAULT_RECORDINGS.glob("*.sse")) == NAMES
    for path in DEFAULT_RECORDINGS.glob("*.sse"):
        assert path.read_text(encoding="utf-8").startswith(": "), f"{path.name}: no header"


@pytest.mark.parametrize("name", NAMES)
async def test_recording_parses_into_typed_sdk_events(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic, name: str
) -> None:
    """The raw ``create(stream=True)`` iterator yields one typed event per recorded event."""
    server.config = FakeConfig(interval=0.001)
    stream = await sdk_client.messages.create(
        model=MODEL, max_tokens=1024, messages=_replaying(name), stream=True
    )
    async with stream:
        events = [event async for event in stream]
    assert [e.type for e in events] == _event_names(name)
    assert all(isinstance(e, RAW_EVENT_TYPES) for e in events)
    record = await server.await_finish(server.requests[0])
    assert record.completed and record.outcome == "completed"
    assert record.text_written == EXPECTED[name].answer


@pytest.mark.parametrize("name", NAMES)
async def test_stream_helper_accumulates_the_final_message(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic, name: str
) -> None:
    """``messages.stream()`` builds the final message: its blocks, stop reason and usage."""
    server.config = FakeConfig(interval=0.001)
    expected = EXPECTED[name]
    async with sdk_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=_replaying(name)
    ) as stream:
        final = await stream.get_final_message()
    assert [block.type for block in final.content] == expected.blocks
    assert final.stop_reason == expected.stop_reason
    # by type, not class: the non-beta SDK builds a block it does not know (compaction) as a
    # TextBlock with no text
    assert "".join(b.text for b in final.content if b.type == "text") == expected.answer
    usage = final.usage
    assert (usage.input_tokens, usage.output_tokens) == (
        expected.input_tokens,
        expected.output_tokens,
    )
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (
        expected.cache_creation,
        expected.cache_read,
    )
    _check_blocks(final)


def _check_blocks(final: Any) -> None:
    """What the typed blocks of a final message must hold, whatever the recording."""
    for block in final.content:
        if isinstance(block, ThinkingBlock):
            assert block.thinking and block.signature
        elif isinstance(block, RedactedThinkingBlock):
            assert block.data
        elif isinstance(block, ToolUseBlock):
            assert block.input == {"timezone": "Asia/Tokyo"}
        elif isinstance(block, ServerToolUseBlock):
            assert block.name == "web_search" and "python 3.13" in str(block.input["query"])
        elif isinstance(block, WebSearchToolResultBlock):
            assert isinstance(block.content, list) and block.content[0].url.startswith("https://")
    if final.stop_reason == "refusal":
        assert final.stop_details is not None and final.stop_details.type == "refusal"


async def test_compaction_block_through_the_beta_helper(
    server: FakeAnthropicServer, sdk_client: anthropic.AsyncAnthropic
) -> None:
    """The beta helper, which knows compaction, accumulates the compaction block's summary
    and opaque content from its one compaction_delta."""
    server.config = FakeConfig(interval=0.001)
    async with sdk_client.beta.messages.stream(
        model=MODEL,
        max_tokens=1024,
        messages=[{"role": "user", "content": "[[fake:replay=compaction]]"}],
        betas=["compact-2026-01-12"],
    ) as stream:
        final = await stream.get_final_message()
    compaction = final.content[0]
    assert isinstance(compaction, BetaCompactionBlock)
    assert compaction.content is not None and compaction.content.startswith("The user is planning")
    assert compaction.encrypted_content
    assert final.usage.iterations is not None
    assert [i.type for i in final.usage.iterations] == ["compaction", "message"]


@pytest.mark.parametrize("name", NAMES)
async def test_provider_streams_only_the_answer_and_the_stop_reason(
    server: FakeAnthropicServer, name: str
) -> None:
    """The app's provider turns each recording into exactly its answer text and its stop
    reason. (Only TextDelta and StreamEnd are looked at: the provider may yield more kinds.)"""
    server.config = FakeConfig(interval=0.001, replay=name)
    provider = AnthropicProvider(api_key="k", base_url=server.base_url)
    history = [ChatTurn("user", "Hello")]
    events = [
        e async for e in provider.stream(model=MODEL, system="", history=history, max_tokens=1024)
    ]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == EXPECTED[name].answer
    ends = [e for e in events if isinstance(e, StreamEnd)]
    assert len(ends) == 1 and ends[0] is events[-1]
    assert ends[0].stop_reason == EXPECTED[name].stop_reason
