"""The client → server WebSocket frame contract, parsed and validated in one place.

htmx's ws-send sends the form's values as one JSON object plus a `HEADERS` object (htmx 4
spells it `headers`); both are ignored here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, cast

Action = Literal["send", "stop", "stop_and_send", "regenerate", "edit", "continue"]
ACTIONS: frozenset[str] = frozenset(
    {"send", "stop", "stop_and_send", "regenerate", "edit", "continue"}
)


class FrameError(ValueError):
    """A frame the server will not act on; the message is shown to the user as is."""


@dataclass(frozen=True, slots=True)
class ClientFrame:
    action: Action
    message: str


def parse_client_frame(raw: str, *, max_message_chars: int) -> ClientFrame:
    # Refuse an oversized frame before parsing it: JSON escapes at most sextuple a character.
    if len(raw) > max_message_chars * 6 + 4096:
        raise FrameError("That message is too long.")
    try:
        data = json.loads(raw)
    except ValueError:
        raise FrameError("The server could not read that frame (not JSON).") from None
    if not isinstance(data, dict):
        raise FrameError("The server could not read that frame (not a JSON object).")
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise FrameError("Unknown action.")
    message = data.get("message", "")
    if not isinstance(message, str):
        raise FrameError("The message must be text.")
    message = message.strip()
    if len(message) > max_message_chars:
        raise FrameError(
            f"That message is too long (the limit is {max_message_chars:,} characters)."
        )
    if action == "send" and not message:
        raise FrameError("Type a message first.")
    if action == "edit" and not message:
        raise FrameError("The edited message is empty: type something, or cancel the edit.")
    return ClientFrame(action=cast(Action, action), message=message)
