"""Closes replies whose owner died: a process killed mid-reply leaves its message `streaming`.
(It also deletes attachments uploaded into a composer and never sent, after a day.)

Each server process runs `reap_once()` when it starts serving and then every
CHAT_REAPER_INTERVAL seconds; `manage.py reap_orphans` runs it by hand. A reply is an orphan when
its heartbeat (beaten at every checkpoint) is older than CHAT_ORPHAN_AFTER, so several processes
reaping at once never touch each other's live replies. The replies in this process's registry
are never orphans, however late their heartbeat: a process under heavy load beats late, and
closing its live replies would cut them off mid-stream (found by the benchmark at 500
concurrent replies).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings

from chat.data import services
from chat.files import store
from chat.replies.registry import registry

logger = logging.getLogger(__name__)

# One reaper task per event loop (that is, per server process).
_tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


async def reap_once(*, older_than: float | None = None) -> int:
    age = settings.CHAT_ORPHAN_AFTER if older_than is None else older_than
    closed = await database_sync_to_async(services.reap_orphans)(
        older_than=timedelta(seconds=age), alive=registry.message_ids
    )
    for message in closed:
        logger.warning(
            "reaper closed orphaned reply %s in conversation %s (%d chars kept)",
            message.pk,
            message.conversation_id,
            len(message.content),
        )
    return len(closed)


async def reap_unsent_files() -> int:
    """Delete files uploaded into a composer and never sent (CHAT_UNSENT_ATTACHMENT_TTL)."""
    deleted = await database_sync_to_async(store.reap_unsent)()
    if deleted:
        logger.info("reaper deleted %d attachments never sent", deleted)
    return deleted


async def _run_forever() -> None:
    while True:
        try:
            await reap_once()
            await reap_unsent_files()
        except Exception:
            logger.exception("the reaper failed; it will try again")
        await asyncio.sleep(settings.CHAT_REAPER_INTERVAL)


def ensure_running() -> None:
    loop = asyncio.get_running_loop()
    task = _tasks.get(loop)
    if task is None or task.done():
        _tasks[loop] = loop.create_task(_run_forever(), name="chat-reaper")
