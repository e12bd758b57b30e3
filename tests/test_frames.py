"""The client frame parser."""

from __future__ import annotations

import json

import pytest

from chat.ws.protocol import ClientFrame, FrameError, parse_client_frame

LIMIT = 100


def parse(data: object) -> ClientFrame:
    return parse_client_frame(json.dumps(data), max_message_chars=LIMIT)


def test_htmx_frame_with_headers_is_accepted() -> None:
    frame = parse({"action": "send", "message": " hi \n", "HEADERS": {"HX-Request": "true"}})
    assert frame == ClientFrame(action="send", message="hi")


def test_htmx_4_lowercase_headers_are_ignored_too() -> None:
    assert parse({"action": "stop", "headers": {"x": "y"}}) == ClientFrame("stop", "")


def test_stop_and_send_may_be_empty() -> None:
    assert parse({"action": "stop_and_send", "message": ""}) == ClientFrame("stop_and_send", "")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "nope",
        "[]",
        "null",
        '"send"',
        '{"message": "hi"}',
        '{"action": 1}',
        '{"action": "send"}',
    ],
)
def test_malformed_frames_raise_a_frame_error(raw: str) -> None:
    with pytest.raises(FrameError):
        parse_client_frame(raw, max_message_chars=LIMIT)


def test_message_over_the_limit_is_refused() -> None:
    with pytest.raises(FrameError, match="too long"):
        parse({"action": "send", "message": "x" * (LIMIT + 1)})


def test_huge_frame_is_refused_before_parsing() -> None:
    with pytest.raises(FrameError, match="too long"):
        parse_client_frame("[" * 1_000_000, max_message_chars=LIMIT)
