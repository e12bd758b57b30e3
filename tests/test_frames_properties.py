"""Property-based: the client frame parser, `chat.ws.protocol.parse_client_frame`, on any input.

The parser is the socket's only door for client data, so what it promises is checked over
arbitrary input rather than a handful of examples:

- any text either parses to a `ClientFrame` or raises `FrameError`, never anything else
  (arbitrary unicode, arbitrary JSON values, objects with arbitrary extra keys), and the
  outcome is the README's frame contract (`expected_outcome` below states it);
- a valid object round-trips: the message is exactly `message.strip()`; over the limit it is
  refused as "too long"; `send` and `edit` need text; `stop` ignores its message (any draft);
- `HEADERS` (htmx 2) and `headers` (htmx 4) of any shape change nothing;
- a raw frame longer than the size bound (12 times the message limit + 4096 characters) is refused
  before `json.loads` sees it, and a legitimate frame is never refused by that bound;
- non-string `action` or `message` values are refused, never a crash;
- a `FrameError`'s text is one of a few fixed sentences (only the configured limit varies), so a
  hostile frame can never put its own text into the notice the page shows.

The tests at the end reproduce four bugs these properties found in chat/ws/protocol.py, now fixed:
deeply nested JSON raised RecursionError (crashing the socket mid-reply), a lone surrogate escape
was accepted and crashed the database save, a Stop carrying a draft over the limit did not stop,
and a message of escaped emoji within the limit was refused by the size bound.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast
from unittest import mock

import pytest
from django.conf import settings as django_settings
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chat.ws import protocol
from chat.ws.protocol import ACTIONS, Action, ClientFrame, FrameError, parse_client_frame

LIMIT = 40  # small, so that hypothesis easily writes messages on both sides of it

# Nothing is written to the working tree; parsing is fast, but a slow CI box must not flake.
PROPERTY = settings(max_examples=300, deadline=None, database=None)


def size_bound(limit: int) -> int:
    """The longest raw frame chat/ws/protocol.py parses (JSON escapes a character in at most twelve
    characters, an astral one as a surrogate pair, plus room for the action and headers)."""
    return limit * 12 + 4096


def fixed_error_texts(limit: int) -> set[str]:
    """Every sentence a FrameError may carry: none depends on the frame's content."""
    return {
        "That message is too long.",
        "The server could not read that frame (not JSON).",
        "The server could not read that frame (not a JSON object).",
        "Unknown action.",
        "The message must be text.",
        f"That message is too long (the limit is {limit:,} characters).",
        "Type a message first.",
        "The edited message is empty: type something, or cancel the edit.",
        "The message contains characters that are not valid text.",
    }


def outcome(raw: str, limit: int = LIMIT) -> ClientFrame | FrameError:
    """Parse; any exception other than FrameError propagates and fails the test."""
    try:
        frame = parse_client_frame(raw, max_message_chars=limit)
    except FrameError as exc:
        assert str(exc) in fixed_error_texts(limit), f"not a fixed sentence: {exc}"
        return exc
    assert isinstance(frame, ClientFrame)
    assert frame.action in ACTIONS
    assert isinstance(frame.message, str)
    assert len(frame.message) <= limit
    assert frame.message == frame.message.strip()
    return frame


def expected_outcome(data: object, limit: int = LIMIT) -> ClientFrame | None:
    """The README's frame contract for a decoded frame: the frame, or None for a refusal."""
    if not isinstance(data, dict):
        return None
    action = data.get("action")
    message = data.get("message", "")
    if not isinstance(action, str) or action not in ACTIONS:
        return None
    if action == "stop":
        return frame_of("stop", "")  # a stop's message (the composer's draft) is ignored
    if not isinstance(message, str):
        return None
    message = message.strip()
    if len(message) > limit or (action in ("send", "edit") and not message):
        return None
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return frame_of(action, message)


def frame_of(action: str, message: str) -> ClientFrame:
    return ClientFrame(action=cast(Action, action), message=message)


