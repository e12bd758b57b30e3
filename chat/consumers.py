"""The chat WebSocket: transport only.

It parses frames, checks ownership, hands turns to `chat.generation`, and forwards the reply's
events to the browser as HTML fragments. The reply it started belongs to this connection and
runs in its own tasks, so a Stop frame is read while the reply streams.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import fragments, selectors
from .frames import ClientFrame, FrameError, parse_client_frame
from .generation import Reply, ReplyEvent, start_turn
from .models import Conversation, Message
from .services import ReplyAlreadyStreaming

logger = logging.getLogger(__name__)


class ChatConsumer(AsyncWebsocketConsumer):
    conversation: Conversation
    reply: Reply | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels awaits close_old_connections() on Django's one thread-sensitive worker
        # before every handler, so a Stop frame would queue behind every database write in
        # the process. All database work here goes through database_sync_to_async, which
        # closes stale connections itself, so the hop is skipped and Stop stays off the DB.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        user = self.scope["user"]
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        conversation = await database_sync_to_async(selectors.conversation_for_user)(
            conversation_id=conversation_id, user=user
        )
        if conversation is None:
            # Refused before the handshake completes: nothing is sent to the socket.
            await self.close()
            return
        self.conversation = conversation
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self._streaming():
            assert self.reply is not None
            self.reply.stop(Message.StopReason.DISCONNECT)
            await self.reply.wait()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send(
                text_data=fragments.notice("Binary frames are not accepted.", level="error")
            )
            return
        try:
            frame = parse_client_frame(text_data, max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS)
        except FrameError as exc:
            await self.send(text_data=fragments.notice(str(exc), level="error"))
            return
        if frame.action == "stop":
            await self._stop()
        elif frame.action == "stop_and_send":
            await self._stop_and_send(frame)
        else:
            await self._send(frame)

    # --- actions --------------------------------------------------------------------------

    def _streaming(self) -> bool:
        return self.reply is not None and not self.reply.done

    async def _stop(self) -> None:
        if not self._streaming():
            await self.send(
                text_data=fragments.notice("Nothing is streaming, so there is nothing to stop.")
            )
            return
        assert self.reply is not None
        self.reply.stop(Message.StopReason.USER_STOP)
        await self.reply.wait()

    async def _stop_and_send(self, frame: ClientFrame) -> None:
        # One server step: the partial is saved before the new user message, so the order holds.
        if self._streaming():
            assert self.reply is not None
            self.reply.stop(Message.StopReason.USER_STOP)
            await self.reply.wait()
        if frame.message:
            await self._start(frame.message)

    async def _send(self, frame: ClientFrame) -> None:
        if self._streaming():
            await self.send(
                text_data=fragments.notice(
                    "A reply is still streaming: press Stop & Send to stop it and send this.",
                    level="error",
                )
            )
            return
        await self._start(frame.message)

    async def _start(self, text: str) -> None:
        try:
            self.reply = await start_turn(
                conversation=self.conversation, text=text, sink=self._deliver
            )
        except ReplyAlreadyStreaming:
            await self.send(
                text_data=fragments.notice(
                    "A reply is already streaming in this conversation (in another tab?). "
                    "Stop it first; your message is still in the box.",
                    level="error",
                )
            )

    async def _deliver(self, event: ReplyEvent) -> None:
        await self.send(text_data=fragments.for_event(event))
