"""Saving streaming replies when the server process is told to stop (SIGTERM).

Daphne cancels every application instance on shutdown, but waits for them with a plain
`asyncio.gather`, which finishes as soon as the first one is cancelled: the process may exit
before a consumer has saved its reply. So the process also registers a shutdown trigger of its
own with Twisted's reactor that cancels every reply driver task (each saves its partial as
`interrupted` / `disconnect` when cancelled, see chat/generation.py) and keeps the reactor
waiting until they are saved. The replies are found by their task names: no registry.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from chat.replies.reply import REPLY_TASK_PREFIX

logger = logging.getLogger(__name__)


async def save_streaming_replies() -> int:
    """Stop every reply this process is streaming and wait until each is saved."""
    drivers = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith(REPLY_TASK_PREFIX) and not task.done()
    ]
    for task in drivers:
        task.cancel()
    await asyncio.gather(*drivers, return_exceptions=True)
    if drivers:
        logger.warning("shutting down: saved %d streaming replies as interrupted", len(drivers))
    return len(drivers)


def install() -> None:
    """Under daphne (Twisted's asyncio reactor), save replies before the reactor stops."""
    reactor: Any = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not hasattr(reactor, "addSystemEventTrigger"):
        return  # not served by daphne: nothing to hook (the ASGI server cancels consumers)
    from twisted.internet import defer

    def trigger() -> Any:
        return defer.Deferred.fromFuture(asyncio.ensure_future(save_streaming_replies()))

    reactor.addSystemEventTrigger("before", "shutdown", trigger)