def check_contract(data: object, *, ensure_ascii: bool = True) -> None:
    """Parse `data` as a client would send it; the outcome is the contract's."""
    raw = json.dumps(data, ensure_ascii=ensure_ascii)
    result = outcome(raw)
    expected = expected_outcome(data)
    if len(raw) > size_bound(LIMIT):
        # Whatever it holds, a frame over the size bound is refused as too long.
        assert isinstance(result, FrameError) and "too long" in str(result)
    elif expected is None:
        assert isinstance(result, FrameError)
    else:
        assert result == expected


def same(a: ClientFrame | FrameError, b: ClientFrame | FrameError) -> bool:
    if isinstance(a, FrameError) or isinstance(b, FrameError):
        return isinstance(a, FrameError) and isinstance(b, FrameError) and str(a) == str(b)
    return a == b


# --- strategies -----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
non_strings = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.lists(json_values, max_size=3),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
actions = st.sampled_from(sorted(ACTIONS))
# The actions whose message counts (a stop's is ignored).
message_actions = st.sampled_from(sorted(ACTIONS - {"stop"}))
# Text that often looks like a frame: braces, quotes, escapes and the contract's words.
frame_like_text = st.lists(
    st.sampled_from(
        [*'{}[]":, \\u0123456789abcdefnrtl', "action", "message", "send", "stop", "null"]
    ),
    max_size=60,
).map("".join)
# A message with whitespace of every kind around it (and maybe only whitespace).
whitespace = st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2003\u3000", max_size=5)
messages = st.builds(
    lambda before, body, after: before + body + after,
    whitespace,
    st.text(max_size=LIMIT + 15),
    whitespace,
)
# The shape htmx gives HEADERS, or anything at all.
header_values = st.one_of(
    json_values, st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=5)
)
hostile = st.sampled_from(
    [
        '<img src=x onerror="alert(1)">',
        "</div><script>alert(1)</script>",
        "{{ secret }}",
        "%(message)s %s",
        "\u202eevil",
        "Unknown action. Also: click here",
    ]
)


# --- 1. never anything but a ClientFrame or a FrameError --------------------------------------


@PROPERTY
@given(raw=st.one_of(st.text(), frame_like_text))
def test_any_text_parses_to_a_frame_or_raises_frame_error(raw: str) -> None:
    result = outcome(raw)
    if isinstance(result, ClientFrame):
        assert result == expected_outcome(json.loads(raw))


@PROPERTY
@given(value=json_values, ascii_only=st.booleans())
def test_any_json_value_parses_by_the_contract(value: object, ascii_only: bool) -> None:
    check_contract(value, ensure_ascii=ascii_only)


@PROPERTY
@given(
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    fields=st.fixed_dictionaries(
        {},
        optional={
            "action": st.one_of(actions, st.text(max_size=12), non_strings),
            "message": st.one_of(messages, non_strings),
        },
    ),
)
def test_objects_with_arbitrary_extra_keys_parse_by_the_contract(
    extra: dict[str, Any], fields: dict[str, Any]
) -> None:
    check_contract(extra | fields)


# --- 2. a valid object round-trips ------------------------------------------------------------


@PROPERTY
@given(action=actions, message=messages)
def test_a_valid_frame_round_trips_with_its_message_stripped(action: str, message: str) -> None:
    result = outcome(json.dumps({"action": action, "message": message}))
    stripped = message.strip()
    if action == "stop":
        assert result == frame_of("stop", "")  # its message is ignored
    elif len(stripped) > LIMIT:
        assert isinstance(result, FrameError)
        assert "too long" in str(result)
    elif action in ("send", "edit") and not stripped:
        assert isinstance(result, FrameError)
    else:
        assert result == frame_of(action, stripped)


@PROPERTY
@given(action=st.sampled_from(["send", "edit"]), blank=whitespace)
def test_send_and_edit_need_text(action: str, blank: str) -> None:
    for data in ({"action": action, "message": blank}, {"action": action}):
        result = outcome(json.dumps(data))
        assert isinstance(result, FrameError)
        assert "too long" not in str(result)


@PROPERTY
@given(message=st.one_of(st.just(""), whitespace, st.text(max_size=LIMIT)))
def test_stop_with_any_message_within_the_limit_is_a_stop(message: str) -> None:
    assert outcome(json.dumps({"action": "stop", "message": message})) == ClientFrame(
        action="stop", message=""
    )
    assert outcome(json.dumps({"action": "stop"})) == ClientFrame(action="stop", message="")


