"""What one page has of its conversation's replies streaming on other processes.

A reply streaming in this process shows itself to the page directly (chat/replies/audience.py).
One streaming on another process reaches the page through the conversation's group: the page
*follows* it by telling the reply's own address that it watches (again every
CHAT_WATCH_RENEW s, so that it counts as long as the page is open and no longer once its
process is gone), and the reply answers with a snapshot of its text so far, then sends its
batches to the group. Until the snapshot arrives the page drops that reply's batches (the
snapshot holds them); a turn the page already has (sent by its catch-up) is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from django.conf import settings

from chat.replies import layer
from chat.replies.events import FragmentEvent, WatchEvent

logger = logging.getLogger(__name__)


class PageSync:
    def __init__(self, page_channel: str) -> None:
        self._page = page_channel
        self.caught_up_to = 0
        """The newest message id the page was sent by its catch-up (0: none)."""
        self._awaiting_snapshot = 0
        self._following: tuple[int, str] | None = None  # (reply id, its address)
        self._renewer: asyncio.Task[None] | None = None

    def follow(self, reply_id: int, reply_channel: str) -> None:
        """Watch a reply of another process; its batches are dropped until its snapshot."""
        self.unfollow()
        self._awaiting_snapshot = reply_id
        self._following = (reply_id, reply_channel)
        self._renewer = asyncio.create_task(self._renew(reply_id, reply_channel))

    def unfollow(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        self._renewer = None
        self._following = None

    def accept(self, event: FragmentEvent) -> bool:
        """Whether the page is to be shown this group event (from another process)."""
        part, reply_id = event["part"], event["reply"]
        if part == "turn":
            if reply_id <= self.caught_up_to:
                return False  # that turn is already on the page (sent by its catch-up)
            if event["reply_channel"]:
                self.follow(reply_id, event["reply_channel"])
            return True
        if self._awaiting_snapshot == reply_id:
            if part == "batch":
                return False  # the snapshot on its way holds this text
            if part in ("snapshot", "final"):
                self._awaiting_snapshot = 0
        if part == "final" and self._following is not None and self._following[0] == reply_id:
            self.unfollow()
        return True

    async def leave(self) -> None:
        """The page is closing: the reply it follows no longer counts it (at once, not when its
        renewals run out)."""
        following = self._following
        self.unfollow()
        if following is not None:
            with contextlib.suppress(layer.LayerUnavailable):
                await layer.send(following[1], self._watch_event("reply.unwatch", following[0]))

    async def _renew(self, reply_id: int, reply_channel: str) -> None:
        while True:
            try:
                await layer.send(reply_channel, self._watch_event("reply.watch", reply_id))
            except layer.LayerUnavailable:
                logger.debug("reply %s: could not renew a watch (Redis unreachable)", reply_id)
            await asyncio.sleep(settings.CHAT_WATCH_RENEW)

    def _watch_event(self, kind: str, reply_id: int) -> WatchEvent:
        return {"type": kind, "message_id": reply_id, "watcher": self._page}  # type: ignore[typeddict-item]
