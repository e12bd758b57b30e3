"""Whether this process takes one more reply.

A process that cannot relay more replies in time must not take them: a new turn is refused,
before anything is saved, when this process already streams CHAT_MAX_REPLIES_PER_PROCESS
replies, or when its event loop lags more than CHAT_MAX_LOOP_LAG seconds (the mean over the last
second, chat/replies/loop_lag.py). The user is told to try again in a moment; the text stays
where it was typed. Stops never come here: they are never refused, and never wait for a turn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.conf import settings
from django.utils.translation import gettext_lazy

from chat.data.services import TurnRefused
from chat.replies import loop_lag, process_metrics
from chat.replies.registry import registry

BUSY = gettext_lazy("This server is busy: try again in a moment.")
#: Seconds a refused caller is told to wait (the API's Retry-After).
RETRY_AFTER = 2


#: Turns admitted and still being saved (not yet in the registry), in this process.
_starting = 0


class ServerBusy(TurnRefused):
    """This process has no room for another reply now; nothing was saved."""

    def __init__(self, reason: str) -> None:
        super().__init__(str(BUSY))
        self.reason = reason
        """`replies` (at CHAT_MAX_REPLIES_PER_PROCESS) or `loop_lag` (over CHAT_MAX_LOOP_LAG)."""
        self.retry_after = RETRY_AFTER
        """Seconds to wait before trying again (the API's Retry-After header)."""


@contextlib.contextmanager
def admitted() -> Iterator[None]:
    """Hold a place for one more reply while its turn is saved and registered; raise ServerBusy
    (and count it) when this process should not start another. Turns still being saved count:
    a burst of messages at once must not all pass before the first is registered."""
    global _starting
    limit: int = settings.CHAT_MAX_REPLIES_PER_PROCESS
    if limit and registry.live() + _starting >= limit:
        _refuse("replies")
    max_lag: float = settings.CHAT_MAX_LOOP_LAG
    if max_lag and loop_lag.ensure_running().lag() > max_lag:
        _refuse("loop_lag")
    _starting += 1
    try:
        yield
    finally:
        _starting -= 1


def _refuse(reason: str) -> None:
    process_metrics.TURNS_REFUSED.labels(reason=reason).inc()
    raise ServerBusy(reason)
