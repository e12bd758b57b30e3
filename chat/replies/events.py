"""What a reply tells its doors, and the shapes of the channel-layer events between processes.

`ReplyEvent`s are handed in-process to every door that watches a reply (a socket, an API
stream, the terminal chat). The `TypedDict`s are the channel-layer messages: every cross-process
event is one of these, and only `chat/replies/layer.py` sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

from chat.data.pricing import ConversationUsage
from chat.models import Message

TurnKind = Literal["send", "regenerate", "edit", "continue"]


@dataclass(frozen=True, slots=True)
class TurnStarted:
    user_message: Message | None
    """The new (send) or edited (edit) user message; None when only the reply is new."""
    assistant_message: Message
    title: str = ""
    """The conversation's title (set from the first message), for the page's heading."""
    kind: TurnKind = "send"
    removed: tuple[int, ...] = ()
    """Messages the turn replaced (the old reply of a regenerate or an edit)."""
    trimmed: int = 0
    """The oldest turns left out of the request to fit the model's context window."""


@dataclass(frozen=True, slots=True)
class TextBatch:
    """What arrived in one batching window: answer text, thinking, or both."""

    message_id: int
    text: str
    thinking: str = ""


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    message: Message
    usage: ConversationUsage | None = None
    """The conversation's token usage and cost, counting this reply."""


@dataclass(frozen=True, slots=True)
class TitleChanged:
    """The model named the conversation after its first exchange (chat/replies/titles.py)."""

    conversation_id: str
    title: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A streaming reply as it stands, for a page that starts watching it mid-reply."""

    message: Message
    text: str
    thinking: str = ""


ReplyEvent = TurnStarted | TextBatch | ReplyFinished | TitleChanged | Snapshot


# --- channel-layer events ----------------------------------------------------------------------


class FragmentEvent(TypedDict):
    """HTML for the pages of a conversation (its group), or for one page (a snapshot)."""

    type: Literal["chat.fragment"]
    html: str
    origin: str
    """The process that published it (registry.ORIGIN): its own pages got it directly."""
    reply: int
    """The reply it belongs to."""
    part: Literal["turn", "batch", "final", "snapshot", "title"]
    reply_channel: str
    """The reply's own address (watch it, stop it there)."""


class StopEvent(TypedDict):
    """Sent to a reply's own address by `stops.request_stop`."""

    type: Literal["chat.stop"]
    message_id: int
    reason: str
    reply_channel: str
    """Where to send the `StopAnswer`."""


class StopAnswer(TypedDict):
    type: Literal["stop.answer"]
    message_id: int
    outcome: Literal["stopped", "finished"]
    chars: int | None


class WatchEvent(TypedDict):
    """A page on another process watches the reply (sent again every CHAT_WATCH_RENEW s)."""

    type: Literal["reply.watch", "reply.unwatch"]
    message_id: int
    watcher: str
    """The watching socket's channel: where a snapshot is sent."""


class GoneEvent(TypedDict):
    """The conversation was deleted (chat/web/conversations.py)."""

    type: Literal["chat.gone"]
