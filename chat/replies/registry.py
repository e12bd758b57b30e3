"""The live replies of this process, and the pages of this process that watch conversations.

One registry per process (`registry`, below), and this module is the only place that holds
replies: shutdown, the reaper, stops and watching pages ask it. A reply is registered from the
moment its turn is saved until its outcome is; another process reaches it through the channel
layer at its own address (`Reply.channel`), never through this registry.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chat.replies.events import ReplyEvent
    from chat.replies.reply import Reply

#: This process's name on the channel layer: events a reply publishes to its conversation's
#: group carry it, so that pages of this process (which got them directly) skip the copy.
ORIGIN = uuid.uuid4().hex


class Watcher(Protocol):
    """A page (a socket) that shows a conversation. `show` must not block: it queues."""

    def show(self, event: ReplyEvent, *, mine: bool) -> None:
        """Show one event of a reply; `mine` when this page started the turn."""


class Registry:
    def __init__(self) -> None:
        self._replies: dict[int, Reply] = {}
        # The ids again, as one immutable set replaced on each change: safe to read from the
        # database thread (the reaper asks it there) while the event loop changes replies.
        self._ids: frozenset[int] = frozenset()
        self._by_conversation: dict[str, Reply] = {}
        self._watchers: dict[str, set[Watcher]] = {}

    # --- replies ----------------------------------------------------------------------------

    def add(self, reply: Reply) -> None:
        self._replies[reply.message_id] = reply
        self._ids = self._ids | {reply.message_id}
        self._by_conversation[reply.conversation_id] = reply

    def remove(self, reply: Reply) -> None:
        self._replies.pop(reply.message_id, None)
        self._ids = self._ids - {reply.message_id}
        if self._by_conversation.get(reply.conversation_id) is reply:
            del self._by_conversation[reply.conversation_id]

    def get(self, message_id: int) -> Reply | None:
        return self._replies.get(message_id)

    def for_conversation(self, conversation_id: uuid.UUID | str) -> Reply | None:
        return self._by_conversation.get(str(conversation_id))

    def replies(self) -> list[Reply]:
        return list(self._replies.values())

    def live(self) -> int:
        """How many replies stream in this process."""
        return len(self._replies)

    def message_ids(self) -> frozenset[int]:
        """The live replies' message ids; safe to call from any thread."""
        return self._ids

    # --- pages watching conversations ---------------------------------------------------------

    def watch(self, conversation_id: uuid.UUID | str, watcher: Watcher) -> Reply | None:
        """Start showing a conversation's replies on `watcher`; the live reply, if any, so that
        the caller can show it as it stands (nothing is missed between the two)."""
        cid = str(conversation_id)
        self._watchers.setdefault(cid, set()).add(watcher)
        return self._by_conversation.get(cid)

    def unwatch(self, conversation_id: uuid.UUID | str, watcher: Watcher) -> None:
        cid = str(conversation_id)
        watchers = self._watchers.get(cid)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._watchers[cid]
        reply = self._by_conversation.get(cid)
        if reply is not None:
            reply.audience.changed()

    def watchers(self, conversation_id: uuid.UUID | str) -> list[Watcher]:
        return list(self._watchers.get(str(conversation_id), ()))

    def watched(self, conversation_id: uuid.UUID | str) -> bool:
        return bool(self._watchers.get(str(conversation_id)))


registry = Registry()
