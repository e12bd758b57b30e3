"""The tasks each server process runs beside its connections: the reaper (reaper.py) and the
event-loop lag monitor (loop_lag.py). They start with the first connection the process serves,
on its event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from chat.replies import loop_lag, reaper

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class ProcessTasksMiddleware:
    """Starts this process's background tasks with the first connection it serves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in {"http", "websocket"}:
            reaper.ensure_running()
            loop_lag.ensure_running()
        await self.app(scope, receive, send)
