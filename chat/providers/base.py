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
class FilePart:
    """A file in a turn, before its text: an image, a PDF (`document`) or a text file.

    `content` is filled once the file is read for a request (chat/replies/turns.py reads only
    the files of turns that fit, in a worker thread): an image's or a PDF's bytes in base64, a
    text file's text. `tokens` is an estimate of its cost, `size` its bytes."""

    kind: Literal["image", "document", "text"]
    media_type: str
    name: str
    tokens: int
    key: str = ""
    """Where the app keeps it (an attachment's id); the provider ignores it."""
    size: int = 0
    content: str = ""


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Literal["user", "assistant"]
    content: str
    files: tuple[FilePart, ...] = ()
    """Files the turn carries, in order, before its text (a user's attachments)."""


@dataclass(frozen=True, slots=True)
class Thinking:
    """Extended thinking asked of the model: a token budget, or (on a model that thinks
    adaptively) an effort. `None` where a request takes a `Thinking | None`: no thinking."""

    budget_tokens: int
    adaptive: bool = False
    effort: str = "medium"


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The provider accepted the request; input tokens as it counted them, when it says.
    `input_tokens` are the ones not read from or written to the prompt cache."""

    input_tokens: int | None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Text of the model's thinking, which comes before its answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkingSigned:
    """A thinking block ended, with the provider's signature of it (opaque)."""

    signature: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The model finished on its own: the real stop reason and output token count."""

    stop_reason: str
    output_tokens: int | None


StreamEvent = StreamStart | TextDelta | ThinkingDelta | ThinkingSigned | StreamEnd


class ProviderError(Exception):
    """An upstream failure, with a message fit to show the user (never a secret)."""


class Provider(Protocol):
    name: str

    def stream(
        self,
        *,
        model: str,
        system: str,
        history: list[ChatTurn],
        max_tokens: int,
        thinking: Thinking | None = None,
        cache: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        """Stream a reply. `thinking`: ask for extended thinking (streamed as ThinkingDelta
        before the answer); `cache`: ask the provider to cache the request's prefix."""
        ...

    async def complete(self, *, model: str, system: str, prompt: str, max_tokens: int) -> str:
        """A short answer in one piece (a title); "" when the provider has none to give."""
        ...
