"""Claude through the official SDK's streaming Messages API.

`async with` around the SDK's event stream is the whole stop mechanism: when the task
iterating this generator is cancelled, the CancelledError leaves the `async with`, which closes
the partly read HTTP response and so its TCP connection; Anthropic then stops generating.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import cast

import anthropic
import httpx2
from django.conf import settings

from .base import ChatTurn, ProviderError, StreamEnd, StreamEvent, StreamStart, TextDelta

# One client (one connection pool) per event loop and credentials: pooled connections belong
# to the loop that opened them. This caches clients, never streams.
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None, int], anthropic.AsyncAnthropic]
] = weakref.WeakKeyDictionary()


def _client(api_key: str, base_url: str | None) -> anthropic.AsyncAnthropic:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (api_key, base_url, settings.CHAT_MAX_RETRIES)
    if key not in per_loop:
        per_loop[key] = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=settings.CHAT_MAX_RETRIES
        )
    return per_loop[key]


def describe_error(exc: Exception) -> str:
    """A short, secret-free explanation of an SDK error, fit for the page."""
    # Once a stream has started, transport failures reach us unwrapped, as httpx2 errors.
    if isinstance(exc, httpx2.TimeoutException):
        return "Anthropic stopped sending (the stream stalled)."
    if isinstance(exc, httpx2.TransportError):
        return "The connection to Anthropic was lost mid-reply."
    if isinstance(exc, anthropic.AuthenticationError):
        return "The Anthropic API key was rejected."
    if isinstance(exc, anthropic.RateLimitError):
        return "Anthropic's rate limit was reached. Wait a moment and retry."
    if isinstance(exc, anthropic.APITimeoutError):
        return "Anthropic stopped sending (the stream stalled)."
    if isinstance(exc, anthropic.APIConnectionError):
        return "The connection to Anthropic failed."
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        kind = error.get("type") if isinstance(error, dict) else None
        if kind == "overloaded_error" or exc.status_code == 529:
            return "Anthropic is overloaded right now. Retry in a moment."
        return f"Anthropic returned an error ({kind or exc.status_code})."
    return "The model provider failed."


class AnthropicProvider:
    name = "Anthropic"

    def __init__(self, *, api_key: str, base_url: str | None) -> None:
        self._api_key = api_key
        self._base_url = base_url

    def _client(self) -> anthropic.AsyncAnthropic:
        if not self._api_key:
            raise ProviderError("No Anthropic API key is set on the server (ANTHROPIC_API_KEY).")
        return _client(self._api_key, self._base_url)

    async def stream(
        self, *, model: str, system: str, history: list[ChatTurn], max_tokens: int
    ) -> AsyncIterator[StreamEvent]:
        client = self._client()
        messages = cast(
            "list[anthropic.types.MessageParam]",
            [{"role": turn.role, "content": turn.content} for turn in history],
        )
        ended = False
        stop_reason, output_tokens = "end_turn", None
        try:
            # The raw event stream (`create(stream=True)`), not the `messages.stream()` helper:
            # the helper also builds a snapshot of the whole message on every event, which was
            # the largest share of the server's CPU per token (bench/streams.py, profiled).
            stream = await client.messages.create(
                model=model,
                max_tokens=max_tokens,
                messages=messages,
                system=system or anthropic.omit,
                stream=True,
                # The read timeout is the stall detector: the longest silence accepted.
                timeout=settings.CHAT_STALL_TIMEOUT,
            )
            async with stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield TextDelta(event.delta.text)
                    elif event.type == "message_start":
                        yield StreamStart(input_tokens=event.message.usage.input_tokens)
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output_tokens = event.usage.output_tokens
                    elif event.type == "message_stop":
                        ended = True
        except (anthropic.APIError, httpx2.TransportError) as exc:
            raise ProviderError(describe_error(exc)) from exc
        if not ended:
            raise ProviderError("The model's stream ended unexpectedly.")
        yield StreamEnd(stop_reason=stop_reason, output_tokens=output_tokens)

    async def complete(self, *, model: str, system: str, prompt: str, max_tokens: int) -> str:
        client = self._client()
        try:
            message = await client.messages.create(
                model=model,
                max_tokens=max_tokens,
                system=system,
                messages=[{"role": "user", "content": prompt}],
                timeout=settings.CHAT_TITLE_TIMEOUT,
            )
        except (anthropic.APIError, httpx2.TransportError) as exc:
            raise ProviderError(describe_error(exc)) from exc
        return "".join(block.text for block in message.content if block.type == "text")