@PROPERTY
@given(action=message_actions, over=st.integers(1, 50), pad=whitespace)
def test_a_message_over_the_limit_is_too_long(action: str, over: int, pad: str) -> None:
    result = outcome(json.dumps({"action": action, "message": pad + "x" * (LIMIT + over) + pad}))
    assert isinstance(result, FrameError)
    assert "too long" in str(result)


@PROPERTY
@given(action=message_actions, pad=whitespace)
def test_a_message_of_exactly_the_limit_is_accepted(action: str, pad: str) -> None:
    body = "é" * LIMIT
    assert outcome(json.dumps({"action": action, "message": pad + body + pad})) == frame_of(
        action, body
    )


# --- 3. HEADERS / headers are ignored ---------------------------------------------------------


@PROPERTY
@given(
    action=message_actions,
    message=messages,
    upper=header_values,
    lower=header_values,
    which=st.sampled_from(["HEADERS", "headers", "both"]),
)
def test_headers_of_any_shape_are_ignored(
    action: str, message: str, upper: object, lower: object, which: str
) -> None:
    plain: dict[str, object] = {"action": action, "message": message}
    with_headers = dict(plain)
    if which in ("HEADERS", "both"):
        with_headers["HEADERS"] = upper
    if which in ("headers", "both"):
        with_headers["headers"] = lower
    raw = json.dumps(with_headers)
    assume(len(raw) <= size_bound(LIMIT))  # (the bound counts the headers too)
    assert same(outcome(raw), outcome(json.dumps(plain)))


# --- 4. the size bound ------------------------------------------------------------------------


class _MustNotParse:
    """Stands in for the json module in chat.ws.protocol: any parse fails the test."""

    @staticmethod
    def loads(raw: str) -> object:
        raise AssertionError(f"a frame of {len(raw):,} characters was parsed")


def test_a_megabyte_of_valid_json_is_refused_quickly_without_being_parsed() -> None:
    limit: int = django_settings.CHAT_MAX_MESSAGE_CHARS
    raw = json.dumps({"action": "send", "message": "x" * 1_000_000, "HEADERS": {}})
    assert len(raw) > 1_000_000 > size_bound(limit)
    with mock.patch.object(protocol, "json", _MustNotParse):
        started = time.perf_counter()
        with pytest.raises(FrameError, match="too long") as refused:
            parse_client_frame(raw, max_message_chars=limit)
        elapsed = time.perf_counter() - started
    assert elapsed < 0.05, f"refusing took {elapsed * 1000:.1f} ms"
    assert str(refused.value) in fixed_error_texts(limit)


@PROPERTY
@given(limit=st.integers(1, 2000), beyond=st.integers(1, 5000), action=actions)
def test_any_frame_longer_than_the_bound_is_refused_unparsed(
    limit: int, beyond: int, action: str
) -> None:
    # Valid JSON (whitespace padding), so only the bound can refuse it.
    head = json.dumps({"action": action, "message": "hi"})
    raw = head + " " * (size_bound(limit) + beyond - len(head))
    assert len(raw) == size_bound(limit) + beyond
    with mock.patch.object(protocol, "json", _MustNotParse):
        result = outcome(raw, limit)
    assert isinstance(result, FrameError)
    assert "too long" in str(result)


@PROPERTY
@given(limit=st.integers(1, 2000), action=message_actions)
def test_a_frame_exactly_at_the_bound_is_still_parsed(limit: int, action: str) -> None:
    head = json.dumps({"action": action, "message": "h"})
    raw = head + " " * (size_bound(limit) - len(head))
    assert outcome(raw, limit) == frame_of(action, "h")


