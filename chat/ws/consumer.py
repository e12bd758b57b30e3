"""The chat WebSocket: transport only.

It parses frames, checks ownership, hands turns to `chat.replies.reply`, and forwards the reply's
events to the browser as HTML render. A reply belongs to the socket that started it and runs
in its own tasks, so a Stop frame is read while the reply streams.

Every socket on a conversation joins the conversation's group (see chat/stops.py). The owner
of a reply sends its frames straight to its own socket and, once it knows other tabs are open,
fans them out to the group; a tab that joins mid-reply is sent a snapshot of the text so far.
Stops from other tabs, HTTP endpoints and other processes arrive as `chat.stop` group events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from chat.data import selectors, services
from chat.data.services import ReplyAlreadyStreaming, TurnRefused
from chat.models import Conversation, Message
from chat.replies import stops
from chat.replies.reply import (
    Reply,
    ReplyEvent,
    ReplyFinished,
    TextBatch,
    TurnKind,
    TurnStarted,
    start_turn,
)
from chat.replies.slash import Command, command_of
from chat.ws import render
from chat.ws.protocol import ClientFrame, FrameBudget, FrameError, parse_client_frame

logger = logging.getLogger(__name__)

#: Close code for a conversation that was deleted: the page does not reconnect (chat.js).
GONE_CLOSE_CODE = 4404


class ChatConsumer(AsyncWebsocketConsumer):
    conversation: Conversation
    reply: Reply | None = None
    # Another socket on this conversation has announced itself: fan frames out to the group.
    peers: bool = False
    # The newest message id the page was sent by _catch_up (0: none).
    _caught_up_to: int = 0
    # A reply the page shows streaming at its last checkpoint: its batches are dropped until
    # the owner's snapshot of it arrives (they would extend stale text), then followed.
    _awaiting_snapshot: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__, except that the channel-layer half survives Redis.

        Channels ends the whole consumer (closing the socket) when the layer's receive raises,
        as it does whenever Redis goes away. This socket's own sends, replies and stops need no
        Redis, so here only the layer half waits for Redis to come back, and then re-joins.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        self._layer_down = False
        try:
            with contextlib.suppress(StopConsumer):
                await await_many_dispatch([receive, self._layer_event], self.dispatch)
        except asyncio.CancelledError:
            # The server is shutting down (daphne cancels every application on SIGTERM and
            # waits for them): save a streaming reply as a disconnect before going.
            if self.reply is not None and not self.reply.done:
                self.reply.stop(Message.StopReason.DISCONNECT)
                await self.reply.wait()
            raise

    async def _layer_event(self) -> dict[str, Any]:
        """The next channel-layer event for this socket, waiting out a Redis outage."""
        delay = 0.1
        while True:
            try:
                with stops.layer_errors():
                    return await self.channel_layer.receive(self.channel_name)
            except stops.LayerUnavailable as exc:
                if not self._layer_down:
                    self._layer_down = True
                    logger.warning("channel layer unreachable (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            if hasattr(self, "conversation"):
                await self._join_group()

    async def _join_group(self, *, hello: bool = True) -> bool:
        """(Re-)join the conversation's group; False if Redis is unreachable.

        Joining again is harmless, and repairs a membership a restarted Redis has forgotten.
        The hello (which makes other tabs fan out to this one and send a snapshot of a reply
        in progress) goes out on connect and after an outage, when this tab may have missed
        frames.
        """
        try:
            with stops.layer_errors():
                await self.channel_layer.group_add(
                    stops.group_name(self.conversation.pk), self.channel_name
                )
            if hello or self._layer_down:
                await stops.group_send(
                    self.conversation.pk, {"type": "chat.hello", "sender": self.channel_name}
                )
        except stops.LayerUnavailable:
            self._layer_down = True
            return False
        if self._layer_down:
            self._layer_down = False
            logger.info("conversation %s: channel layer reachable again", self.conversation.pk)
        return True

    async def _keep_joined(self) -> None:
        """Re-join now and then: covers a Redis restart this socket never saw fail, and the
        layer's group expiry on a socket open for a day."""
        while True:
            await asyncio.sleep(settings.CHAT_GROUP_REFRESH)
            await self._join_group(hello=False)

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
        self._fanout = asyncio.Lock()
        self._fanned_out: list[str] = []  # the current reply's text accounted for in the group
        self._budget = FrameBudget(
            burst=settings.CHAT_FRAME_BURST, per_second=settings.CHAT_FRAMES_PER_SECOND
        )
        self._refusals = FrameBudget(burst=5, per_second=2)
        await self.accept()
        if not await self._join_group():
            logger.warning("conversation %s: the channel layer is unreachable", conversation.pk)
            await self._notice(
                "Live updates from other tabs are unavailable (the message bus is unreachable).",
                level="error",
            )
        self._keeper = asyncio.create_task(self._keep_joined(), name="chat-group-keeper")
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Bring the page up to date with what happened since it was rendered.

        Read after joining the group, so anything later arrives as frames. A page that misses
        messages (its `?after=` id is older than the newest) gets the list again (its newest
        page), and turn starts already in it are then skipped (`chat_fragment`). Otherwise the
        last reply may still have ended since (a reload races the old socket's save): its final
        form is sent; re-sending one the page already has is harmless.
        """
        conversation = self.conversation
        after = _after_param(self.scope)
        # One read: a turn saves its user message and its reply together, so the newest
        # message is the last reply.
        newest = await database_sync_to_async(selectors.newest_message)(conversation=conversation)
        if newest is None:
            return
        if after is not None and newest.pk > after:
            messages = await database_sync_to_async(selectors.conversation_messages)(
                conversation=conversation
            )
            self._caught_up_to = messages[-1].pk
            await self.send(text_data=render.catch_up(messages))
            if messages[-1].status == Message.Status.STREAMING:
                self._awaiting_snapshot = messages[-1].pk
        elif newest.status == Message.Status.STREAMING:
            self._awaiting_snapshot = newest.pk
        elif newest.role == Message.Role.ASSISTANT and newest.status != Message.Status.STREAMING:
            await self.send(text_data=render.for_event(ReplyFinished(message=newest)))

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "_keeper"):
            self._keeper.cancel()
        if self._streaming():
            assert self.reply is not None
            self.reply.stop(Message.StopReason.DISCONNECT)
            await self.reply.wait()
        if hasattr(self, "conversation"):
            try:
                await self.channel_layer.group_discard(
                    stops.group_name(self.conversation.pk), self.channel_name
                )
            except Exception:
                logger.debug("group_discard failed: the channel layer is unreachable")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._refuse("Binary frames are not accepted.")
            return
        try:
            frame = parse_client_frame(text_data, max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS)
        except FrameError as exc:
            await self._refuse(str(exc))
            return
        # A Stop is never limited: it is what a flood of anything else must not delay.
        if frame.action != "stop" and not self._budget.take():
            await self._refuse("Too many frames at once: slow down. That one was ignored.")
            return
        try:
            command = (
                command_of(frame.message) if frame.action in ("send", "stop_and_send") else None
            )
            if command is not None:
                await self._command(command)
            elif frame.action == "stop":
                await self._stop()
            elif frame.action == "stop_and_send":
                await self._stop_and_send(frame)
            elif frame.action == "send":
                await self._send(frame)
            else:
                await self._redo(frame.action, frame.message)
        except Exception:
            # A bug must not take the socket (and with it the Stop of a streaming reply) down.
            logger.exception(
                "conversation %s: the %s frame failed", self.conversation.pk, frame.action
            )
            await self._notice(
                "Something went wrong on the server; that was not done. Please try again.",
                level="error",
            )

    # --- actions from this socket --------------------------------------------------------

    def _streaming(self) -> bool:
        return self.reply is not None and not self.reply.done

    async def _stop_own(self, reason: str) -> Message:
        assert self.reply is not None
        self.reply.stop(reason)
        return await self.reply.wait()

    async def _stop(self) -> None:
        if self._streaming():
            await self._stop_own(Message.StopReason.USER_STOP)
            return
        # The reply (if any) belongs to another tab or process: ask it through the layer.
        result = await stops.request_stop(self.conversation.pk)
        if result.outcome != "stopped":
            await self._notice(
                result.text, level="error" if result.outcome == "unavailable" else "info"
            )

    async def _stop_and_send(self, frame: ClientFrame) -> None:
        # One server step: the partial is saved before the new user message, so the order holds.
        if self._streaming():
            await self._stop_own(Message.StopReason.USER_STOP)
        elif frame.message:
            result = await stops.request_stop(self.conversation.pk)
            if result.outcome == "unavailable":
                await self._notice(
                    result.text + " Your message is still in the box.", level="error"
                )
                return
        if frame.message:
            await self._start(frame.message)

    async def _send(self, frame: ClientFrame) -> None:
        if self._streaming():
            await self._notice(
                "A reply is still streaming: press Stop & Send to stop it and send this.",
                level="error",
            )
            return
        await self._start(frame.message)

    async def _command(self, command: Command) -> None:
        """A composer command (chat/commands.py): done here, never saved as a message."""
        await self.send(text_data=render.command_accepted())
        if command == "/stop":
            await self._stop()
        elif command == "/help":
            await self._notice(render.help_text())
        else:  # /new: the page goes to a new conversation (its socket closes, as on any leave)
            conversation = await database_sync_to_async(services.conversation_create)(
                user=self.scope["user"]
            )
            await self.send(text_data=render.navigate(conversation))

    async def _redo(self, kind: TurnKind, text: str) -> None:
        """Regenerate the last reply, edit the last message and resend, or continue a reply."""
        if self._streaming():
            await self._notice("A reply is still streaming: stop it first.", level="error")
            return
        await self._start(text, kind=kind)

    async def _start(self, text: str, *, kind: TurnKind = "send") -> None:
        self._fanned_out = []
        try:
            self.reply = await start_turn(
                conversation=self.conversation,
                text=text,
                sink=self._deliver,
                owner_channel=self.channel_name,
                kind=kind,
            )
        except ReplyAlreadyStreaming:
            await self._notice(
                "A reply is already streaming in this conversation (in another tab?). "
                + (
                    "Press Stop & Send to stop it and send this; your message is still in the box."
                    if kind == "send"
                    else "Stop it first."
                ),
                level="error",
            )
        except TurnRefused as exc:
            kept = " Your message is still in the box." if kind == "send" else ""
            await self._notice(f"{exc}{kept}", level="error")

    async def _deliver(self, event: ReplyEvent) -> None:
        """The reply's sink: this socket first, then the other tabs when there are any."""
        html = render.for_event(event)
        await self.send(text_data=html)
        async with self._fanout:
            if isinstance(event, TextBatch):
                self._fanned_out.append(event.text)
            # A turn's start and its final form always go out: a tab that has joined the group
            # but whose hello has not been answered yet (a reload mid-reply, a tab opening)
            # must still see the turn appear and end.
            if self.peers or not isinstance(event, TextBatch):
                # Only a turn's start differs for other tabs; a batch is rendered once.
                tags: dict[str, int] = {}
                if isinstance(event, TurnStarted):
                    html = render.for_event(event, for_owner=False)
                    if event.kind == "continue":
                        # Text fanned out for a continued reply starts with what it had.
                        self._fanned_out = [event.assistant_message.content]
                    else:
                        tags["turn"] = event.assistant_message.pk
                elif isinstance(event, TextBatch):
                    tags["batch"] = event.message_id
                await self._fan_out(html, **tags)
            if isinstance(event, ReplyFinished):
                self._fanned_out = []

    async def _fan_out(self, html: str, **tags: int) -> None:
        """Send a frame to the other tabs, tagged with the turn or reply it belongs to."""
        try:
            await stops.group_send(
                self.conversation.pk,
                {"type": "chat.fragment", "html": html, "sender": self.channel_name, **tags},
            )
        except stops.LayerUnavailable:
            logger.warning("conversation %s: could not update other tabs", self.conversation.pk)

    async def _notice(self, text: str, *, level: str = "info") -> None:
        await self.send(text_data=render.notice(text, level=level))

    async def _refuse(self, text: str) -> None:
        """An error notice for a frame that was not acted on: at most a few a second, so a
        flood of bad frames is not answered by a flood of notices."""
        if self._refusals.take():
            await self._notice(text, level="error")

    # --- group events (other tabs, HTTP endpoints, other processes) ------------------------

    async def chat_hello(self, event: dict[str, Any]) -> None:
        if event["sender"] == self.channel_name:
            return
        async with self._fanout:
            self.peers = True
            try:
                await stops.send(
                    event["sender"], {"type": "chat.here", "sender": self.channel_name}
                )
                if self._streaming():
                    assert self.reply is not None
                    # Everything fanned out from now on reaches the newcomer after this snapshot.
                    html = render.snapshot(self.reply.message, "".join(self._fanned_out))
                    await stops.send(
                        event["sender"],
                        {
                            "type": "chat.fragment",
                            "html": html,
                            "sender": "",
                            "snapshot": self.reply.message.pk,
                        },
                    )
            except stops.LayerUnavailable:
                logger.warning("conversation %s: could not greet a new tab", self.conversation.pk)

    async def chat_here(self, event: dict[str, Any]) -> None:
        self.peers = True

    async def chat_fragment(self, event: dict[str, Any]) -> None:
        if event["sender"] == self.channel_name:
            return
        if event.get("turn", 0) and event["turn"] <= self._caught_up_to:
            return  # that turn is already on the page (sent by _catch_up)
        if self._awaiting_snapshot:
            if event.get("snapshot") == self._awaiting_snapshot:
                self._awaiting_snapshot = 0
            elif event.get("batch") == self._awaiting_snapshot:
                return  # the snapshot on its way includes this text
        await self.send(text_data=event["html"])

    async def chat_gone(self, event: dict[str, Any]) -> None:
        """The conversation was deleted (chat/views_conversations.py): say so and close."""
        if self._streaming():
            assert self.reply is not None
            await self._stop_own(Message.StopReason.USER_STOP)
        await self.send(text_data=render.gone())
        await self.close(code=GONE_CLOSE_CODE)

    async def chat_stop(self, event: dict[str, Any]) -> None:
        """A stop sent to this socket as the reply's owner (chat/stops.py): stop, then answer."""
        await stops.answer_stop(self.reply, event)


def _after_param(scope: dict[str, Any]) -> int | None:
    """The `?after=<message id>` the page connected with: the newest message it shows."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after", [])
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
