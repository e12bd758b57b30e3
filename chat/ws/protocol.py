"""The client → server WebSocket frame contract, parsed and validated in one place.

htmx's ws-send sends the form's values as one JSON object plus a `HEADERS` object (htmx 4
spells it `headers`); both are ignored here.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Literal, cast

from django.utils.translation import gettext as _

from chat.files.checks import AttachmentRefused, clean_ids
from chat.replies.inputs import InvalidMessage, clean_message

Action = Literal["send", "stop", "stop_and_send", "regenerate", "edit", "continue"]
ACTIONS: frozenset[str] = frozenset(
    {"send", "stop", "stop_and_send", "regenerate", "edit", "continue"}
)


class FrameError(InvalidMessage):
    """A frame the server will not act on; the message is shown to the user as is."""


@dataclass(frozen=True, slots=True)
class ClientFrame:
    action: Action
    message: str
    attachments: tuple[uuid.UUID, ...] = ()
    """Uploads sent with a new message (send, stop_and_send), in order."""


#: Characters of JSON per character of message, at worst: an astral character escaped by a
#: client that escapes non-ASCII (as Python's json.dumps does) is a surrogate pair, twelve.
_JSON_CHARS_PER_CHAR = 12


def parse_client_frame(raw: str, *, max_message_chars: int) -> ClientFrame:
    # Refuse an oversized frame before parsing it (a 1 MB frame is never parsed).
    if len(raw) > max_message_chars * _JSON_CHARS_PER_CHAR + 4096:
        raise FrameError(_("That message is too long."))
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a few thousand nested brackets
        raise FrameError(_("The server could not read that frame (not JSON).")) from None
    if not isinstance(data, dict):
        raise FrameError(_("The server could not read that frame (not a JSON object)."))
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise FrameError(_("Unknown action."))
    if action == "stop":
        # A stop's message is ignored: htmx sends the composer's draft with every Stop, and no
        # draft (too long, not text, anything) may keep a Stop from stopping.
        return ClientFrame(action="stop", message="")
    try:
        message = clean_message(data.get("message", ""), max_chars=max_message_chars)
        attachments: list[uuid.UUID] = []
        if action in ("send", "stop_and_send"):
            attachments = clean_ids(data.get("attachments"))
    except (InvalidMessage, AttachmentRefused) as exc:
        raise FrameError(str(exc)) from None
    if action == "send" and not message and not attachments:
        raise FrameError(_("Type a message first."))
    if action == "edit" and not message:
        raise FrameError(_("The edited message is empty: type something, or cancel the edit."))
    return ClientFrame(action=cast(Action, action), message=message, attachments=tuple(attachments))


class FrameBudget:
    """A token bucket for one socket's frames: `burst` at once, then `per_second`.

    Per socket (an attribute of its consumer), so nothing is shared between connections.
    """

    def __init__(self, *, burst: int, per_second: float) -> None:
        self._burst = float(burst)
        self._rate = per_second
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        """Spend one frame's worth; False when the socket is over its budget."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
