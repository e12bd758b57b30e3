"""Claude through the official SDK's streaming Messages API.

`async with` around the SDK's event stream is the whole stop mechanism: when the task
iterating this generator is cancelled, the CancelledError leaves the `async with`, which closes
the partly read HTTP response and so its TCP connection; Anthropic then stops generating.

The SDK talks HTTP through aiohttp (`anthropic[aiohttp]`, `DefaultAioHttpClient`) rather than
its default httpx2 transport: aiohttp parses HTTP/1.1 in C and leaves the socket registered
with the event loop, where httpx2 (httpcore2, h11, anyio) parses each chunk in Python and
re-registers the socket with epoll on every read. 100 concurrent streams in one process against
the fake upstream (50 deltas/s each), 8 interleaved rounds: CPU per delta 124 -> 62 us, relay
p99 16.5 -> 5.6 ms, a single stop amid them p99 28.5 -> 4.8 ms. Mid-stream transport failures
still surface as httpx2 errors (the SDK's transport maps aiohttp's: a cut or reset connection
is a `httpx2.ReadError` / `ConnectError`, a stall a `httpx2.ReadTimeout`), so `describe_error`
reads them as before.

aiohttp closes a response left before its end (a stop) rather than pooling it, but it closes
the socket only at the event loop's next turn, behind whatever else this turn runs, such as the
stopped reply's own save and final frame (over TLS it sends a close_notify at once, but its FIN
waits for the server's answer, up to 30 s). `_HangUpAtOnce` shuts the socket down first, as
httpx2 did: the FIN leaves while the stop is being handled.

The SDK makes the request (retries, HTTP errors, the transport); the stream's events are then
read as server-sent JSON (`_server_sent_events`) rather than as the SDK's typed event objects:
100 streams through this provider in one process, 3 interleaved rounds, 61-77 -> 39-48 us of CPU
per delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import socket
import weakref
from collections.abc import AsyncIterator
from typing import Any, cast

import anthropic
import httpx2
from django.conf import settings

from .base import (
    ChatTurn,
    FilePart,
    ProviderError,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ThinkingSigned,
)

#: The longest piece of an API error message the page shows.
ERROR_MESSAGE_CHARS = 300

# One client (one connection pool) per event loop and credentials: pooled connections belong
# to the loop that opened them. This caches clients, never streams.
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None, int], anthropic.AsyncAnthropic]
] = weakref.WeakKeyDictionary()


class _HangUpStream(httpx2.AsyncByteStream):
    """A response body that, closed before its end, shuts its socket down at once."""

    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        # (The SDK's vendored aiohttp stream keeps its aiohttp response here; a test checks.)
        response = getattr(self._inner, "_aiohttp_response", None)
        if response is not None and not response.content.is_eof():
            connection = response.connection
            transport = connection.transport if connection is not None else None
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):  # (already gone: nothing to hang up)
                    sock.shutdown(socket.SHUT_RDWR)
        await self._inner.aclose()


class _HangUpAtOnce(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        response.stream = _HangUpStream(cast("httpx2.AsyncByteStream", response.stream))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _AioHttpClient(anthropic.DefaultAioHttpClient):
    """The SDK's aiohttp client (its defaults: timeouts, connection limits), every transport of
    it (direct, or through a proxy from the environment) wrapped in `_HangUpAtOnce`."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return _HangUpAtOnce(super()._init_transport(*args, **kwargs))

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return _HangUpAtOnce(super()._init_proxy_transport(*args, **kwargs))


def _client(api_key: str, base_url: str | None) -> anthropic.AsyncAnthropic:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (api_key, base_url, settings.CHAT_MAX_RETRIES)
    if key not in per_loop:
        per_loop[key] = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=settings.CHAT_MAX_RETRIES,
            http_client=_AioHttpClient(),  # aiohttp: see above
        )
    return per_loop[key]


def describe_error(exc: Exception, *, model: str = "") -> str:
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
        return describe_error_body(exc.body, status=exc.status_code, model=model)
    return "The model provider failed."


