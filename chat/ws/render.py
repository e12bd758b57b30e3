"""Server → browser frames: HTML fragments that htmx swaps out of band, by id.

Every byte comes from templates/chat/frames.html (autoescaped); this module only picks the
partial and its context.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING

from django.template.loader import get_template, render_to_string
from django.utils.translation import gettext

from chat.models import Message
from chat.replies.events import (
    ReplyEvent,
    ReplyFinished,
    Snapshot,
    TextBatch,
    TitleChanged,
    TurnStarted,
)
from chat.replies.slash import COMMANDS

if TYPE_CHECKING:
    from django.template.backends.base import _EngineTemplate

FRAMES = "chat/frames.html"


def for_event(event: ReplyEvent, *, for_owner: bool = True) -> str:
    """The frame for one reply event. Other tabs get the same, except that starting a turn
    does not empty their composer (they may hold a draft of their own)."""
    if isinstance(event, TitleChanged):
        return render_to_string(f"{FRAMES}#title_changed", {"title": event.title})
    if isinstance(event, Snapshot):
        return snapshot(event.message, event.text, event.thinking)
    if isinstance(event, TextBatch):
        # The most frequent frame: its compiled template is kept (a third less time a batch).
        # (The id as text: a number would be localised on every render.)
        return _partial("text_batch").render(
            {"message_id": str(event.message_id), "text": event.text, "thinking": event.thinking}
        )
    if isinstance(event, TurnStarted):
        return render_to_string(
            f"{FRAMES}#turn_started",
            {
                "user_message": event.user_message,
                "assistant_message": event.assistant_message,
                "title": event.title,
                "kind": event.kind,
                "removed": event.removed,
                "trimmed": event.trimmed,
                # Only a new message empties the composer; an edit is made in its own box.
                "clear_composer": for_owner and event.kind == "send",
            },
        )
    if isinstance(event, ReplyFinished):
        return render_to_string(
            f"{FRAMES}#reply_finished", {"message": event.message, "usage": event.usage}
        )
    raise TypeError(f"no fragment for {event!r}")


@functools.cache
def _partial(name: str) -> _EngineTemplate:
    return get_template(f"{FRAMES}#{name}")


def notice(text: str, *, level: str = "info") -> str:
    """A short message for the user in the page's notice area (errors included)."""
    return render_to_string(f"{FRAMES}#notice", {"text": text, "level": level})


def command_accepted(sent: str) -> str:
    """A composer command was taken: the page takes it out of its composer (and keeps what was
    typed since), and the notice is cleared."""
    return render_to_string(f"{FRAMES}#command_accepted", {"sent": sent})


def help_text() -> str:
    """What /help says (plain text for the notice)."""
    listed = "; ".join(f"{name}: {what}" for name, what in COMMANDS.items())
    return gettext("Commands: %(commands)s.") % {"commands": listed}


def navigate() -> str:
    """Send the page to a new conversation's composer (chat.js follows the link): the
    conversation is made by its first message there."""
    return render_to_string(f"{FRAMES}#navigate")


def gone() -> str:
    """The conversation was deleted while this page was open."""
    return render_to_string(f"{FRAMES}#gone")


def catch_up(messages: list[Message]) -> str:
    """The message list (its newest page), for a page rendered before some of it happened."""
    streaming = any(m.status == Message.Status.STREAMING for m in messages)
    return render_to_string(f"{FRAMES}#catch_up", {"messages": messages, "streaming": streaming})


def snapshot(message: Message, text: str, thinking: str = "") -> str:
    """A streaming reply as it stands, for a tab that joins mid-reply."""
    shown = copy.copy(message)
    shown.content = text
    shown.thinking = thinking
    return render_to_string(f"{FRAMES}#snapshot", {"message": shown})
