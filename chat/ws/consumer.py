"""The chat WebSocket: one page's door to a conversation.

It parses frames, checks ownership, and hands turns and stops to the shared turn API
(chat/replies/turns.py). It owns no reply: it *watches* the conversation, and every reply in it,
started by this page or any other door, is shown to it as it streams. Replies of this process
are handed to it directly (it is a `registry.Watcher`); replies on other processes reach it
through the conversation's group (chat/ws/sync.py). Closing the page does not stop a reply:
its audience does, after the grace, if nobody watches it any more.

Every frame to the page goes through one queue, in order; nothing a reply does waits for a
slow page.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import parse_cookie
from django.utils import translation
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.utils.translation.trans_real import parse_accept_lang_header

from chat.data import selectors
from chat.models import Conversation, Message
from chat.replies import layer, turns
from chat.replies.events import FragmentEvent, GoneEvent, ReplyEvent, ReplyFinished, TextBatch
from chat.replies.registry import ORIGIN
from chat.replies.slash import Command, command_of
from chat.ws import render
from chat.ws.protocol import ClientFrame, FrameBudget, FrameError, parse_client_frame
from chat.ws.receive import LayerResilientConsumer
from chat.ws.sync import PageSync

logger = logging.getLogger(__name__)

#: Close code for a conversation that was deleted: the page does not reconnect (chat.js).
GONE_CLOSE_CODE = 4404

#: Added to a refused turn's reason: where the user's text is.
KEPT = gettext_lazy(" Your message is still in the box.")


class ChatConsumer(LayerResilientConsumer):
    conversation: Conversation

    @cached_property
    def language(self) -> str:
        """The page's language, chosen as LocaleMiddleware chose it for the page."""
        return language_of(self.scope)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Everything this page is sent from its own events (the catch-up, notices, refusals,
        # command answers) is in its language; a turn it starts inherits it.
        with translation.override(self.language):
            await super().dispatch(message)

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
        self.group = layer.group_name(conversation.pk)
        self._outbox: asyncio.Queue[str | int] = asyncio.Queue()  # frames; a close code
        self._sync = PageSync(self.channel_name)
        self._budget = FrameBudget(
            burst=settings.CHAT_FRAME_BURST, per_second=settings.CHAT_FRAMES_PER_SECOND
        )
        self._refusals = FrameBudget(burst=5, per_second=2)
        await self.accept()
        self._writer = asyncio.create_task(self._write())
        if not await self.join_group():
            logger.warning("conversation %s: the channel layer is unreachable", conversation.pk)
            self._notice(
                _("Live updates from other tabs are unavailable (the message bus is unreachable)."),
                level="error",
            )
        self._keeper = asyncio.create_task(self.keep_joined())
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Bring the page up to date with what happened since it was rendered, then watch.

        A page that misses messages (its `?after=` id is older than the newest) gets the list
        again (its newest page). A reply streaming in this process is then shown as it stands
        and followed; one streaming elsewhere is followed through the group; one that ended
        meanwhile (a reload races its save) is sent in its final form.
        """
        conversation = self.conversation
        after = _after_param(self.scope)
        # One read: a turn saves its user message and its reply together, so the newest
        # message is the last reply.
        newest = await database_sync_to_async(selectors.newest_message)(conversation=conversation)
        if newest is not None and after is not None and newest.pk > after:
            messages = await database_sync_to_async(selectors.conversation_messages)(
                conversation=conversation
            )
            self._sync.caught_up_to = messages[-1].pk
            self._send(render.catch_up(messages))
        live = turns.watch(conversation.pk, self)
        if live is not None:
            if newest is None or live.message_id > newest.pk:
                self._send(render.for_event(live.started, for_owner=False))
            self._send(render.for_event(live.snapshot()))
            return
        if newest is None or newest.role != Message.Role.ASSISTANT:
            return
        if newest.status == Message.Status.STREAMING:
            # Not ours: read it again now that this page watches (it may have just ended here).
            newest = await database_sync_to_async(selectors.message_by_id)(message_id=newest.pk)
            if newest.status == Message.Status.STREAMING:
                if newest.owner_channel:
                    self._sync.follow(newest.pk, newest.owner_channel)
                return
        self._send(render.for_event(ReplyFinished(message=newest)))

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "conversation"):
            return
        self._keeper.cancel()
        await self._sync.leave()
        await turns.unwatch(self.conversation.pk, self)
        await self.leave_group()
        self._writer.cancel()

    async def layer_back(self) -> None:
        # Frames from other processes may have been missed while Redis was down.
        newest = await database_sync_to_async(selectors.newest_message)(
            conversation=self.conversation
        )
        streaming = newest is not None and newest.status == Message.Status.STREAMING
        if streaming and turns.watch(self.conversation.pk, self) is None:
            assert newest is not None
            if newest.owner_channel:
                self._sync.follow(newest.pk, newest.owner_channel)

    # --- frames to the page -----------------------------------------------------------------

    def show(self, event: ReplyEvent, *, mine: bool) -> None:
        """A reply of this process has news for this page (chat/replies/audience.py)."""
        if isinstance(event, TextBatch):  # the hot path: no words to translate in it
            self._send(render.for_event(event, for_owner=mine))
            return
        with translation.override(self.language):
            self._send(render.for_event(event, for_owner=mine))

    def _send(self, html: str) -> None:
        self._outbox.put_nowait(html)

    async def _write(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, int):
                await self.close(code=item)
                return
            await self.send(text_data=item)

    def _notice(self, text: str, *, level: str = "info") -> None:
        self._send(render.notice(text, level=level))

    def _refuse(self, text: str) -> None:
        """An error notice for a frame that was not acted on: at most a few a second, so a
        flood of bad frames is not answered by a flood of notices."""
        if self._refusals.take():
            self._notice(text, level="error")

    # --- frames from the page ---------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            self._refuse(_("Binary frames are not accepted."))
            return
        try:
            frame = parse_client_frame(text_data, max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS)
        except FrameError as exc:
            self._refuse(str(exc))
            return
        # A Stop is never limited: it is what a flood of anything else must not delay.
        if frame.action != "stop" and not self._budget.take():
            self._refuse(_("Too many frames at once: slow down. That one was ignored."))
            return
        try:
            await self._act(frame)
        except Exception:
            # A bug must not take the socket (and with it the Stop of a streaming reply) down.
            logger.exception(
                "conversation %s: the %s frame failed", self.conversation.pk, frame.action
            )
            self._notice(
                _("Something went wrong on the server; that was not done. Please try again."),
                level="error",
            )

    async def _act(self, frame: ClientFrame) -> None:
        command = command_of(frame.message) if frame.action in ("send", "stop_and_send") else None
        if command is not None:
            await self._command(command, frame.message)
        elif frame.action == "stop":
            await self._stop()
        elif frame.action == "stop_and_send":
            # One server step: the partial is saved before the new user message, so the order
            # holds.
            result = await turns.stop(self.conversation.pk)
            if result.outcome == "unavailable":
                self._notice(result.text + str(KEPT), level="error")
            elif frame.message or frame.attachments:
                await self._begin("send", frame.message, frame.attachments)
        else:
            await self._begin(frame.action, frame.message, frame.attachments)

    async def _stop(self) -> None:
        """Stop the conversation's reply, wherever it runs; say so unless it simply stopped."""
        result = await turns.stop(self.conversation.pk)
        if result.outcome != "stopped":
            self._notice(result.text, level="error" if result.outcome == "unavailable" else "info")

    async def _begin(
        self, kind: turns.TurnKind, text: str, attachments: tuple[uuid.UUID, ...] = ()
    ) -> None:
        try:
            await turns.begin(
                conversation=self.conversation,
                text=text,
                kind=kind,
                attachments=attachments,
                starter=self,
            )
        except turns.TurnRefused as exc:
            self._notice(f"{exc}{KEPT if kind == 'send' else ''}", level="error")

    async def _command(self, command: Command, text: str) -> None:
        """A composer command (chat/replies/slash.py): done here, never saved as a message."""
        self._send(render.command_accepted(text))
        if command == "/stop":
            await self._stop()
        elif command == "/help":
            self._notice(render.help_text())
        else:  # /new: the page goes to a new conversation's composer (its socket closes, as on
            # any leave); the conversation is made by the first message sent there
            self._send(render.navigate())

    # --- group events (other processes, HTTP endpoints) ---------------------------------------

    async def chat_fragment(self, event: FragmentEvent) -> None:
        if event["origin"] == ORIGIN:
            return  # from a reply of this process: the page was shown it directly
        if self._sync.accept(event):
            self._send(event["html"])

    async def chat_gone(self, event: GoneEvent) -> None:
        """The conversation was deleted (chat/web/conversations.py): say so and close."""
        self._send(render.gone())
        self._outbox.put_nowait(GONE_CLOSE_CODE)  # closed once the frames before it are out


def language_of(scope: dict[str, Any]) -> str:
    """The language a socket's page was rendered in: the language switch's cookie, else the
    browser's Accept-Language, else LANGUAGE_CODE (as LocaleMiddleware picks it, without URL
    prefixes, which this site does not use)."""
    headers = {name.lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    chosen = parse_cookie(headers.get(b"cookie", "")).get(settings.LANGUAGE_COOKIE_NAME)
    wanted = [chosen] if chosen else []
    accepted = parse_accept_lang_header(headers.get(b"accept-language", ""))
    wanted += [code for code, _quality in accepted if code != "*"]
    for code in wanted:
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def _after_param(scope: dict[str, Any]) -> int | None:
    """The `?after=<message id>` the page connected with: the newest message it shows."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after", [])
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
