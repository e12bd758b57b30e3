"""A user's message, as every door (a socket frame, the API, the terminal) accepts it."""

from __future__ import annotations

from django.utils.formats import number_format
from django.utils.translation import gettext as _


class InvalidMessage(ValueError):
    """Input the server will not act on; the message is shown to the user as is."""


def clean_message(value: object, *, max_chars: int) -> str:
    """A user's message as sent by any door (a frame, the API): text, stripped, within the
    limit, and storable. Raises InvalidMessage saying what is wrong."""
    if not isinstance(value, str):
        raise InvalidMessage(_("The message must be text."))
    message = value.strip()
    if len(message) > max_chars:
        raise InvalidMessage(
            _("That message is too long (the limit is %(limit)s characters).")
            % {"limit": number_format(max_chars, force_grouping=True)}
        )
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a JSON escape such as \ud800): not text
        raise InvalidMessage(
            _("The message contains characters that are not valid text.")
        ) from None
    return message
