"""Saving streaming replies when the server process is told to stop (SIGTERM).

Daphne cancels every application instance on shutdown, but waits for them with a plain
`asyncio.gather`, which finishes as soon as the first one is cancelled: the process may exit
before a consumer has saved its reply. So the process also registers a shutdown trigger of its
own with Twisted's reactor that stops every reply in this process's registry (each saves its
partial as `interrupted` / `disconnect`) and keeps the reactor waiting until they are saved.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from chat.models import Message
from chat.replies.registry import registry

logger = logging.getLogger(__name__)


async def save_streaming_replies() -> int:
    """Stop every reply this process is streaming and wait until each is saved."""
    replies = [reply for reply in registry.replies() if not reply.done]
    for reply in replies:
        reply.stop(Message.StopReason.DISCONNECT)
    await asyncio.gather(*(reply.wait() for reply in replies), return_exceptions=True)
    if replies:
        logger.warning("shutting down: saved %d streaming replies as interrupted", len(replies))
    return len(replies)


def install() -> None:
    """Under daphne (Twisted's asyncio reactor), save replies before the reactor stops."""
    reactor: Any = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not hasattr(reactor, "addSystemEventTrigger"):
        return  # not served by daphne: nothing to hook (the ASGI server cancels consumers)
    from twisted.internet import defer

    def trigger() -> Any:
        return defer.Deferred.fromFuture(asyncio.ensure_future(save_streaming_replies()))

    reactor.addSystemEventTrigger("before", "shutdown", trigger)
