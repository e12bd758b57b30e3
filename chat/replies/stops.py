"""Reaching a reply from anywhere: other tabs, HTTP endpoints, other processes.

A reply belongs to the socket (consumer) that started it. Everything else reaches it through the
channel layer: every socket on a conversation joins that conversation's group, and a stop is a
group message the owner answers on a reply channel once the partial is saved. When nobody
answers, the owner is gone (its process died) and the orphan is finalised here, from its last
checkpoint. There is no registry of streams anywhere: the layer and the database are the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat.data import selectors, services
from chat.models import Message

if TYPE_CHECKING:
    from chat.replies.reply import Reply

logger = logging.getLogger(__name__)

# While waiting for an owner's answer, how often to look whether the reply ended anyway.
ANSWER_POLL = 0.1

Outcome = Literal["stopped", "finished", "nothing", "orphan", "unavailable"]


def group_name(conversation_id: uuid.UUID | str) -> str:
    return f"conversation-{uuid.UUID(str(conversation_id)).hex}"


class LayerUnavailable(Exception):
    """The channel layer (Redis) cannot be reached: cross-process messages cannot be delivered."""


def is_layer_error(exc: BaseException) -> bool:
    """True for the errors a channel layer raises when its backend (Redis) is unreachable."""
    # redis-py's own ConnectionError and TimeoutError are not OSErrors.
    return isinstance(exc, TimeoutError | OSError | ConnectionError) or (
        type(exc).__module__.startswith("redis") and "Error" in type(exc).__name__
    )


@contextlib.contextmanager
def layer_errors() -> Iterator[None]:
    """Turn a channel-layer backend failure into LayerUnavailable."""
    try:
        yield
    except Exception as exc:
        if is_layer_error(exc):
            raise LayerUnavailable(str(exc) or type(exc).__name__) from exc
        raise


async def _deliver(send: Callable[[], Awaitable[None]]) -> None:
    """Run one layer write; retried once, because the first write after Redis restarted fails
    on a stale pooled connection. A second failure means Redis really is unreachable."""
    for attempt in (1, 2):
        try:
            with layer_errors():
                await send()
            return
        except LayerUnavailable:
            if attempt == 2:
                raise


async def group_send(conversation_id: uuid.UUID | str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    await _deliver(lambda: layer.group_send(group_name(conversation_id), event))


async def send(channel: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    await _deliver(lambda: layer.send(channel, event))


@dataclass(frozen=True, slots=True)
class StopResult:
    outcome: Outcome
    conversation_id: str
    message_id: int | None = None
    chars: int = 0

    @property
    def text(self) -> str:
        """What to tell the user."""
        if self.outcome == "stopped":
            return f"Stopped. {self.chars:,} characters of the reply were saved."
        if self.outcome == "orphan":
            return (
                "The server streaming that reply is gone; the reply was closed with the "
                f"{self.chars:,} characters saved at its last checkpoint."
            )
        if self.outcome == "finished":
            return "That reply had already finished."
        if self.outcome == "unavailable":
            return (
                "The stop could not be delivered: the message bus (Redis) is unreachable. "
                "Try again in a moment."
            )
        return "Nothing is streaming, so there is nothing to stop."


async def request_stop(
    conversation_id: uuid.UUID | str, *, reason: str = Message.StopReason.USER_STOP
) -> StopResult:
    """Stop the conversation's streaming reply wherever it runs, and say what happened.

    Asks the owner through the layer and waits for its answer (sent after the partial is saved).
    No answer within CHAT_STOP_ANSWER_TIMEOUT means the owner is gone: the reply is finalised
    from its last checkpoint as interrupted / server_restart.
    """
    cid = str(conversation_id)
    streaming = await database_sync_to_async(selectors.streaming_message)(conversation_id=cid)
    if streaming is None:
        return StopResult("nothing", cid)
    if not streaming.owner_channel:
        # Nobody can be asked (a reply saved by an older version): close it from its checkpoint.
        return await _close_orphan(cid, streaming.pk)
    layer = get_channel_layer()
    assert layer is not None
    try:
        reply_channel = await layer.new_channel("stop-answer.")
        # Straight to the owner's own channel (no group membership needed, which a restarted
        # Redis forgets), named by message so that it can never stop a newer reply.
        await send(
            streaming.owner_channel,
            {
                "type": "chat.stop",
                "message_id": streaming.pk,
                "reason": reason,
                "reply_channel": reply_channel,
            },
        )
        # The timeout outside: its TimeoutError means "no answer", not "Redis is down".
        async with asyncio.timeout(settings.CHAT_STOP_ANSWER_TIMEOUT):
            answer = await _answer(layer, reply_channel, streaming.pk)
    except LayerUnavailable:
        logger.warning("stop for conversation %s: the channel layer is unreachable", cid)
        return StopResult("unavailable", cid, message_id=streaming.pk)
    except TimeoutError:
        return await _close_orphan(cid, streaming.pk)
    if answer is not None and answer["outcome"] == "stopped":
        return StopResult("stopped", cid, message_id=streaming.pk, chars=answer["chars"])
    message = await database_sync_to_async(selectors.message_by_id)(message_id=streaming.pk)
    return StopResult("finished", cid, message_id=message.pk, chars=len(message.content))


async def _answer(layer: Any, reply_channel: str, message_id: int) -> dict[str, Any] | None:
    """The owner's answer, or None if the reply ended without one.

    An owner that is going away (its tab closed or reloading) ends its reply itself but reads
    no more events, so it never answers: once the reply is no longer streaming, stop waiting.
    """
    receive = asyncio.ensure_future(layer.receive(reply_channel))
    try:
        while True:
            done, _ = await asyncio.wait([receive], timeout=ANSWER_POLL)
            if not done:
                message = await database_sync_to_async(selectors.message_by_id)(
                    message_id=message_id
                )
                if message.status == Message.Status.STREAMING:
                    continue
                # Ended: an owner that does answer is a moment behind its save.
                done, _ = await asyncio.wait([receive], timeout=ANSWER_POLL)
                if not done:
                    return None
            with layer_errors():
                return receive.result()
    finally:
        receive.cancel()


async def _close_orphan(cid: str, message_id: int) -> StopResult:
    """The owner did not answer: it is gone. Close the reply from its last checkpoint."""
    message = await database_sync_to_async(services.message_finalize_orphan)(message_id=message_id)
    if message.stop_reason == Message.StopReason.SERVER_RESTART:
        logger.warning("stop for conversation %s: no owner answered; orphan closed", cid)
        await _show_final(cid, message)
        return StopResult("orphan", cid, message_id=message.pk, chars=len(message.content))
    return StopResult("finished", cid, message_id=message.pk, chars=len(message.content))


async def request_stop_all(user_id: int) -> list[StopResult]:
    """Stop every streaming reply of one user, concurrently."""
    ids = await database_sync_to_async(selectors.streaming_conversation_ids)(user_id=user_id)
    return list(await asyncio.gather(*(request_stop(cid) for cid in ids)))


async def _show_final(conversation_id: str, message: Message) -> None:
    """Show every open tab the final form of a reply closed without its owner."""
    from chat.replies.reply import ReplyFinished
    from chat.ws import (
        render as fragments,  # rendering stays out of this module's import-time graph
    )

    html = fragments.for_event(ReplyFinished(message=message), for_owner=False)
    try:
        await group_send(conversation_id, {"type": "chat.fragment", "html": html, "sender": ""})
    except LayerUnavailable:
        logger.warning("conversation %s: could not show the closed orphan", conversation_id)


async def answer_stop(reply: Reply | None, event: dict[str, Any]) -> None:
    """Answer a `chat.stop` event sent to a reply's owner by `request_stop`: stop the reply if it
    is the one named and still streaming (its partial is saved first), then say what happened.

    Every door that owns replies answers stops with this: the WebSocket consumer on its own
    channel, the API and the terminal chat through a `StopInbox`.
    """
    if reply is not None and not reply.done and reply.message.pk == event["message_id"]:
        reply.stop(event.get("reason") or Message.StopReason.USER_STOP)
        message = await reply.wait()
        answer: dict[str, Any] = {"outcome": "stopped", "chars": len(message.content)}
    else:
        # That reply ended before the stop arrived (or a newer one runs): leave it be.
        answer = {"outcome": "finished", "chars": None}
    with contextlib.suppress(LayerUnavailable):
        await send(
            event["reply_channel"],
            {"type": "stop.answer", "message_id": event["message_id"], **answer},
        )


class StopInbox:
    """A channel-layer address where a door that is not a socket (the HTTP API, the terminal
    chat) hears stops for its reply, so `request_stop` reaches it from any process.

        inbox = await StopInbox.open()
        reply = await start_turn(..., owner_channel=inbox.channel)
        inbox.serve(reply)       # until close(): answers chat.stop events for this reply
        ...
        inbox.close()
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls) -> StopInbox:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS is not configured"
        return cls(await layer.new_channel("reply-owner."))

    def serve(self, reply: Reply) -> None:
        self._task = asyncio.create_task(
            self._serve(reply), name=f"reply-{reply.message.pk}-stop-inbox"
        )

    async def _serve(self, reply: Reply) -> None:
        layer = get_channel_layer()
        assert layer is not None
        delay = 0.1
        while not reply.done:
            try:
                with layer_errors():
                    event = await layer.receive(self.channel)
            except LayerUnavailable as exc:
                # Redis is down: stops from elsewhere wait for it (Ctrl+C, a closed connection
                # and the reply's own checkpoint still work).
                logger.warning("reply %s: stop inbox unreachable (%s)", reply.message.pk, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            if event.get("type") == "chat.stop":
                # Shielded: the door closes the inbox as soon as the reply has ended, which
                # may be before this answer (sent after the save) is on its way.
                await asyncio.shield(answer_stop(reply, event))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
