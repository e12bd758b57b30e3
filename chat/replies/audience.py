"""Who watches one reply, how its events reach them, and the grace when nobody does.

A reply's audience is, across every process:

- *holders*: doors that started the turn and read its events in-process (an API stream, the
  terminal chat). A holder that leaves stops the reply at once: that is an explicit stop.
- *local watchers*: pages (sockets) of this process showing the conversation, kept by the
  registry. Events are handed to them directly.
- *remote watchers*: pages of other processes. They announce themselves at the reply's own
  address and renew every CHAT_WATCH_RENEW s; one not renewed within three renewals (its
  process died) no longer counts. They get a snapshot of the text so far when they arrive,
  then the reply's batches through the conversation's group.

When nobody is left, the reply goes on for CHAT_DISCONNECT_GRACE seconds; a watcher back in
time keeps it going, otherwise it is stopped as `interrupted` / `disconnect` (0: at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings

from chat.models import Message
from chat.replies import layer
from chat.replies.events import (
    FragmentEvent,
    ReplyEvent,
    ReplyFinished,
    TextBatch,
    TitleChanged,
    TurnStarted,
)
from chat.replies.registry import ORIGIN, Watcher, registry
from chat.ws import render

if TYPE_CHECKING:
    from chat.replies.reply import Reply

logger = logging.getLogger(__name__)

#: A remote watcher counts for this many renewal periods after its last renewal.
RENEWALS_KEPT = 3

#: What a holder's event queue carries: the reply's events, then None when it is over.
HolderQueue = asyncio.Queue[ReplyEvent | None]


class Audience:
    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._holders: list[HolderQueue] = []
        self._remote: dict[str, float] = {}  # watcher channel -> when it stops counting
        self._changed = asyncio.Event()
        # Group sends and snapshots go out one at a time, so a page that starts watching gets
        # its snapshot and then exactly the batches after it.
        self._group = asyncio.Lock()
        self.starter: Watcher | None = None
        """The page that started the turn (its turn-started frame empties its composer)."""

    # --- who watches ------------------------------------------------------------------------

    def hold(self) -> HolderQueue:
        queue: HolderQueue = asyncio.Queue()
        self._holders.append(queue)
        self.changed()
        return queue

    def release(self, queue: HolderQueue) -> None:
        with contextlib.suppress(ValueError):
            self._holders.remove(queue)
        self.changed()

    def changed(self) -> None:
        """Someone came or went: the grace guard looks again."""
        self._changed.set()

    def _remote_watchers(self) -> int:
        now = time.monotonic()
        for channel, until in list(self._remote.items()):
            if until <= now:
                del self._remote[channel]
        return len(self._remote)

    def watched(self) -> bool:
        return bool(self._holders) or self.pages_watch()

    def pages_watch(self) -> bool:
        """A page shows the conversation, in this process or another."""
        return registry.watched(self._reply.conversation_id) or self._remote_watchers() > 0

    async def watch_remote(self, channel: str) -> None:
        """A page on another process watches (or renews): a newcomer gets the text so far."""
        keep = settings.CHAT_WATCH_RENEW * RENEWALS_KEPT
        if channel in self._remote:
            self._remote[channel] = time.monotonic() + keep
            return
        async with self._group:
            new = channel not in self._remote  # (a second watch may have waited on the lock)
            self._remote[channel] = time.monotonic() + keep
            self.changed()
            if self._reply.done or not new:
                return  # the final form went to the group
            await self._send(channel, self._reply.snapshot(), "snapshot")

    def unwatch_remote(self, channel: str) -> None:
        self._remote.pop(channel, None)
        self.changed()

    # --- the grace ------------------------------------------------------------------------

    async def guard(self) -> None:
        """Stop the reply when it has been unwatched for CHAT_DISCONNECT_GRACE seconds."""
        grace: float = settings.CHAT_DISCONNECT_GRACE
        reply = self._reply
        unwatched_since: float | None = None
        while not reply.done:
            self._changed.clear()
            if self.watched():
                unwatched_since = None
                await self._wait_for_change(self._next_expiry())
                continue
            if unwatched_since is None:
                unwatched_since = time.monotonic()
                if grace > 0:
                    logger.info(
                        "reply %s: nobody is watching; it goes on for %.3g s",
                        reply.message_id,
                        grace,
                    )
            left = unwatched_since + grace - time.monotonic()
            if left <= 0:
                logger.info("reply %s: nobody came back; stopping it", reply.message_id)
                reply.stop(Message.StopReason.DISCONNECT)
                return
            await self._wait_for_change(left)

    def _next_expiry(self) -> float | None:
        """Seconds until a remote watcher stops counting, when only remote ones are left."""
        if self._holders or registry.watched(self._reply.conversation_id) or not self._remote:
            return None
        return max(0.0, min(self._remote.values()) - time.monotonic())

    async def _wait_for_change(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()

    # --- publishing -----------------------------------------------------------------------

    def show_here(self, event: ReplyEvent) -> None:
        """Hand an event to everyone in this process: holders and the pages. Never blocks."""
        for queue in self._holders:
            queue.put_nowait(event)
        for watcher in registry.watchers(self._reply.conversation_id):
            watcher.show(event, mine=watcher is self.starter)

    async def publish(self, event: ReplyEvent) -> None:
        """Show an event here and on the pages of other processes."""
        if isinstance(event, TextBatch):
            async with self._group:
                # (Under the lock: a snapshot taken meanwhile must not hold this text.)
                self._reply.shown(event)
                self.show_here(event)
                if self._remote_watchers():
                    await self._to_group(event, "batch")
            return
        self.show_here(event)
        async with self._group:
            if isinstance(event, ReplyFinished):
                await self._to_group(event, "final")
            elif isinstance(event, TitleChanged):
                await self._to_group(event, "title")

    async def announce_elsewhere(self, event: TurnStarted) -> None:
        """The turn's start, for the pages of other processes (this one's were shown it)."""
        async with self._group:
            await self._to_group(event, "turn")

    def close(self) -> None:
        """The reply has nothing more to say: its holders' event streams end."""
        for queue in self._holders:
            queue.put_nowait(None)

    async def _to_group(self, event: ReplyEvent, part: str) -> None:
        try:
            await layer.group_send(self._reply.conversation_id, self._fragment(event, part))
        except layer.LayerUnavailable:
            logger.warning(
                "conversation %s: could not update pages on other processes",
                self._reply.conversation_id,
            )

    async def _send(self, channel: str, event: ReplyEvent, part: str) -> None:
        try:
            await layer.send(channel, self._fragment(event, part))
        except layer.LayerUnavailable:
            logger.warning("reply %s: could not reach a watching page", self._reply.message_id)

    def _fragment(self, event: ReplyEvent, part: str) -> FragmentEvent:
        return {
            "type": "chat.fragment",
            "html": render.for_event(event, for_owner=False),
            "origin": ORIGIN,
            "reply": self._reply.message_id,
            "part": part,  # type: ignore[typeddict-item]
            "reply_channel": self._reply.channel,
        }
