"""Stopping a conversation's reply from anywhere: this process, another tab, another process.

A reply of this process is stopped directly (the registry has it). Otherwise the stop is sent to
the reply's own channel-layer address (its message's `owner_channel`), and the reply answers
once its partial is saved. When nobody answers, the process streaming it is gone and the orphan
is finalised here, from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils.formats import number_format
from django.utils.translation import gettext

from chat.data import selectors, services
from chat.models import Message
from chat.replies import layer
from chat.replies.events import FragmentEvent, ReplyFinished, StopEvent
from chat.replies.registry import ORIGIN, registry
from chat.ws import render

logger = logging.getLogger(__name__)

# While waiting for a reply's answer, how often to look whether it ended anyway.
ANSWER_POLL = 0.1

Outcome = Literal["stopped", "finished", "nothing", "orphan", "unavailable"]


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
            return gettext("Stopped. %(chars)s characters of the reply were saved.") % {
                "chars": number_format(self.chars, force_grouping=True)
            }
        if self.outcome == "orphan":
            return gettext(
                "The server streaming that reply is gone; the reply was closed with the "
                "%(chars)s characters saved at its last checkpoint."
            ) % {"chars": number_format(self.chars, force_grouping=True)}
        if self.outcome == "finished":
            return gettext("That reply had already finished.")
        if self.outcome == "unavailable":
            return gettext(
                "The stop could not be delivered: the message bus (Redis) is unreachable. "
                "Try again in a moment."
            )
        return gettext("Nothing is streaming, so there is nothing to stop.")


async def request_stop(
    conversation_id: uuid.UUID | str, *, reason: str = Message.StopReason.USER_STOP
) -> StopResult:
    """Stop the conversation's streaming reply wherever it runs, and say what happened.

    Returns once the partial is saved. A reply on another process is asked through the layer;
    no answer within CHAT_STOP_ANSWER_TIMEOUT means its process is gone: the reply is finalised
    from its last checkpoint as interrupted / server_restart.
    """
    cid = str(conversation_id)
    here = registry.for_conversation(cid)
    if here is not None:
        # Ours: no database read and no layer on the path of the stop.
        ending = here.done or here.stop_reason is not None  # (it ended or was stopped already)
        here.stop(reason)
        message = await here.wait()
        outcome: Outcome = "finished" if ending else "stopped"
        return StopResult(outcome, cid, message_id=message.pk, chars=len(message.content))
    streaming = await database_sync_to_async(selectors.streaming_message)(conversation_id=cid)
    if streaming is None:
        return StopResult("nothing", cid)
    if not streaming.owner_channel:
        # Nobody can be asked (a reply saved by an older version): close it from its checkpoint.
        return await _close_orphan(cid, streaming.pk)
    try:
        answer_channel = await layer.new_channel()
        # Straight to the reply's own address (no group membership needed, which a restarted
        # Redis forgets), naming the message, so that it can never stop a newer reply.
        stop: StopEvent = {
            "type": "chat.stop",
            "message_id": streaming.pk,
            "reason": reason,
            "reply_channel": answer_channel,
        }
        await layer.send(streaming.owner_channel, stop)
        # The timeout outside: its TimeoutError means "no answer", not "Redis is down".
        async with asyncio.timeout(settings.CHAT_STOP_ANSWER_TIMEOUT):
            answer = await _answer(answer_channel, streaming.pk)
    except layer.LayerUnavailable:
        logger.warning("stop for conversation %s: the channel layer is unreachable", cid)
        return StopResult("unavailable", cid, message_id=streaming.pk)
    except TimeoutError:
        return await _close_orphan(cid, streaming.pk)
    if answer is not None and answer["outcome"] == "stopped":
        return StopResult("stopped", cid, message_id=streaming.pk, chars=answer["chars"])
    message = await database_sync_to_async(selectors.message_by_id)(message_id=streaming.pk)
    return StopResult("finished", cid, message_id=message.pk, chars=len(message.content))


async def _answer(answer_channel: str, message_id: int) -> dict[str, Any] | None:
    """The reply's answer, or None if it ended without one (it ended by itself meanwhile)."""
    receive = asyncio.ensure_future(layer.receive(answer_channel))
    try:
        while True:
            done, _ = await asyncio.wait([receive], timeout=ANSWER_POLL)
            if not done:
                message = await database_sync_to_async(selectors.message_by_id)(
                    message_id=message_id
                )
                if message.status == Message.Status.STREAMING:
                    continue
                # Ended: a reply that does answer is a moment behind its save.
                done, _ = await asyncio.wait([receive], timeout=ANSWER_POLL)
                if not done:
                    return None
            return receive.result()
    finally:
        receive.cancel()


async def _close_orphan(cid: str, message_id: int) -> StopResult:
    """Nobody answered: the reply's process is gone. Close it from its last checkpoint."""
    message = await database_sync_to_async(services.message_finalize_orphan)(message_id=message_id)
    if message.stop_reason == Message.StopReason.SERVER_RESTART:
        logger.warning("stop for conversation %s: no process answered; orphan closed", cid)
        await _show_final(cid, message)
        return StopResult("orphan", cid, message_id=message.pk, chars=len(message.content))
    return StopResult("finished", cid, message_id=message.pk, chars=len(message.content))


async def request_stop_all(user_id: int) -> list[StopResult]:
    """Stop every streaming reply of one user, concurrently."""
    ids = await database_sync_to_async(selectors.streaming_conversation_ids)(user_id=user_id)
    return list(await asyncio.gather(*(request_stop(cid) for cid in ids)))


async def _show_final(conversation_id: str, message: Message) -> None:
    """Show every open page the final form of a reply closed without its process."""
    event: FragmentEvent = {
        "type": "chat.fragment",
        "html": render.for_event(ReplyFinished(message=message), for_owner=False),
        "origin": ORIGIN,
        "reply": message.pk,
        "part": "final",
        "reply_channel": "",
    }
    try:
        await layer.group_send(conversation_id, event)
    except layer.LayerUnavailable:
        logger.warning("conversation %s: could not show the closed orphan", conversation_id)
    # This process's own pages skip group events from ORIGIN: show it to them directly.
    for watcher in registry.watchers(conversation_id):
        watcher.show(ReplyFinished(message=message), mine=False)