def describe_error_body(body: object, *, status: int, model: str = "") -> str:
    """The page's words for an error Anthropic sent: an HTTP error's JSON body, or the data of
    an `error` event in the middle of a stream (then `status` is the stream's 200)."""
    body = body if isinstance(body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    kind = error.get("type") if isinstance(error, dict) else None
    said = error.get("message") if isinstance(error, dict) else None
    if kind == "overloaded_error" or status == 529:
        return "Anthropic is overloaded right now. Retry in a moment."
    if kind == "not_found_error" or status == 404:
        return (
            f"Anthropic does not offer the model {model or '(unnamed)'}: choose another "
            "in this conversation's settings."
        )
    if kind == "invalid_request_error" and isinstance(said, str) and said:
        # Anthropic's own words say what was wrong with the request (never a secret).
        return f"Anthropic rejected the request: {said[:ERROR_MESSAGE_CHARS]}"
    return f"Anthropic returned an error ({kind or status})."


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
        self,
        *,
        model: str,
        system: str,
        history: list[ChatTurn],
        max_tokens: int,
        thinking: Thinking | None = None,
        cache: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        client = self._client()
        messages = cast(
            "list[anthropic.types.MessageParam]", [message_param(turn) for turn in history]
        )
        ended = False
        stop_reason, output_tokens = "end_turn", None
        thinking_blocks: dict[int, list[str]] = {}  # index -> signature parts, while open
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
                # One breakpoint on the request's last block: the whole conversation so far is
                # written to the cache, and read back by the next turn.
                cache_control={"type": "ephemeral"} if cache else anthropic.omit,
                **_thinking_params(thinking),
            )
            async with stream:
                # The events are read as JSON, not as the SDK's typed objects: building those
                # was a fifth of the event loop's time per delta (bench, profiled at N=100).
                async for name, data in _server_sent_events(stream.response):
                    event = json.loads(data)
                    kind = event.get("type") if isinstance(event, dict) else None
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta["type"] == "text_delta":
                            yield TextDelta(delta["text"])
                        elif delta["type"] == "thinking_delta":
                            yield ThinkingDelta(delta["thinking"])
                        elif (
                            delta["type"] == "signature_delta" and event["index"] in thinking_blocks
                        ):
                            thinking_blocks[event["index"]].append(delta["signature"])
                        # (Tool input JSON, citations and deltas of unknown kinds are no part
                        # of the answer.)
                    elif kind == "content_block_start":
                        block = event["content_block"]
                        if block["type"] == "thinking":
                            thinking_blocks[event["index"]] = [block.get("signature") or ""]
                    elif kind == "content_block_stop":
                        if event["index"] in thinking_blocks:
                            yield ThinkingSigned("".join(thinking_blocks.pop(event["index"])))
                    elif kind == "message_start":
                        usage = event["message"]["usage"]
                        yield StreamStart(
                            input_tokens=usage.get("input_tokens"),
                            cache_read_input_tokens=usage.get("cache_read_input_tokens"),
                            cache_creation_input_tokens=usage.get("cache_creation_input_tokens"),
                        )
                    elif kind == "message_delta":
                        stop_reason = event["delta"].get("stop_reason") or stop_reason
                        output_tokens = event.get("usage", {}).get("output_tokens")
                    elif kind == "message_stop":
                        ended = True
                    elif name == "error" or kind == "error":
                        message = describe_error_body(event, status=200, model=model)
                        raise ProviderError(message)
        except (anthropic.APIError, httpx2.TransportError) as exc:
            raise ProviderError(describe_error(exc, model=model)) from exc
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
            raise ProviderError(describe_error(exc, model=model)) from exc
        return "".join(block.text for block in message.content if block.type == "text")


def message_param(turn: ChatTurn) -> dict[str, Any]:
    """A turn as the Messages API takes it: plain text, or (with files) its files' blocks and
    then its text. Images go as image blocks and PDFs as document blocks (both base64, the file's
    bytes); a text file as a text block that names it."""
    if not turn.files:
        return {"role": turn.role, "content": turn.content}
    blocks = [_file_block(part) for part in turn.files]
    if turn.content:
        blocks.append({"type": "text", "text": turn.content})
    return {"role": turn.role, "content": blocks}


def _file_block(part: FilePart) -> dict[str, Any]:
    if part.kind == "text":
        name = html.escape(part.name)
        return {"type": "text", "text": f'<document name="{name}">\n{part.content}\n</document>'}
    # (Encoded to base64 when it was read, off the event loop.)
    source = {"type": "base64", "media_type": part.media_type, "data": part.content}
    if part.kind == "image":
        return {"type": "image", "source": source}
    return {"type": "document", "source": source, "title": part.name}


async def _server_sent_events(response: httpx2.Response) -> AsyncIterator[tuple[str, bytes]]:
    """The (event name, data) of each server-sent event of a response; comments, ids and empty
    events are skipped (the SSE format: fields on lines, events ended by a blank line)."""
    pending = b""
    async for chunk in response.aiter_bytes():
        pending += chunk
        if b"\r" in pending:
            pending = pending.replace(b"\r\n", b"\n")
        *complete, pending = pending.split(b"\n\n")
        for raw in complete:
            name, data = "", []
            for line in raw.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[6:] if line.startswith(b"data: ") else line[5:])
                elif line.startswith(b"event:"):
                    name = line[6:].strip().decode()
            if data:
                yield name, b"\n".join(data)


def _thinking_params(thinking: Thinking | None) -> dict[str, Any]:
    """The request's `thinking` (and, for adaptive thinking, `output_config`) parameters.
    Thinking is asked to be shown (`display: summarized`): some models omit it by default."""
    if thinking is None:
        return {}
    if thinking.budget_tokens <= 0:
        return {"thinking": {"type": "disabled"}}
    if thinking.adaptive:
        return {
            "thinking": {"type": "adaptive", "display": "summarized"},
            "output_config": {"effort": thinking.effort},
        }
    return {
        "thinking": {
            "type": "enabled",
            "budget_tokens": thinking.budget_tokens,
            "display": "summarized",
        }
    }
