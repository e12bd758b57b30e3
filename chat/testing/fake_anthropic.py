"""A fake Anthropic Messages API server that the real ``anthropic`` SDK can stream from.

Why this exists: the app's whole point is that *Stop really stops the model*. The only way to
prove that end to end is to watch the upstream side of the connection and see the moment the
client hangs up. This server speaks the real Messages API wire format (``POST /v1/messages``,
SSE events ``message_start`` ... ``message_stop`` over chunked HTTP/1.1), streams at a
configurable pace, injects the faults the app has to survive, and records for every request
when each delta was written and when the client disconnected -- all on ``time.monotonic()``
(CLOCK_MONOTONIC, system-wide on Linux), so a test in another process can compare timestamps.

It uses only the standard library (asyncio streams), so it adds no dependency.

In-process use (the server runs its own event loop in a daemon thread, so it works while the
test runs its own loop in the main thread)::

    with FakeAnthropicServer(FakeConfig(interval=0.01, deltas=20)) as server:
        client = AsyncAnthropic(base_url=server.base_url, api_key="test-key")
        ...
        record = await server.await_request()          # or server.wait_for_request() (sync)
        await server.await_disconnect(record)

Standalone use (for an app running in another process)::

    python -m chat.testing.fake_anthropic --port 8765 --interval 0.02 --deltas 300

prints exactly one line ``listening on http://127.0.0.1:PORT`` to stdout when ready (``--port 0``
picks a free port) and serves until SIGTERM/SIGINT. ``--thinking N`` sets ``FakeConfig.thinking``
(default: as the request asks), ``--replay NAME`` sets ``FakeConfig.replay`` and
``--recordings DIR`` where recordings are found (default ``<repo>/tests/recordings``). The same
port serves a JSON control API:

* ``GET  /_fake/requests[?min=N&finished=1&timeout=S]`` -- list of request records
  (``RequestRecord.to_dict``); with ``min`` it first waits up to ``timeout`` seconds (default 5)
  until at least N requests exist, with ``finished=1`` also until every record is finished
  (the client can see ``message_stop`` a moment before the server marks the record done).
* ``GET  /_fake/config`` -- the current config.
* ``POST /_fake/config`` -- JSON object of ``FakeConfig`` fields to change (a partial update);
  returns the new config. Resets the ``fail_times`` counter.
* ``POST /_fake/reset`` -- clears the records, ``fail_times`` counters and the simulated prompt
  cache (config is kept).
* ``GET  /_fake/health`` -- ``{"ok": true, "now": <time.monotonic()>}``.

``FakeAnthropicControl`` wraps these endpoints for tests.

Per-request directives
----------------------
If the text of the LAST user message contains ``[[fake:...]]``, its settings override the server
config for that request only. Grammar::

    directive := "[[fake:" [ item { "," item } ] "]]"
    item      := key [ "=" value ]          (a bare key means key=true)
    key       := any FakeConfig field name  (interval, deltas, first_delay, text, echo, error,
                                             error_after, fail_times, required_key, ping,
                                             stop_reason, thinking, redacted_thinking, tool_use,
                                             unknown_block, cache_read, cache_creation,
                                             cache_min_tokens, cache_ttl, reject_models,
                                             replay)
    value     := text without "," or "]]"; whitespace around keys and values is ignored;
                 "none"/"null" -> None, "true/false/yes/no/on/off/1/0" for booleans;
                 a list of names (reject_models) is separated by spaces or "|".

Example: ``[[fake:interval=0.05,deltas=200,first_delay=2,error=overloaded_midstream]]``. Several
directives in one message are applied left to right. An unknown key or a bad value gets a 400
``invalid_request_error`` so a typo in a test cannot silently do nothing. With ``echo`` the
directive is stripped from the echoed text. ``fail_times`` given in a directive counts requests
carrying that same directive text (so SDK retries of one request are counted together).

Reply text and chunking
-----------------------
The reply is ``text`` (or ``"Echo: <last user text>"`` with ``echo``, or by default
``"Token 1 of N. Token 2 of N. ..."``, one sentence per delta). If it is shorter than ``deltas``
characters it is repeated (space-joined) until it is not. It is cut into exactly ``deltas``
chunks at word boundaries when it has at least ``deltas`` words, else at character boundaries;
see ``plan_chunks``. If the request's ``max_tokens`` is smaller than ``deltas``, only
``max_tokens`` deltas are sent and ``stop_reason`` is ``"max_tokens"``. Output tokens reported
in ``message_delta`` = number of deltas sent.

Timing: headers, ``message_start``, ``content_block_start`` and ``ping`` go out at once, then
``first_delay`` seconds, then the first delta, then one delta every ``interval`` seconds.

More of the real stream (off by default: then, and unless the request asks for thinking, the
stream is exactly the one above)
-------------------------------------------------------------------------------------------
* Thinking -- before the text, a ``thinking`` block (index 0) with N ``thinking_delta`` events
  ("Thinking step i of N. "), a ``signature_delta`` and its ``content_block_stop``; the text
  block comes after it. The thinking deltas come first after ``first_delay`` and are paced by
  ``interval`` like the text (the ``ping`` follows the first ``content_block_start``, as in the
  real API); the first text delta follows ``interval`` after the block. Recorded in
  ``RequestRecord.thinking_written``. How many steps (``thinking_plan``):

  - ``thinking=None`` (the default) follows the request, like the real API: a request whose
    ``thinking`` has ``type`` ``"enabled"`` (with ``budget_tokens``) or ``"adaptive"`` gets
    ``REQUESTED_THINKING_STEPS`` (3) steps; any other request (no ``thinking``, ``"disabled"``)
    none.
  - ``thinking=N`` with N > 0 always streams N steps, asked for or not; ``thinking=0`` never
    streams a thinking block, even when the request asks for one.
  - ``"display": "omitted"`` in the request's ``thinking``: the block streams no
    ``thinking_delta`` at all, only its ``signature_delta`` (after ``first_delay``; its thinking
    is ``""``), as the real API does; the steps still count as output tokens.

  The request body is on the record (``RequestRecord.body``), so a test can assert what the app
  asked for (``thinking``, ``cache_control``, ``output_config`` ...).
* ``redacted_thinking`` -- after any thinking block and before the text, a
  ``redacted_thinking`` block whose opaque ``data`` (``REDACTED_THINKING_DATA``) arrives whole in
  its ``content_block_start``, with no delta, then its ``content_block_stop``.
* ``unknown_block`` -- after the text, a block of a type no SDK knows (``future_block``) with one
  ``future_delta``, to prove a client ignores what it does not understand.
* ``tool_use`` -- last, a ``tool_use`` block (``get_weather``, ``TOOL_INPUT``) whose input JSON
  arrives in paced ``input_json_delta`` events (recorded in ``tool_json_written``); the
  ``stop_reason`` becomes ``"tool_use"`` if it was left at ``"end_turn"``. A reply cut by
  ``max_tokens`` has no tool block.
* ``cache_read=N`` / ``cache_creation=N`` (default ``None``) -- when either is set, the usage
  reports these fixed ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` (the unset
  one as 0) and ``input_tokens`` = the whole prompt's count, instead of the simulated prompt
  cache below (which that request then neither reads nor writes).

Prompt caching (simulated like the real API's)
----------------------------------------------
A request asks for caching with breakpoints: ``cache_control`` on blocks of ``system`` or of
messages' ``content``, and/or a top-level ``"cache_control": {"type": "ephemeral"}``, which marks
the request's last cacheable block (the last content block of the last message). The server
(``FakeAnthropicServer.prompt_cache``) then works like Anthropic's cache:

* A prompt is its blocks in order: the system prompt's (a string is one block), then each
  message's. Prefix n = the first n blocks. Its key hashes the model and the canonical JSON
  (sorted keys) of those blocks, each with the message (index and role) it belongs to, without
  their ``cache_control`` markers (``prefix_keys``).
* Tokens of a prefix (``prefix_tokens``) are counted as ``count_input_tokens`` counts the whole
  prompt (text chars // 4), so ``input_tokens + cache_creation_input_tokens +
  cache_read_input_tokens == count_input_tokens(body)``.
* Lookup: from each breakpoint the server looks back over at most ``CACHE_LOOKBACK`` (20) block
  boundaries, as the API does, for a remembered prefix; the longest one found is the hit.
  ``cache_read_input_tokens`` = its tokens (0 on a miss), and a read refreshes its lifetime.
* Write: every breakpoint longer than the hit whose prefix has at least ``cache_min_tokens``
  tokens (default 1024) is remembered for ``cache_ttl`` seconds (default 300; a breakpoint with
  ``"ttl": "1h"``: 3600). ``cache_creation_input_tokens`` = tokens from the hit up to the last
  breakpoint written (0 if none was).
* ``input_tokens`` = the rest: the tokens after the last breakpoint, or the whole prompt when
  nothing was read or written.

So in a conversation sent with a top-level ``cache_control``, turn 1 creates its prefix, turn 2
reads turn 1's prefix and creates the new part, and so on. A request with no ``cache_control``
reads and writes nothing (``0`` for both numbers, as the real API reports). Only
``/v1/messages`` requests that get a reply touch the cache (not ``count_tokens``, not those
answered with an error status). ``reset`` clears it.

Usage: ``message_start``'s usage has ``input_tokens``, ``cache_creation_input_tokens``,
``cache_read_input_tokens`` (0 when nothing is cached, as the real API reports them) and
``output_tokens: 1``; the final ``message_delta`` usage repeats the three input numbers and has
the final ``output_tokens`` (cumulative, as the API's). The record keeps the input numbers
(``input_tokens``, ``cache_creation_input_tokens``, ``cache_read_input_tokens``).

Unknown models: a request whose ``model`` starts with ``claude-unknown`` (``UNKNOWN_MODEL_PREFIX``)
or is in ``reject_models`` gets a 404 with the real body,
``{"type": "error", "error": {"type": "not_found_error", "message": "model: <name>"},
"request_id": ...}`` (the SDK raises ``anthropic.NotFoundError``); so does ``count_tokens``.
The key check (``required_key``) comes first, as in the API.

``deltas_written``, ``delta_times``, ``error_after`` and ``max_tokens`` count text deltas only;
the ``output_tokens`` reported at the end count the thinking steps and tool JSON deltas too. The
non-streaming reply carries the same blocks and usage.

Replaying recordings (``replay=<name>``)
----------------------------------------
``tests/recordings/*.sse`` hold event sequences in the real API's wire format (thinking,
refusals, tool use, server tools, compaction, each stop reason ...; composed after the API's
documentation and the SDK's types, not captured) as raw SSE text: ``event: ...`` /
``data: {...}`` lines, a blank line after each event, and ``:`` comment lines (ignored by
clients) saying what the file is and where its shape comes from (``parse_sse``). With
``replay=<name>`` (``[a-z0-9_]+``) the server answers a streaming request by playing
``<recordings>/<name>.sse`` verbatim (comment lines left out): the recording's ids, model,
blocks and usage, whatever the request said (its ``max_tokens`` included). The directory is
the server's ``recordings`` argument (CLI ``--recordings``), by default ``DEFAULT_RECORDINGS``
= ``<repo root>/tests/recordings``.

* Timing: the first content delta (``content_block_delta``) goes out ``first_delay`` seconds
  after the head, each later one ``interval`` seconds after the one before; every other event
  goes out at once after the delta before it (pings only where the recording has them).
* Records: as for a generated stream -- ``text_delta`` events count in ``deltas_written``,
  ``delta_times`` and ``text_written`` (``deltas_planned``: all of the recording's), the
  ``thinking_delta`` text in ``thinking_written`` and ``input_json_delta`` in
  ``tool_json_written``; the record takes the recording's message id and input usage. A client
  hang-up is noticed and recorded exactly as for a generated stream.
* Faults: a wrong key, an unknown model and status faults answer before any replay; a
  midstream fault comes instead of the first content delta after ``error_after`` text deltas,
  or instead of the ``message_delta`` when the recording has fewer.
* A non-streaming request, or a recording that is missing or malformed, gets a 400
  ``invalid_request_error``. The prompt cache is not consulted.

Faults (``FakeConfig.error``)
-----------------------------
* ``None`` -- a normal reply.
* ``"status_NNN"`` (``status_429``, ``status_529``, ``status_401``, ``status_500``, also 400,
  403, 404, 413, 503 ...) -- that HTTP status with a real Anthropic JSON error body. 429/5xx
  carry ``retry-after: 0`` *and* ``retry-after-ms: 1``: the SDK ignores a zero
  ``retry-after`` and would back off ~0.5 s, the ``-ms`` header makes retries take 1 ms.
* ``"error_midstream"`` (alias ``"overloaded_midstream"``) -- after ``error_after`` deltas an
  ``event: error`` with an ``overloaded_error`` body, then the body ends cleanly.
* ``"drop_midstream"`` -- after ``error_after`` deltas the server closes the socket (FIN) without
  ending the chunked body: the client sees an incomplete message body.
* ``"reset_midstream"`` -- like drop, but with a TCP RST (SO_LINGER 0).
* ``"stall"`` -- after ``error_after`` deltas nothing more is sent; the socket stays open until
  the client goes away.

``fail_times`` (``None`` = always): the fault applies only to the first N matching requests,
then requests succeed -- e.g. ``status_529`` + ``fail_times=1`` tests SDK retries.

Files in a request (``content_problem``) are checked as the real API checks them: an image
block of a type it does not take, or whose bytes are not that type, a document block that is
not a PDF, bad base64 or an empty text block get its 400 ``invalid_request_error``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, Self

log = logging.getLogger("chat.testing.fake_anthropic")

MIDSTREAM_FAULTS = frozenset({"error_midstream", "drop_midstream", "reset_midstream", "stall"})
_FAULT_ALIASES = {"overloaded_midstream": "error_midstream"}
_STATUS_FAULT = re.compile(r"^status_(\d{3})$")
_DIRECTIVE = re.compile(r"\[\[fake:(.*?)\]\]", re.DOTALL)

#: HTTP status -> (Anthropic error type, message), as the real API sends them.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit"),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}

#: A slow reply: 300 deltas 20 ms apart (6 s), long enough to act in the middle of it (Stop, a
#: second tab, a hang-up), short enough that one nobody stops still ends. The tests' ``SLOW``
#: config and the live fake's start-up pace.
SLOW_INTERVAL = 0.02
SLOW_DELTAS = 300

#: The input of the ``tool_use`` block (``FakeConfig.tool_use``).
TOOL_NAME = "get_weather"
TOOL_INPUT: dict[str, Any] = {"location": "Paris, France", "unit": "celsius"}

#: Thinking steps streamed when the request asks for thinking and ``FakeConfig.thinking`` is
#: left at ``None``.
REQUESTED_THINKING_STEPS = 3

#: The opaque ``data`` of the ``redacted_thinking`` block (``FakeConfig.redacted_thinking``).
REDACTED_THINKING_DATA = "EmwKAhgBEgyFAKEredactedFAKEthinkingFAKEpayload0123456789abcdef"

#: Any model whose name starts with this gets a 404 ``not_found_error``, as an unknown model.
UNKNOWN_MODEL_PREFIX = "claude-unknown"

#: How many block boundaries the simulated prompt cache looks back from each breakpoint.
CACHE_LOOKBACK = 20

#: Where ``FakeConfig.replay`` looks for ``<name>.sse`` unless the server is given another.
DEFAULT_RECORDINGS = Path(__file__).resolve().parents[2] / "tests" / "recordings"

#: What a recording's name may be: it becomes a file name.
RECORDING_NAME = re.compile(r"^[a-z0-9_]+$")

_MAX_HEAD = 1 << 20  # StreamReader limit: request heads and chunk lines up to 1 MiB


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class FakeConfig:
    """How the fake answers. Mutable; a snapshot is taken at the start of every request."""

    interval: float = 0.02
    """Seconds between two deltas."""
    deltas: int = 40
    """Number of ``content_block_delta`` events (before ``max_tokens`` truncation)."""
    first_delay: float = 0.0
    """Seconds between ``message_start`` (+ headers) and the first delta."""
    text: str | None = None
    """Reply text; ``None`` means the generated "Token i of N. " text."""
    echo: bool = False
    """Reply ``"Echo: <last user message text>"`` (directives stripped)."""
    error: str | None = None
    """Fault to inject; see the module docstring."""
    error_after: int = 5
    """Midstream faults trigger after this many deltas (capped at the number of deltas)."""
    fail_times: int | None = None
    """Apply ``error`` only to the first N requests (``None`` = every request)."""
    required_key: str | None = None
    """If set, requests with another API key get a 401 ``authentication_error``."""
    ping: bool = True
    """Send a ``ping`` event after ``content_block_start`` like the real API."""
    stop_reason: str = "end_turn"
    """``stop_reason`` of a reply that was not cut by ``max_tokens``."""
    thinking: int | None = None
    """Steps (``thinking_delta`` events) of a thinking block before the text. ``None`` follows
    the request (``REQUESTED_THINKING_STEPS`` when it asks for thinking, else none); ``0``
    means none even when asked; N > 0 always streams N."""
    redacted_thinking: bool = False
    """Add a ``redacted_thinking`` block (opaque ``data``) before the text."""
    tool_use: bool = False
    """End with a ``tool_use`` block (and ``stop_reason`` ``"tool_use"``)."""
    unknown_block: bool = False
    """Add a block of a type the SDK does not know after the text."""
    cache_read: int | None = None
    """Fixed ``cache_read_input_tokens`` to report instead of simulating the prompt cache."""
    cache_creation: int | None = None
    """Fixed ``cache_creation_input_tokens`` to report instead of simulating the cache."""
    cache_min_tokens: int = 1024
    """The simulated cache writes only prefixes of at least this many tokens."""
    cache_ttl: float = 300.0
    """Seconds a simulated cache entry lives after its last write or read (``ttl: "1h"``
    breakpoints: 3600)."""
    reject_models: tuple[str, ...] = ()
    """Models answered with a 404 ``not_found_error`` (as is any ``claude-unknown*`` model)."""
    replay: str | None = None
    """Answer a streaming request by playing the recording ``<recordings>/<replay>.sse``."""

    def __post_init__(self) -> None:
        """Normalise and validate eagerly, so a bad config fails where it is written."""
        if self.error is not None:
            self.error = _FAULT_ALIASES.get(self.error, self.error)
            if self.error not in MIDSTREAM_FAULTS and not _STATUS_FAULT.match(self.error):
                raise ValueError(f"unknown fake error {self.error!r}")
        if self.interval < 0 or self.first_delay < 0:
            raise ValueError("interval and first_delay must be >= 0")
        if self.deltas < 0 or self.error_after < 0:
            raise ValueError("deltas and error_after must be >= 0")
        counts = (self.thinking, self.cache_read, self.cache_creation, self.cache_min_tokens)
        if any(n is not None and n < 0 for n in counts):
            raise ValueError("thinking, cache_read, cache_creation, cache_min_tokens must be >= 0")
        if self.cache_ttl < 0:
            raise ValueError("cache_ttl must be >= 0")
        if self.replay is not None and not RECORDING_NAME.match(self.replay):
            raise ValueError(f"replay: not a recording name ([a-z0-9_]+): {self.replay!r}")
        if self.fail_times is not None and self.fail_times < 0:
            raise ValueError("fail_times must be >= 0 or None")

    def updated(self, changes: dict[str, Any]) -> FakeConfig:
        """Return a copy with ``changes`` applied; string values (CLI, directives) are coerced."""
        known = {f.name for f in dataclasses.fields(self)}
        coerced: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown fake config key {key!r}")
            coerced[key] = _coerce(key, value)
        return dataclasses.replace(self, **coerced)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields."""
        return dataclasses.asdict(self)


