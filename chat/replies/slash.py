"""Composer commands: a message that is exactly one of these is done, not sent.

Anything else starting with a slash is ordinary text (people write paths and fractions).
"""

from __future__ import annotations

from typing import Literal

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

Command = Literal["/stop", "/new", "/help"]

#: Each command and what it does, as /help lists them.
COMMANDS: dict[Command, str | Promise] = {
    "/stop": _("stop the reply that is streaming (the same as Stop or Esc)"),
    "/new": _("start a new conversation"),
    "/help": _("list these commands"),
}


def command_of(text: str) -> Command | None:
    """The command `text` is, or None. Case and surrounding spaces do not matter."""
    word = text.strip().lower()
    for command in COMMANDS:
        if word == command:
            return command
    return None
