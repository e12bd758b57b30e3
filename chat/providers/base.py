"""The one small interface every model provider implements.

A provider turns a conversation history into an async stream of events. Cancelling the task
that iterates the stream (or closing the generator) must close the upstream connection at once:
that is what stops generation, and billing, at the provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The provider accepted the request; input tokens as it counted them, when it says."""

    input_tokens: int | None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The model finished on its own: the real stop reason and output token count."""

    stop_reason: str
    output_tokens: int | None


StreamEvent = StreamStart | TextDelta | StreamEnd


class ProviderError(Exception):
    """An upstream failure, with a message fit to show the user (never a secret)."""


class Provider(Protocol):
    name: str

    def stream(
        self, *, model: str, system: str, history: list[ChatTurn], max_tokens: int
    ) -> AsyncIterator[StreamEvent]: ...

    async def complete(self, *, model: str, system: str, prompt: str, max_tokens: int) -> str:
        """A short answer in one piece (a title); "" when the provider has none to give."""
        ...
