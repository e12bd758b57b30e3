"""A conversation's title, asked of the model once its first exchange has ended.

Until then (and for good with the demo provider, or if the request fails) the title is the
first words of the first message (chat/services.py). The request is small and capped in time;
a failure is logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re

from django.conf import settings

from chat.providers import Provider, ProviderError

logger = logging.getLogger(__name__)

SYSTEM = (
    "You name chat conversations. Reply with a title of at most six words that says what the "
    "conversation is about. No quotes, no final full stop, nothing else."
)
MAX_CHARS = 80
_QUOTES = "\"'`*_\u201c\u201d\u2018\u2019"
_EXCERPT = 1500


def _prompt(user_text: str, reply: str) -> str:
    return (
        f"The user wrote:\n{user_text[:_EXCERPT]}\n\n"
        f"The assistant answered:\n{reply[:_EXCERPT]}\n\nTitle:"
    )


def clean(raw: str) -> str:
    """The model's answer as a title: its first line, without quotes, markup or full stop."""
    line = next((ln for ln in raw.splitlines() if ln.strip()), "")
    line = re.sub(r"^(?:#+\s*)?(?:title\s*:\s*)?", "", line.strip(), flags=re.IGNORECASE)
    line = " ".join(line.strip().strip(_QUOTES).split()).rstrip(".")
    if len(line) > MAX_CHARS:
        line = line[:MAX_CHARS].rsplit(" ", 1)[0] + "…"
    return line


async def suggest(provider: Provider, *, user_text: str, reply: str) -> str:
    """A short title for a conversation that began with this exchange; "" to keep the old one."""
    if not settings.CHAT_AUTO_TITLE:
        return ""
    try:
        async with asyncio.timeout(settings.CHAT_TITLE_TIMEOUT):
            raw = await provider.complete(
                model=settings.CHAT_TITLE_MODEL,
                system=SYSTEM,
                prompt=_prompt(user_text, reply),
                max_tokens=30,
            )
    except (ProviderError, TimeoutError) as exc:
        logger.warning("no title from the model: %s", exc or "timed out")
        return ""
    return clean(raw)
