"""A WebSocket consumer whose channel-layer half survives Redis going away.

Mirrors `channels.consumer.AsyncConsumer.__call__` and `dispatch` of Channels 4.3.2 (check them
again when upgrading Channels), with two changes:

- Channels ends the whole consumer (closing the socket) when the layer's receive raises, as it
  does whenever Redis goes away. A page's own frames, its Stop included, need no Redis, so here
  only the layer half waits for Redis to come back, and then re-joins the group.
- Channels awaits `aclose_old_connections()` on Django's one thread-sensitive worker before
  every handler, so a Stop frame would queue behind every database write in the process. All
  database work here goes through `database_sync_to_async`, which closes stale connections
  itself, so that hop is skipped and Stop stays off the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from chat.replies import layer

logger = logging.getLogger(__name__)


class LayerResilientConsumer(AsyncWebsocketConsumer):
    """Joins one group (`group`, set by the subclass in `connect`) and keeps joined."""

    group: str = ""
    _layer_down: bool = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch([receive, self._layer_event], self.dispatch)

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _layer_event(self) -> dict[str, Any]:
        """The next channel-layer event for this socket, waiting out a Redis outage."""
        delay = 0.1
        while True:
            try:
                return await layer.receive(self.channel_name)
            except layer.LayerUnavailable as exc:
                if not self._layer_down:
                    self._layer_down = True
                    logger.warning("channel layer unreachable (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            if self.group:
                await self.join_group()

    async def join_group(self) -> bool:
        """(Re-)join the group; False if Redis is unreachable. Joining again is harmless, and
        repairs a membership a restarted Redis has forgotten."""
        try:
            with layer.layer_errors():
                await self.channel_layer.group_add(self.group, self.channel_name)
        except layer.LayerUnavailable:
            self._layer_down = True
            return False
        if self._layer_down:
            self._layer_down = False
            logger.info("%s: channel layer reachable again", self.group)
            await self.layer_back()
        return True

    async def layer_back(self) -> None:
        """Redis is back after an outage: frames may have been missed (a subclass catches up)."""

    async def keep_joined(self) -> None:
        """Re-join now and then: covers a Redis restart this socket never saw fail, and the
        layer's group expiry on a socket open for a day."""
        while True:
            await asyncio.sleep(settings.CHAT_GROUP_REFRESH)
            await self.join_group()

    async def leave_group(self) -> None:
        if not self.group:
            return
        try:
            with layer.layer_errors():
                await self.channel_layer.group_discard(self.group, self.channel_name)
        except layer.LayerUnavailable:
            logger.debug("group_discard failed: the channel layer is unreachable")