_FIELD_KINDS: dict[str, tuple[type, bool]] = {
    # name: (type, optional)
    "interval": (float, False),
    "deltas": (int, False),
    "first_delay": (float, False),
    "text": (str, True),
    "echo": (bool, False),
    "error": (str, True),
    "error_after": (int, False),
    "fail_times": (int, True),
    "required_key": (str, True),
    "ping": (bool, False),
    "stop_reason": (str, False),
    "thinking": (int, True),
    "redacted_thinking": (bool, False),
    "tool_use": (bool, False),
    "unknown_block": (bool, False),
    "cache_read": (int, True),
    "cache_creation": (int, True),
    "cache_min_tokens": (int, False),
    "cache_ttl": (float, False),
    "reject_models": (tuple, False),
    "replay": (str, True),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(key: str, value: Any) -> Any:
    """Convert a CLI/JSON/directive value to the field's type, loudly on nonsense."""
    kind, optional = _FIELD_KINDS[key]
    if kind is tuple:
        return _coerce_names(key, value)
    if isinstance(value, str):
        raw = value.strip()
        if optional and raw.lower() in {"none", "null", ""}:
            return None
        if kind is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError(f"{key}: not a boolean: {value!r}")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return value
    if value is None:
        if optional:
            return None
        raise ValueError(f"{key} cannot be None")
    if kind is bool:
        return bool(value)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{key}: not an integer: {value!r}")
        return int(value)
    if kind is float:
        return float(value)
    return str(value)


def _coerce_names(key: str, value: Any) -> tuple[str, ...]:
    """A tuple of names from a JSON list or a string of names separated by spaces or ``|``
    (a directive value cannot hold a comma)."""
    if isinstance(value, str):
        return tuple(name for name in re.split(r"[\s|]+", value) if name)
    if isinstance(value, list | tuple) and all(isinstance(name, str) for name in value):
        return tuple(value)
    raise ValueError(f"{key}: not a list of names: {value!r}")


def parse_directives(text: str) -> tuple[dict[str, str], str]:
    """Return (settings, raw directive text) from all ``[[fake:...]]`` in ``text``.

    The raw text is the key for ``fail_times`` counting, so retries of one request share it.
    """
    settings: dict[str, str] = {}
    raws: list[str] = []
    for match in _DIRECTIVE.finditer(text):
        raws.append(match.group(0))
        for item in match.group(1).split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            settings[key.strip()] = value.strip() if sep else "true"
    return settings, "".join(raws)


def strip_directives(text: str) -> str:
    """The text without its directives, for echo replies."""
    return _DIRECTIVE.sub("", text).strip()


# --------------------------------------------------------------------------------------------
# Reply text
# --------------------------------------------------------------------------------------------


def default_text(deltas: int) -> str:
    """One short sentence per delta, so a test can see exactly which deltas arrived."""
    return "".join(f"Token {i} of {deltas}. " for i in range(1, deltas + 1))


def thinking_steps(n: int) -> list[str]:
    """The ``thinking_delta`` texts of a ``thinking=n`` reply."""
    return [f"Thinking step {i} of {n}. " for i in range(1, n + 1)]


def requested_thinking(body: Any) -> dict[str, Any] | None:
    """The request's ``thinking`` config if it turns thinking on (``enabled`` or ``adaptive``)."""
    thinking = body.get("thinking") if isinstance(body, dict) else None
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        return thinking
    return None


def thinking_plan(config: FakeConfig, body: Any) -> tuple[int, bool]:
    """(thinking steps to stream, whether their text is shown) for one request.

    ``config.thinking`` wins when set; ``None`` follows the request. ``display: "omitted"`` in
    the request hides the text: the block carries only its signature, as the real API's.
    """
    requested = requested_thinking(body)
    steps = config.thinking
    if steps is None:
        steps = REQUESTED_THINKING_STEPS if requested else 0
    shown = not (requested is not None and requested.get("display") == "omitted")
    return steps, shown


def is_rejected_model(config: FakeConfig, model: Any) -> bool:
    """Whether the fake answers this model with a 404, as the API answers an unknown one."""
    return isinstance(model, str) and (
        model in config.reject_models or model.startswith(UNKNOWN_MODEL_PREFIX)
    )


def tool_json_parts() -> list[str]:
    """The ``partial_json`` pieces of the tool block: an empty one first, as the API sends."""
    raw = json.dumps(TOOL_INPUT, separators=(",", ":"))
    cuts = [0, 1, len(raw) // 3, 2 * len(raw) // 3, len(raw)]
    return [""] + [raw[cuts[i] : cuts[i + 1]] for i in range(len(cuts) - 1)]


def plan_chunks(text: str | None, deltas: int) -> list[str]:
    """Cut the reply into exactly ``deltas`` non-empty chunks (see the module docstring).

    Public so tests can compute the expected reply: ``"".join(plan_chunks(text, n))``.
    """
    if deltas <= 0:
        return []
    full = text if text else default_text(deltas)
    base = full
    while len(full) < deltas:
        full = f"{full} {base}"
    words = re.findall(r"\s*\S+\s*", full)
    word_split = len(words) >= deltas and "".join(words) == full
    units = words if word_split else list(full)
    bounds = [round(i * len(units) / deltas) for i in range(deltas + 1)]
    return ["".join(units[bounds[i] : bounds[i + 1]]) for i in range(deltas)]


def _content_text(content: Any) -> str:
    """Text of a message's ``content`` (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif block.get("type") == "tool_result":
                    parts.append(_content_text(block.get("content")))
        return "\n".join(parts)
    return ""


def last_user_text(body: Any) -> str:
    """Text of the last ``role: user`` message, where directives are looked for."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def last_message_text(body: Any) -> str:
    """Text of the last message, whatever its role (a continuation ends with the assistant's
    partial): what a test marks a request by."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return _content_text(messages[-1].get("content"))
    return ""


#: The image types the Messages API takes, and the bytes each starts with.
IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


def content_problem(body: dict[str, Any]) -> str | None:
    """What the real API would reject in the messages' blocks (its 400 message), or None: an
    image or PDF whose base64 is bad, whose declared type is not one it takes, or whose bytes
    are not that type; an empty text block."""
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and not block.get("text"):
                return f"{where}: text content blocks must be non-empty"
            if kind not in ("image", "document"):
                continue
            source = block.get("source")
            if not isinstance(source, dict) or source.get("type") not in ("base64", "text"):
                return f"{where}.source: unsupported source"
            if source["type"] == "text":
                if kind != "document" or not isinstance(source.get("data"), str):
                    return f"{where}.source: text sources are for documents"
                continue
            media_type = source.get("media_type")
            try:
                data = base64.b64decode(source.get("data", ""), validate=True)
            except (ValueError, TypeError):
                return f"{where}.source.base64: invalid base64 data"
            if kind == "image":
                if media_type not in IMAGE_MAGIC:
                    return f"{where}.source.base64.media_type: unsupported image type"
                if not data.startswith(IMAGE_MAGIC[media_type]):
                    return f"{where}.source.base64: the image is not a valid {media_type}"
            elif media_type != "application/pdf" or not data.startswith(b"%PDF-"):
                return f"{where}.source.base64: the document is not a valid PDF"
    return None


def count_input_tokens(body: Any) -> int:
    """A rough token count (chars // 4, at least 1) of the system prompt and messages."""
    if not isinstance(body, dict):
        return 1
    return max(1, prefix_tokens(prompt_segments(body)))


# --------------------------------------------------------------------------------------------
# Prompt cache
# --------------------------------------------------------------------------------------------

#: A prompt as the cache sees it: the system prompt, then each message, as (name, blocks).
Segments = list[tuple[str, list[Any]]]


def _as_blocks(content: Any) -> list[Any]:
    """A ``system`` or message ``content`` as blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def prompt_segments(body: dict[str, Any]) -> Segments:
    """The system prompt, then each message, with its blocks: the order of a cache prefix."""
    segments: Segments = []
    if body.get("system") is not None:
        segments.append(("system", _as_blocks(body["system"])))
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        if isinstance(message, dict):
            name = f"message {i} {message.get('role')}"
            segments.append((name, _as_blocks(message.get("content"))))
    return segments


def prefix_tokens(segments: Segments, blocks: int | None = None) -> int:
    """Tokens (chars // 4) of the first ``blocks`` blocks of the prompt (all by default), counted
    as ``count_input_tokens`` counts the whole: so the cached and uncached parts of a prompt
    add up to its count."""
    chars = 0
    left = sum(len(segment_blocks) for _, segment_blocks in segments) if blocks is None else blocks
    for _, segment_blocks in segments:
        if left <= 0:
            break
        chars += len(_content_text(segment_blocks[:left]))
        left -= len(segment_blocks)
    return chars // 4


def cache_breakpoints(body: dict[str, Any], segments: Segments) -> list[tuple[int, dict[str, Any]]]:
    """(prefix length in blocks, its ``cache_control``) of each breakpoint, shortest first: the
    blocks marked ``cache_control``, and with a top-level ``cache_control`` the request's last
    block (the last content block of the last message)."""
    blocks = [block for _, segment_blocks in segments for block in segment_blocks]
    points = {
        n: block["cache_control"]
        for n, block in enumerate(blocks, start=1)
        if isinstance(block, dict) and isinstance(block.get("cache_control"), dict)
    }
    if isinstance(body.get("cache_control"), dict) and blocks:
        points.setdefault(len(blocks), body["cache_control"])
    return sorted(points.items())


def prefix_keys(model: str, segments: Segments) -> list[str]:
    """The cache key of every prefix: ``keys[n - 1]`` for the first n blocks. A key hashes the
    model and the canonical JSON of the blocks (without their ``cache_control`` markers, which
    are no part of the content) with the segment each is in."""
    digest = hashlib.sha256(model.encode() + b"\0")
    keys: list[str] = []
    for name, segment_blocks in segments:
        for block in segment_blocks:
            if isinstance(block, dict):
                block = {k: v for k, v in block.items() if k != "cache_control"}
            canonical = json.dumps([name, block], sort_keys=True, separators=(",", ":"))
            digest.update(canonical.encode() + b"\n")
            keys.append(digest.hexdigest())
    return keys


@dataclass(frozen=True)
class InputUsage:
    """The input side of a reply's usage."""

    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class PromptCache:
    """Anthropic's prompt cache, simulated per server (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}  # prefix key -> time.monotonic() it expires

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def use(self, body: dict[str, Any], config: FakeConfig) -> InputUsage:
        """Look this request's prefix up, write its breakpoints' prefixes, return its usage."""
        segments = prompt_segments(body)
        total = count_input_tokens(body)
        points = cache_breakpoints(body, segments)
        if not points:
            return InputUsage(total)
        keys = prefix_keys(str(body.get("model")), segments)
        now = time.monotonic()
        with self._lock:
            self._expiry = {key: t for key, t in self._expiry.items() if t > now}
            hit = self._longest_hit(keys, [n for n, _ in points])
            read = prefix_tokens(segments, hit) if hit else 0
            if hit:
                self._expiry[keys[hit - 1]] = now + config.cache_ttl  # a read refreshes it
            written = 0
            for n, control in points:
                tokens = prefix_tokens(segments, n)
                if n > hit and tokens >= config.cache_min_tokens:
                    ttl = 3600.0 if control.get("ttl") == "1h" else config.cache_ttl
                    self._expiry[keys[n - 1]] = now + ttl
                    written = tokens
        creation = written - read if written else 0
        return InputUsage(total - read - creation, creation, read)

    def _longest_hit(self, keys: list[str], breakpoints: list[int]) -> int:
        """Length of the longest remembered prefix found looking back at most
        ``CACHE_LOOKBACK`` blocks from each breakpoint (0: a miss)."""
        best = 0
        for point in breakpoints:
            for n in range(point, max(best, point - CACHE_LOOKBACK), -1):
                if keys[n - 1] in self._expiry:
                    best = n
                    break
        return best


# --------------------------------------------------------------------------------------------
# Recordings (FakeConfig.replay)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    """One event of a recording."""

    event: str
    data: dict[str, Any]
    wire: bytes
    """The event as it goes on the wire: its ``event:``/``data:`` lines as written (comment
    lines dropped), ending with the blank line."""


def parse_sse(text: str) -> list[SseEvent]:
    """The events of SSE text. Lines starting with ``:`` are comments; each event needs JSON
    object data whose ``type`` is the event's name (as in every Messages API event)."""
    events: list[SseEvent] = []
    for part in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        lines = [line for line in part.split("\n") if line.strip() and not line.startswith(":")]
        if not lines:
            continue
        name, data = "message", []
        for line in lines:
            key, _, value = line.partition(":")
            if key == "event":
                name = value.strip()
            elif key == "data":
                data.append(value.removeprefix(" "))
            else:
                raise ValueError(f"not an SSE event line: {line!r}")
        payload = json.loads("\n".join(data))
        if not isinstance(payload, dict) or payload.get("type") != name:
            raise ValueError(f"event {name!r} does not carry data of its type: {data!r}")
        events.append(SseEvent(name, payload, ("\n".join(lines) + "\n\n").encode()))
    return events


def load_recording(directory: Path, name: str) -> list[SseEvent]:
    """The events of ``<directory>/<name>.sse`` (ValueError if there is none or it is bad)."""
    if not RECORDING_NAME.match(name):
        raise ValueError(f"not a recording name ([a-z0-9_]+): {name!r}")
    path = directory / f"{name}.sse"
    if not path.is_file():
        raise ValueError(f"no recording {name!r} in {directory}")
    return parse_sse(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """What happened to one API request. Mutated by the server thread while it runs.

    All times are ``time.monotonic()``.
    """

    index: int
    """1-based order of arrival."""
    method: str
    path: str
    body: Any
    """Parsed JSON body (``None`` if there was none, the raw text if it was not JSON)."""
    headers: dict[str, str]
    """Request headers, lowercase keys."""
    started_at: float
    """When the request head arrived."""
    config: dict[str, Any] = field(default_factory=dict)
    """The effective config for this request (server config + directives)."""
    stream: bool = False
    status: int | None = None
    outcome: str | None = None
    """``completed``, ``client_disconnected``, ``status_error``, ``error_event``, ``dropped``,
    ``reset`` or ``server_stopped``."""
    request_id: str | None = None
    message_id: str | None = None
    input_tokens: int = 0
    """The reply's ``usage.input_tokens``: the prompt's tokens not read from or written to the
    (simulated) prompt cache."""
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    deltas_planned: int = 0
    deltas_written: int = 0
    delta_times: list[float] = field(default_factory=list)
    """When each delta had been written and drained to the socket."""
    text_written: str = ""
    thinking_written: str = ""
    """Text of the ``thinking_delta`` events written (``FakeConfig.thinking``, or replayed)."""
    tool_json_written: str = ""
    """``partial_json`` of the ``input_json_delta`` events written (``FakeConfig.tool_use``)."""
    disconnected_at: float | None = None
    """When the server noticed the client hung up before the response finished."""
    completed: bool = False
    """``message_stop`` (or the full non-streaming body) was written."""
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        """The server is done with this request, for whatever reason."""
        return self.finished_at is not None

    def input_usage(self) -> dict[str, int]:
        """The input side of the reply's ``usage``, as ``message_start`` and the final
        ``message_delta`` report it."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }

    def deltas_after(self, t: float) -> int:
        """How many deltas were written after monotonic time ``t`` (e.g. a cancel)."""
        return sum(1 for dt in self.delta_times if dt > t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``RequestRecord(**d)`` rebuilds it."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# One connection
# --------------------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client hung up; stop working on this request."""


class _Connection:
    """One accepted socket: parses one request, writes one response, watches for hang-ups."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        notify: Callable[[], None],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.notify = notify
        self.record: RequestRecord | None = None
        self.gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self.closing = False
        # drain() then means "handed to the kernel", so delta_times are honest
        writer.transport.set_write_buffer_limits(high=0)

    def start_watching(self) -> None:
        """Watch the socket for EOF/reset concurrently with writing the response.

        Why: a client that stops reading only shows up as EOF on our read side; waiting for a
        write to fail could take many deltas (the kernel buffers them happily).
        """
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while await self.reader.read(65536):
                pass  # a client may not pipeline here; ignore stray bytes
        except (ConnectionError, OSError):
            pass
        self.mark_gone()

    def mark_gone(self) -> None:
        """Record the client's disconnect once, unless the response had already finished."""
        if self.gone.is_set() or self.closing:
            return
        self.gone.set()
        record = self.record
        if record is not None and not record.finished and not record.completed:
            record.disconnected_at = time.monotonic()
            log.debug("request %d: client disconnected", record.index)
            self.notify()

    def stop_watching(self) -> None:
        """Stop the watcher before we close the socket ourselves (that is no client hang-up)."""
        self.closing = True
        if self._watcher is not None:
            self._watcher.cancel()

    async def send(self, data: bytes) -> None:
        """Write and drain, or raise ``_ClientGone``."""
        if self.gone.is_set():
            raise _ClientGone
        if self.writer.transport.is_closing():
            self.mark_gone()
            raise _ClientGone
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            self.mark_gone()
            raise _ClientGone from exc

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, but wake at once (raising ``_ClientGone``) on a hang-up."""
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.gone.wait()
        if self.gone.is_set():
            raise _ClientGone

    async def close(self, *, reset: bool = False) -> None:
        """Close our side: FIN normally, RST with ``reset``."""
        self.stop_watching()
        transport = self.writer.transport
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return
        transport.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await self.writer.wait_closed()


# --------------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------------

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _base_headers(request_id: str) -> dict[str, str]:
    return {
        "date": formatdate(usegmt=True),
        "server": "fake-anthropic",
        "request-id": request_id,
        "connection": "close",
    }


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _sse(event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return _chunk(f"event: {event}\ndata: {payload}\n\n".encode())


def _error_payload(status: int, message: str | None, request_id: str) -> dict[str, Any]:
    err_type, default_message = STATUS_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Error")
    )
    return {
        "type": "error",
        "error": {"type": err_type, "message": message or default_message},
        "request_id": request_id,
    }


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _delta(index: int, kind: str, **fields: Any) -> dict[str, Any]:
    """A ``content_block_delta`` event's data."""
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def _new_id(prefix: str) -> str:
    return f"{prefix}_fake{uuid.uuid4().hex[:20]}"


def _delta_type(event: SseEvent) -> str | None:
    """The delta type of a ``content_block_delta`` event (else ``None``)."""
    delta = event.data.get("delta") if event.event == "content_block_delta" else None
    return delta.get("type") if isinstance(delta, dict) else None


def _record_recorded_start(record: RequestRecord, data: dict[str, Any]) -> None:
    """Put a recording's message id and input usage on the record."""
    message = data.get("message")
    if not isinstance(message, dict):
        return
    record.message_id = message.get("id")
    usage = message.get("usage")
    if isinstance(usage, dict):
        record.input_tokens = usage.get("input_tokens") or 0
        record.cache_creation_input_tokens = usage.get("cache_creation_input_tokens") or 0
        record.cache_read_input_tokens = usage.get("cache_read_input_tokens") or 0


class _Events:
    """The SSE events of one streamed reply, in order. Queued events go out with the next
    ``send``, so the events the API sends back to back share one write."""

    def __init__(self, conn: _Connection, *, ping: bool) -> None:
        self.conn = conn
        self.ping = ping
        self.pending = b""
        self.blocks = 0
        """Content blocks opened so far (the next block's index)."""

    def queue(self, event: str, data: dict[str, Any]) -> None:
        self.pending += _sse(event, data)

    def open_block(self, block: dict[str, Any]) -> int:
        """Queue a ``content_block_start`` (and, after the first one, a ``ping`` as the API
        sends); return the block's index."""
        index = self.blocks
        self.blocks += 1
        start = {"type": "content_block_start", "index": index, "content_block": block}
        self.queue("content_block_start", start)
        if index == 0 and self.ping:
            self.queue("ping", {"type": "ping"})
        return index

    def close_block(self, index: int) -> None:
        self.queue("content_block_stop", {"type": "content_block_stop", "index": index})

    async def send(self, tail: bytes = b"") -> None:
        """Write what is queued, then ``tail``."""
        data, self.pending = self.pending + tail, b""
        await self.conn.send(data)

    async def delta(self, index: int, kind: str, **fields: Any) -> None:
        """Write what is queued and one ``content_block_delta``."""
        await self.send(_sse("content_block_delta", _delta(index, kind, **fields)))


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeAnthropicServer:
    """The fake API server. ``start()`` runs it on its own event loop in a daemon thread."""

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        recordings: Path | str | None = None,
    ) -> None:
        self._config = config if config is not None else FakeConfig()
        self.host = host
        self.port = port
        self.recordings = Path(recordings) if recordings is not None else DEFAULT_RECORDINGS
        """Where ``FakeConfig.replay`` finds ``<name>.sse``."""
        self._cond = threading.Condition()
        self._records: list[RequestRecord] = []
        self._fault_counts: dict[str, int] = {}
        self.prompt_cache = PromptCache()
        """The simulated prompt cache (``reset`` clears it)."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- config and records ------------------------------------------------------------

    @property
    def config(self) -> FakeConfig:
        """The config for new requests. Assigning a new one also resets ``fail_times``."""
        return self._config

    @config.setter
    def config(self, value: FakeConfig) -> None:
        with self._cond:
            self._config = value
            self._fault_counts.clear()

    def update_config(self, **changes: Any) -> FakeConfig:
        """Replace the config with a copy that has ``changes`` (also resets ``fail_times``)."""
        self.config = self._config.updated(changes)
        return self._config

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot list of the records, in arrival order (the records themselves are live)."""
        with self._cond:
            return list(self._records)

    @property
    def last_request(self) -> RequestRecord | None:
        """The most recent record, if any."""
        with self._cond:
            return self._records[-1] if self._records else None

    def reset(self, config: FakeConfig | None = None) -> None:
        """Forget the records, ``fail_times`` counters and the prompt cache; optionally install
        a new config."""
        self.prompt_cache.clear()
        with self._cond:
            self._records.clear()
            self._fault_counts.clear()
            if config is not None:
                self._config = config
            self._cond.notify_all()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` to pass as the SDK's ``base_url``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start serving in a daemon thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="fake-anthropic", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Anthropic server did not start")
        if self._startup_error is not None:
            raise RuntimeError("fake Anthropic server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close the listener and all open connections, and join the thread."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, self.host, self.port, limit=_MAX_HEAD)
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        log.info("fake Anthropic listening on %s", self.base_url)
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()

    # ---- waiting (sync and async) ---------------------------------------------------------

    def _wait_sync(self, check: Callable[[], tuple[bool, Any]], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                done, value = check()
                if done:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
                # bounded wait: the condition is notified on every change, this is a safety net
                self._cond.wait(min(remaining, 0.05))

    async def _wait_async(
        self, check: Callable[[], tuple[bool, Any]], seconds: float, what: str
    ) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            with self._cond:
                done, value = check()
            if done:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {seconds}s waiting for {what}")
            await asyncio.sleep(0.001)

    def _check_request(self, n: int) -> Callable[[], tuple[bool, Any]]:
        def check() -> tuple[bool, Any]:
            if len(self._records) >= n:
                return True, self._records[n - 1]
            return False, None

        return check

    @staticmethod
    def _check_delta(record: RequestRecord, k: int) -> Callable[[], tuple[bool, Any]]:
        def check() -> tuple[bool, Any]:
            if record.deltas_written >= k:
                return True, record.delta_times[k - 1]
            if record.finished:
                raise RuntimeError(
                    f"request {record.index} finished ({record.outcome}) after "
                    f"{record.deltas_written} deltas, never reached {k}"
                )
            return False, None

        return check

    @staticmethod
    def _check_disconnect(record: RequestRecord) -> Callable[[], tuple[bool, Any]]:
        def check() -> tuple[bool, Any]:
            if record.disconnected_at is not None:
                return True, record.disconnected_at
            if record.finished:
                raise RuntimeError(
                    f"request {record.index} finished ({record.outcome}) without a client "
                    "disconnect"
                )
            return False, None

        return check

    @staticmethod
    def _check_finish(record: RequestRecord) -> Callable[[], tuple[bool, Any]]:
        def check() -> tuple[bool, Any]:
            return record.finished, record

        return check

    def wait_for_request(self, n: int = 1, timeout: float = 5.0) -> RequestRecord:
        """Block until ``n`` requests have arrived; return the n-th (1-based) record."""
        return self._wait_sync(self._check_request(n), timeout, f"request #{n}")

    def wait_for_delta(self, record: RequestRecord, k: int = 1, timeout: float = 5.0) -> float:
        """Block until delta ``k`` (1-based) was written; return when it was."""
        return self._wait_sync(self._check_delta(record, k), timeout, f"delta #{k}")

    def wait_for_disconnect(self, record: RequestRecord, timeout: float = 5.0) -> float:
        """Block until the client hung up on ``record``; return ``disconnected_at``.

        Raises ``RuntimeError`` at once if the response finished without a disconnect.
        """
        return self._wait_sync(self._check_disconnect(record), timeout, "disconnect")

    def wait_for_finish(self, record: RequestRecord, timeout: float = 5.0) -> RequestRecord:
        """Block until the server is done with ``record`` (any outcome)."""
        return self._wait_sync(self._check_finish(record), timeout, "finish")

    # The async waiters take `timeout` like their sync twins (hence noqa ASYNC109): they poll
    # their own deadline every millisecond instead of blocking the caller's event loop.
    async def await_request(
        self,
        n: int = 1,
        timeout: float = 5.0,
    ) -> RequestRecord:
        """Async ``wait_for_request`` that does not block the caller's event loop."""
        return await self._wait_async(self._check_request(n), timeout, f"request #{n}")

    async def await_delta(
        self,
        record: RequestRecord,
        k: int = 1,
        timeout: float = 5.0,
    ) -> float:
        """Async ``wait_for_delta``."""
        return await self._wait_async(self._check_delta(record, k), timeout, f"delta #{k}")

    async def await_disconnect(
        self,
        record: RequestRecord,
        timeout: float = 5.0,
    ) -> float:
        """Async ``wait_for_disconnect``."""
        return await self._wait_async(self._check_disconnect(record), timeout, "disconnect")

    async def await_finish(
        self,
        record: RequestRecord,
        timeout: float = 5.0,
    ) -> RequestRecord:
        """Async ``wait_for_finish``."""
        return await self._wait_async(self._check_finish(record), timeout, "finish")

    # ---- request handling -----------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = _Connection(reader, writer, self._notify)
        try:
            await self._serve(conn)
        except _ClientGone:
            self._finish(conn.record, "client_disconnected")
        except asyncio.CancelledError:
            self._finish(conn.record, "server_stopped")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            self._finish(conn.record, "client_disconnected")
        except Exception:
            log.exception("fake Anthropic handler failed")
            self._finish(conn.record, "server_error")
        finally:
            conn.stop_watching()
            if not writer.transport.is_closing():
                writer.transport.abort()
            if task is not None:
                self._tasks.discard(task)

    def _finish(self, record: RequestRecord | None, outcome: str) -> None:
        if record is None or record.finished:
            return
        record.outcome = outcome
        record.finished_at = time.monotonic()
        log.debug("request %d finished: %s", record.index, outcome)
        self._notify()

    async def _serve(self, conn: _Connection) -> None:
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # connected and left without a request (e.g. a port probe)
        arrived = time.monotonic()
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        raw = b""
        if "content-length" in headers:
            raw = await conn.reader.readexactly(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            raw = await _read_chunked(conn.reader)
        url = urllib.parse.urlsplit(target)
        path = url.path

        if path.startswith("/_fake/"):
            await self._control(conn, method, path, urllib.parse.parse_qs(url.query), raw)
            return

        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, body_ok = raw.decode("utf-8", "replace"), False
        with self._cond:
            record = RequestRecord(
                index=len(self._records) + 1,
                method=method,
                path=path,
                body=body,
                headers=headers,
                started_at=arrived,
                request_id=_new_id("req"),
            )
            self._records.append(record)
            config = self._config
            self._cond.notify_all()
        conn.record = record
        log.debug("request %d: %s %s", record.index, method, path)

        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            await self._send_error(conn, 404, f"{method} {path} is not served by the fake")
            return
        if method != "POST":
            await self._send_error(conn, 405, f"{method} {path}: only POST is served")
            return
        if not body_ok or not isinstance(body, dict):
            await self._send_error(conn, 400, "request body is not a JSON object")
            return

        settings, directive_key = parse_directives(last_user_text(body))
        try:
            config = config.updated(settings) if settings else config
        except ValueError as exc:
            await self._send_error(conn, 400, f"bad [[fake:...]] directive: {exc}")
            return
        record.config = config.to_dict()
        record.stream = bool(body.get("stream"))
        record.input_tokens = count_input_tokens(body)

        key = headers.get("x-api-key")
        if key is None and headers.get("authorization", "").lower().startswith("bearer "):
            key = headers["authorization"][7:].strip()
        if config.required_key is not None and key != config.required_key:
            await self._send_error(conn, 401, "invalid x-api-key")
            return
        if is_rejected_model(config, body.get("model")):
            await self._send_error(conn, 404, f"model: {body['model']}")
            return
        if (problem := content_problem(body)) is not None:
            await self._send_error(conn, 400, problem)
            return

        if path == "/v1/messages/count_tokens":
            await self._send_json(conn, 200, {"input_tokens": record.input_tokens})
            self._finish(record, "completed")
            return

        fault = self._take_fault(config, directive_key)
        if fault is not None and (m := _STATUS_FAULT.match(fault)):
            await self._send_error(conn, int(m.group(1)), None)
            return

        if config.replay is not None:
            await self._serve_replay(conn, record, config, fault)
            return
        self._count_usage(record, config, body)
        conn.start_watching()
        if record.stream:
            await self._stream(conn, record, config, fault, body)
        else:
            await self._respond_whole(conn, record, config, fault, body)

    def _take_fault(self, config: FakeConfig, key: str) -> str | None:
        """The fault for this request, counting it against ``fail_times``."""
        if config.error is None:
            return None
        if config.fail_times is None:
            return config.error
        with self._cond:
            used = self._fault_counts.get(key, 0)
            if used >= config.fail_times:
                return None
            self._fault_counts[key] = used + 1
        return config.error

    def _count_usage(self, record: RequestRecord, config: FakeConfig, body: dict[str, Any]) -> None:
        """Fill the record's input usage: fixed cache numbers when configured, else what the
        simulated prompt cache makes of the request."""
        if config.cache_read is not None or config.cache_creation is not None:
            record.cache_read_input_tokens = config.cache_read or 0
            record.cache_creation_input_tokens = config.cache_creation or 0
            return
        usage = self.prompt_cache.use(body, config)
        record.input_tokens = usage.input_tokens
        record.cache_read_input_tokens = usage.cache_read_input_tokens
        record.cache_creation_input_tokens = usage.cache_creation_input_tokens

    def _reply(self, config: FakeConfig, body: dict[str, Any]) -> tuple[list[str], str]:
        text = config.text
        if config.echo:
            text = "Echo: " + strip_directives(last_user_text(body))
        chunks = plan_chunks(text, config.deltas)
        stop_reason = config.stop_reason
        if config.tool_use and stop_reason == "end_turn":
            stop_reason = "tool_use"
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and 0 <= max_tokens < len(chunks):
            chunks, stop_reason = chunks[:max_tokens], "max_tokens"
        return chunks, stop_reason

    async def _send_json(
        self,
        conn: _Connection,
        status: int,
        payload: Any,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        request_id = conn.record.request_id if conn.record and conn.record.request_id else "-"
        headers = _base_headers(request_id)
        headers.update(
            {"content-type": "application/json", "content-length": str(len(data))},
        )
        headers.update(extra_headers or {})
        if conn.record is not None:
            conn.record.status = status
        await conn.send(_head(status, headers) + data)
        if conn.record is not None and status == 200:
            conn.record.completed = True
        await conn.close()

    async def _send_error(self, conn: _Connection, status: int, message: str | None) -> None:
        request_id = conn.record.request_id if conn.record and conn.record.request_id else "-"
        extra: dict[str, str] = {}
        if status == 429 or status >= 500:
            # "retry-after: 0" alone makes the SDK fall back to ~0.5 s backoff; -ms wins
            extra = {"retry-after": "0", "retry-after-ms": "1"}
        log.debug("request %s: answering %d", request_id, status)
        await self._send_json(conn, status, _error_payload(status, message, request_id), extra)
        self._finish(conn.record, "status_error")

    async def _stream(
        self,
        conn: _Connection,
        record: RequestRecord,
        config: FakeConfig,
        fault: str | None,
        body: dict[str, Any],
    ) -> None:
        chunks, stop_reason = self._reply(config, body)
        steps, shown = thinking_plan(config, body)
        record.deltas_planned = len(chunks)
        record.message_id = _new_id("msg")
        out = _Events(conn, ping=config.ping)
        out.pending = self._stream_head(record)
        out.queue("message_start", self._message_start(record, body))

        if steps:
            await self._stream_thinking(out, record, config, steps, shown)
        if config.redacted_thinking:
            out.close_block(
                out.open_block({"type": "redacted_thinking", "data": REDACTED_THINKING_DATA})
            )
        text_index = out.open_block({"type": "text", "text": ""})
        await out.send()
        if not steps:
            await conn.pause(config.first_delay)

        fault_at = min(config.error_after, len(chunks)) if fault in MIDSTREAM_FAULTS else None
        for i in range(len(chunks) + 1):
            if (i > 0 or steps) and (i < len(chunks) or i == fault_at):
                await conn.pause(config.interval)
            if i == fault_at:
                await self._midstream_fault(conn, record, fault)
                return
            if i == len(chunks):
                break
            await out.delta(text_index, "text_delta", text=chunks[i])
            record.delta_times.append(time.monotonic())
            record.deltas_written += 1
            record.text_written += chunks[i]
            self._notify()
        out.close_block(text_index)

        if config.unknown_block:
            index = out.open_block({"type": "future_block", "data": ""})
            out.queue("content_block_delta", _delta(index, "future_delta", data="something new"))
            out.close_block(index)
        tool_tokens = 0
        if config.tool_use and stop_reason != "max_tokens":
            tool_tokens = await self._stream_tool_use(out, record, config)

        usage = {**record.input_usage(), "output_tokens": len(chunks) + steps + tool_tokens}
        out.queue(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
        out.queue("message_stop", {"type": "message_stop"})
        await out.send(b"0\r\n\r\n")
        record.completed = True
        self._finish(record, "completed")
        await conn.close()

    def _stream_head(self, record: RequestRecord) -> bytes:
        """The HTTP head of a 200 event stream."""
        record.status = 200
        headers = _base_headers(record.request_id or "-")
        headers.update(
            {
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "transfer-encoding": "chunked",
            }
        )
        return _head(200, headers)

    @staticmethod
    def _message_start(record: RequestRecord, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "message_start",
            "message": {
                "id": record.message_id,
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "claude-fake"),
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**record.input_usage(), "output_tokens": 1},
            },
        }

    async def _stream_thinking(
        self, out: _Events, record: RequestRecord, config: FakeConfig, steps: int, shown: bool
    ) -> None:
        """The thinking block: its start (with the ping) at once, then after ``first_delay``
        its paced deltas (none when not ``shown``), then the signature and its stop."""
        index = out.open_block({"type": "thinking", "thinking": "", "signature": ""})
        await out.send()
        await out.conn.pause(config.first_delay)
        for i, step in enumerate(thinking_steps(steps) if shown else []):
            if i > 0:
                await out.conn.pause(config.interval)
            await out.delta(index, "thinking_delta", thinking=step)
            record.thinking_written += step
        out.queue("content_block_delta", _delta(index, "signature_delta", signature=_new_id("sig")))
        out.close_block(index)

    async def _stream_tool_use(
        self, out: _Events, record: RequestRecord, config: FakeConfig
    ) -> int:
        """The tool_use block with its paced ``input_json_delta`` events; returns their count."""
        block = {"type": "tool_use", "id": _new_id("toolu"), "name": TOOL_NAME, "input": {}}
        index = out.open_block(block)
        await out.send()
        parts = tool_json_parts()
        for part in parts:
            await out.conn.pause(config.interval)
            await out.delta(index, "input_json_delta", partial_json=part)
            record.tool_json_written += part
        out.close_block(index)
        return len(parts)

    async def _serve_replay(
        self, conn: _Connection, record: RequestRecord, config: FakeConfig, fault: str | None
    ) -> None:
        if not record.stream:
            await self._send_error(conn, 400, "replay answers streaming requests only")
            return
        try:
            events = load_recording(self.recordings, config.replay or "")
        except (OSError, ValueError) as exc:
            await self._send_error(conn, 400, f"replay: {exc}")
            return
        conn.start_watching()
        await self._replay(conn, record, config, fault, events)

    async def _replay(
        self,
        conn: _Connection,
        record: RequestRecord,
        config: FakeConfig,
        fault: str | None,
        events: list[SseEvent],
    ) -> None:
        """Play a recording: each content delta after ``first_delay`` (the first) or
        ``interval`` (the others), every other event at once; a midstream fault comes instead
        of the first content delta after ``error_after`` text deltas, or of the message_delta."""
        record.deltas_planned = sum(1 for e in events if _delta_type(e) == "text_delta")
        out = _Events(conn, ping=False)
        out.pending = self._stream_head(record)
        fault_pending = fault in MIDSTREAM_FAULTS
        first = True
        for event in events:
            if event.event == "message_start":
                _record_recorded_start(record, event.data)
            is_delta = event.event == "content_block_delta"
            if is_delta or (fault_pending and event.event == "message_delta"):
                await out.send()
                await conn.pause(config.first_delay if first else config.interval)
                first = False
                if fault_pending and (not is_delta or record.deltas_written >= config.error_after):
                    await self._midstream_fault(conn, record, fault)
                    return
            if is_delta:
                await out.send(_chunk(event.wire))
                self._record_replayed_delta(record, event.data.get("delta") or {})
            else:
                out.pending += _chunk(event.wire)
        await out.send(b"0\r\n\r\n")
        record.completed = any(e.event == "message_stop" for e in events)
        self._finish(record, "completed" if record.completed else "error_event")
        await conn.close()

    def _record_replayed_delta(self, record: RequestRecord, delta: dict[str, Any]) -> None:
        """Count a replayed delta as the generated stream counts its own."""
        kind = delta.get("type")
        if kind == "text_delta":
            record.delta_times.append(time.monotonic())
            record.deltas_written += 1
            record.text_written += delta["text"]
            self._notify()
        elif kind == "thinking_delta":
            record.thinking_written += delta["thinking"]
        elif kind == "input_json_delta":
            record.tool_json_written += delta["partial_json"]

    async def _midstream_fault(
        self, conn: _Connection, record: RequestRecord, fault: str | None
    ) -> None:
        log.debug(
            "request %d: injecting %s after %d deltas", record.index, fault, record.deltas_written
        )
        if fault == "error_midstream":
            payload = _error_payload(529, "Overloaded", record.request_id or "-")
            await conn.send(_sse("error", payload) + b"0\r\n\r\n")
            self._finish(record, "error_event")
            await conn.close()
        elif fault == "drop_midstream":
            self._finish(record, "dropped")
            await conn.close()
        elif fault == "reset_midstream":
            self._finish(record, "reset")
            await conn.close(reset=True)
        elif fault == "stall":
            await conn.gone.wait()
            raise _ClientGone

    async def _respond_whole(
        self,
        conn: _Connection,
        record: RequestRecord,
        config: FakeConfig,
        fault: str | None,
        body: dict[str, Any],
    ) -> None:
        """Non-streaming ``messages.create``: same timing and faults, one JSON body."""
        chunks, stop_reason = self._reply(config, body)
        record.deltas_planned = len(chunks)
        record.message_id = _new_id("msg")
        await conn.pause(config.first_delay + config.interval * max(0, len(chunks) - 1))
        if fault == "error_midstream":
            await self._send_error(conn, 529, "Overloaded")
            return
        if fault in ("drop_midstream", "reset_midstream"):
            self._finish(record, "dropped" if fault == "drop_midstream" else "reset")
            await conn.close(reset=fault == "reset_midstream")
            return
        if fault == "stall":
            await conn.gone.wait()
            raise _ClientGone
        text = "".join(chunks)
        steps, shown = thinking_plan(config, body)
        content: list[dict[str, Any]] = []
        if steps:
            thinking = "".join(thinking_steps(steps)) if shown else ""
            record.thinking_written = thinking
            content.append({"type": "thinking", "thinking": thinking, "signature": _new_id("sig")})
        if config.redacted_thinking:
            content.append({"type": "redacted_thinking", "data": REDACTED_THINKING_DATA})
        content.append({"type": "text", "text": text})
        if config.unknown_block:
            content.append({"type": "future_block", "data": "something new"})
        tool_tokens = 0
        if config.tool_use and stop_reason != "max_tokens":
            record.tool_json_written = "".join(tool_json_parts())
            content.append(
                {"type": "tool_use", "id": _new_id("toolu"), "name": TOOL_NAME, "input": TOOL_INPUT}
            )
            tool_tokens = len(tool_json_parts())
        message = {
            "id": record.message_id,
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                **record.input_usage(),
                "output_tokens": len(chunks) + steps + tool_tokens,
            },
        }
        record.text_written = text
        await self._send_json(conn, 200, message)
        self._finish(record, "completed")

    # ---- control API ------------------------------------------------------------------------

    async def _control(
        self,
        conn: _Connection,
        method: str,
        path: str,
        query: dict[str, list[str]],
        raw: bytes,
    ) -> None:
        try:
            if method == "GET" and path == "/_fake/requests":
                n = int(query.get("min", ["0"])[0])
                want_finished = query.get("finished", ["0"])[0].lower() in _TRUE
                timeout = float(query.get("timeout", ["5"])[0])

                def check() -> tuple[bool, Any]:
                    done = len(self._records) >= n
                    if want_finished:
                        done = done and all(r.finished for r in self._records)
                    return done, None

                with contextlib.suppress(TimeoutError):
                    await self._wait_async(check, timeout, "requests")
                await self._send_json(conn, 200, [r.to_dict() for r in self.requests])
            elif method == "GET" and path == "/_fake/config":
                await self._send_json(conn, 200, self._config.to_dict())
            elif method == "POST" and path == "/_fake/config":
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("config body must be a JSON object")
                await self._send_json(conn, 200, self.update_config(**changes).to_dict())
            elif method == "POST" and path == "/_fake/reset":
                self.reset()
                await self._send_json(conn, 200, {"ok": True})
            elif method == "GET" and path == "/_fake/health":
                await self._send_json(conn, 200, {"ok": True, "now": time.monotonic()})
            else:
                await self._send_json(conn, 404, {"error": f"no control endpoint {method} {path}"})
        except (ValueError, TypeError) as exc:
            await self._send_json(conn, 400, {"error": str(exc)})


# --------------------------------------------------------------------------------------------
# Control client (for tests that run the fake in another process)
# --------------------------------------------------------------------------------------------


class FakeAnthropicControl:
    """Blocking client for a standalone fake's ``/_fake/*`` endpoints (wrap in
    ``asyncio.to_thread`` from async code)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # never route the fake through an HTTP proxy from the environment
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with self._opener.open(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def requests(
        self, min_count: int = 0, *, finished: bool = False, timeout: float = 5.0
    ) -> list[RequestRecord]:
        """All records. The server first waits (up to ``timeout``) until ``min_count`` exist
        and, with ``finished``, until all of them are finished. It returns what it has then."""
        query = f"?min={min_count}&finished={int(finished)}&timeout={timeout}"
        return [RequestRecord(**item) for item in self._call("GET", "/_fake/requests" + query)]

    def config(self) -> dict[str, Any]:
        """The server's current config."""
        return self._call("GET", "/_fake/config")

    def set_config(self, **changes: Any) -> dict[str, Any]:
        """Partially update the server's config; returns the new config."""
        return self._call("POST", "/_fake/config", changes)

    def reset(self) -> None:
        """Clear the server's records, ``fail_times`` counters and prompt cache."""
        self._call("POST", "/_fake/reset", {})

    def request_for(self, marker: str, *, timeout: float = 10.0, **until: Any) -> RequestRecord:
        """The record of the one request whose last message contains ``marker``.

        ``until`` waits (up to ``timeout``) for attributes to reach values, e.g.
        ``finished=True``. AssertionError if two requests carry the marker, or on time-out.
        """
        deadline = time.monotonic() + timeout
        while True:
            matches = [r for r in self.requests() if marker in last_message_text(r.body)]
            if len(matches) > 1:
                raise AssertionError(f"{len(matches)} upstream requests for {marker!r}")
            if matches and all(getattr(matches[0], k) == v for k, v in until.items()):
                return matches[0]
            if time.monotonic() >= deadline:
                seen = {k: getattr(matches[0], k) for k in until} if matches else "no request"
                raise AssertionError(f"no upstream request for {marker!r} with {until}: {seen}")
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Standalone entry point
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, after printing the ``listening on URL`` ready line."""
    parser = argparse.ArgumentParser(
        prog="python -m chat.testing.fake_anthropic",
        description="Fake Anthropic Messages API server.",
    )
    defaults = FakeConfig()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--interval", type=float, default=defaults.interval)
    parser.add_argument("--deltas", type=int, default=defaults.deltas)
    parser.add_argument("--first-delay", type=float, default=defaults.first_delay)
    parser.add_argument("--text", default=None)
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--error", default=None, help="fault to inject, e.g. status_529, stall")
    parser.add_argument("--error-after", type=int, default=defaults.error_after)
    parser.add_argument("--fail-times", type=int, default=None)
    parser.add_argument("--required-key", default=None)
    parser.add_argument("--no-ping", action="store_true")
    parser.add_argument(
        "--thinking",
        type=int,
        default=None,
        help="thinking steps before the text (default: as the request asks; 0: never)",
    )
    parser.add_argument(
        "--recordings",
        default=None,
        help=f"directory of <name>.sse recordings for replay (default: {DEFAULT_RECORDINGS})",
    )
    parser.add_argument("--replay", default=None, help="answer every stream with this recording")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(message)s"
    )
    config = FakeConfig(
        interval=args.interval,
        deltas=args.deltas,
        first_delay=args.first_delay,
        text=args.text,
        echo=args.echo,
        error=args.error,
        error_after=args.error_after,
        fail_times=args.fail_times,
        required_key=args.required_key,
        ping=not args.no_ping,
        thinking=args.thinking,
        replay=args.replay,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = FakeAnthropicServer(
        config, host=args.host, port=args.port, recordings=args.recordings
    ).start()
    # The one line the parent process reads (chat/testing/live.py): its address, at once.
    sys.stdout.write(f"listening on {server.base_url}\n")
    sys.stdout.flush()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