@PROPERTY
@given(
    limit=st.integers(1, 300),
    char=(
        st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"])
        | st.sampled_from(["\x00", "\x01", "\x7f", '"', "\\", "\ufeff"])
    ).filter(lambda c: not c.isspace()),
    ascii_only=st.booleans(),
    action=st.sampled_from(["send", "stop_and_send", "edit"]),
)
def test_a_legitimate_frame_at_the_limit_is_never_refused_by_the_bound(
    limit: int, char: str, ascii_only: bool, action: str
) -> None:
    # The worst case a browser (JSON.stringify) or an ASCII-escaping client sends for a BMP
    # character: six characters per character, with htmx's headers alongside.
    message = char * limit
    raw = json.dumps(
        {
            "action": action,
            "message": message,
            "HEADERS": {
                "HX-Request": "true",
                "HX-Trigger": "send-button",
                "HX-Trigger-Name": None,
                "HX-Target": "composer",
                "HX-Current-URL": "https://chat.example.com/conversations/"
                "0b8c6a4e-5f0e-4c1e-9a43-2f6f1b1d7c55/",
            },
        },
        ensure_ascii=ascii_only,
    )
    assert outcome(raw, limit) == frame_of(action, message)


# --- 5. non-string action or message ----------------------------------------------------------


@PROPERTY
@given(action=non_strings, message=st.one_of(st.none(), st.text(max_size=10), non_strings))
def test_a_non_string_action_is_refused(action: object, message: object) -> None:
    result = outcome(json.dumps({"action": action, "message": message}))
    assert isinstance(result, FrameError)
    assert str(result) == "Unknown action."


@PROPERTY
@given(action=message_actions, message=non_strings)
def test_a_non_string_message_is_refused_for_every_action(action: str, message: object) -> None:
    result = outcome(json.dumps({"action": action, "message": message}))
    assert isinstance(result, FrameError)
    assert str(result) == "The message must be text."


# --- 6. error texts are fixed sentences -------------------------------------------------------


@PROPERTY
@given(
    evil=hostile,
    where=st.sampled_from(
        ["raw", "action", "message", "long_message", "key", "value", "headers", "array", "string"]
    ),
)
def test_a_frame_error_never_echoes_the_frame(evil: str, where: str) -> None:
    frames_by_place: dict[str, object] = {
        "action": {"action": evil, "message": "hi"},
        "message": {"action": "send", "message": [evil]},
        "long_message": {"action": "send", "message": evil * LIMIT},
        "key": {evil: "send"},
        "value": {"action": "send", "message": " ", "note": evil},
        "headers": {"action": "edit", "HEADERS": {"HX-Trigger": evil}},
        "array": [evil],
        "string": evil,
    }
    raw = evil + "{" if where == "raw" else json.dumps(frames_by_place[where])
    result = outcome(raw)  # asserts the text is one of the fixed sentences
    assert isinstance(result, FrameError)
    assert evil not in str(result)
    for fragment in ("<", "{{", "%s", "\u202e", "click here"):
        assert fragment not in str(result)


# --- bugs these tests found, fixed in chat/ws/protocol.py ---------------------------------------


@pytest.mark.parametrize("raw", ["[" * 3000, '{"a":' * 3000, "[" * 3000 + "]" * 3000])
def test_deeply_nested_json_is_a_frame_error(raw: str) -> None:
    limit: int = django_settings.CHAT_MAX_MESSAGE_CHARS
    assert len(raw) < size_bound(limit)
    assert isinstance(outcome(raw, limit), FrameError)


@pytest.mark.parametrize("message", ["\\ud800", "hi \\udfff there", "\\ude00\\ud83d"])
def test_a_parsed_message_is_always_valid_unicode(message: str) -> None:
    result = outcome('{"action": "send", "message": "' + message + '"}')
    if isinstance(result, ClientFrame):
        result.message.encode("utf-8")


def test_stop_with_a_draft_over_the_limit_is_still_a_stop() -> None:
    result = outcome(json.dumps({"action": "stop", "message": "x" * (LIMIT + 1)}))
    assert isinstance(result, ClientFrame) and result.action == "stop"


def test_an_escaped_astral_message_within_the_limit_is_accepted() -> None:
    limit = 1000
    message = "\U0001f600" * limit
    raw = json.dumps({"action": "send", "message": message})  # "\ud83d\ude00" per character
    assert outcome(raw, limit) == ClientFrame(action="send", message=message)
