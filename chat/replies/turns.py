"""The one turn API every door uses: the socket, the HTTP API and the terminal chat.

    turns.watch(c.pk, page)                                           # a page shows a conversation
    reply = await turns.begin(conversation=c, text=t, starter=page)   # a page: it only watches
    async with turns.start(conversation=c, text=t) as turn:           # a door that holds it
        async for event in turn:                                      # TurnStarted … ReplyFinished
            ...
    result = await turns.stop(c.pk)                                   # from anywhere

A turn is saved, its reply registered in this process and started, and the turn announced to
everyone watching the conversation. `begin` leaves the reply to its audience (it goes on while
any page watches, and for the grace after the last one leaves). `start` *holds* it: leaving the
`async with` stops it at once, as an API caller hanging up or Ctrl+C in the terminal must.

A turn that cannot start raises `services.TurnRefused` (or a subclass) whose message says why,
for every door to show as it is; nothing is saved then. `ServerBusy` is the one a caller may
simply retry in a moment (chat/replies/admission.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat.data import selectors, services
from chat.data.services import LimitReached, ReplyAlreadyStreaming, TurnRefused
from chat.files import store
from chat.models import Conversation, Message
from chat.providers import ChatTurn, Thinking, catalog, get_provider
from chat.replies import admission, context, layer, stops
from chat.replies.admission import ServerBusy
from chat.replies.audience import HolderQueue
from chat.replies.events import ReplyEvent, TurnKind, TurnStarted
from chat.replies.registry import Watcher, registry
from chat.replies.reply import Reply
from chat.replies.stops import StopResult

__all__ = [
    "LimitReached",
    "Reply",
    "ReplyAlreadyStreaming",
    "ServerBusy",
    "StopResult",
    "Turn",
    "TurnKind",
    "TurnRefused",
    "begin",
    "start",
    "stop",
    "stop_all",
    "unwatch",
    "watch",
]

logger = logging.getLogger(__name__)


async def begin(
    *,
    conversation: Conversation,
    text: str = "",
    kind: TurnKind = "send",
    attachments: Sequence[uuid.UUID] = (),
    starter: Watcher | None = None,
) -> Reply:
    """Start a reply: to a new user message (send), to the last one again (regenerate), to
    the last one edited to `text` (edit), or from where the last reply was cut off (continue).

    `attachments`: the user's unsent uploads (chat/files/store.py) that go with a new message.
    `starter` is the page that asked (its turn-started frame empties its composer). Raises
    TurnRefused (nothing saved, the uploads kept for another try) if the turn cannot start.
    """
    reply, _ = await _begin(
        conversation, _Asked(text, kind, tuple(attachments)), starter=starter, hold=False
    )
    return reply


def start(
    *,
    conversation: Conversation,
    text: str,
    kind: TurnKind = "send",
    attachments: Sequence[uuid.UUID] = (),
) -> Starting:
    """Start a turn held by the caller: `turn = await start(...)` or `async with start(...)`."""
    return Starting(conversation, _Asked(text, kind, tuple(attachments)))


def watch(conversation_id: uuid.UUID | str, page: Watcher) -> Reply | None:
    """A page shows the conversation: every reply of this process in it is shown to `page`
    from now on. Returns the live reply, if any, for the page to show as it stands."""
    return registry.watch(conversation_id, page)


async def unwatch(conversation_id: uuid.UUID | str, page: Watcher) -> None:
    """A page closed. A reply nobody else watches goes on for CHAT_DISCONNECT_GRACE seconds
    (see chat/replies/audience.py). With no grace, a page that leaves stops the reply it
    started at once, as when replies belonged to the page: it is saved on return."""
    reply = registry.for_conversation(conversation_id)
    registry.unwatch(conversation_id, page)
    if reply is None or settings.CHAT_DISCONNECT_GRACE > 0:
        return
    if reply.audience.starter is page or not reply.audience.watched():
        reply.stop(Message.StopReason.DISCONNECT)
        await reply.wait()


async def stop(
    conversation_id: uuid.UUID | str, *, reason: str = Message.StopReason.USER_STOP
) -> StopResult:
    """Stop the conversation's streaming reply wherever it runs; returns once it is saved."""
    return await stops.request_stop(conversation_id, reason=reason)


async def stop_all(user_id: int) -> list[StopResult]:
    return await stops.request_stop_all(user_id)


class Turn:
    """A door's hold on the reply it started: its events in order, and its end.

    Iterating yields the reply's events until it has nothing more to say (after its
    `ReplyFinished`, and its `TitleChanged` if the conversation is named). Leaving the
    `async with`, or `hang_up()`, stops a reply still streaming (`disconnect`).
    """

    def __init__(self, reply: Reply, events: HolderQueue) -> None:
        self.reply = reply
        self._events = events

    async def __aenter__(self) -> Turn:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.leave()

    def __aiter__(self) -> AsyncIterator[ReplyEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ReplyEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    def stop(self, reason: str = Message.StopReason.USER_STOP) -> None:
        self.reply.stop(reason)

    def hang_up(self) -> None:
        """The door is gone (an API caller hung up): stop at once. Safe to call again."""
        self.reply.stop(Message.StopReason.DISCONNECT)

    async def hand_over(self, *, within: float) -> None:
        """Let go of the reply once a page shows it (the page this door sent the user to), or
        after `within` seconds: from then on it goes on, or stops, as any page's reply does
        (chat/replies/audience.py's grace). Unlike `leave`, this never stops it."""
        audience = self.reply.audience
        deadline = asyncio.get_running_loop().time() + within
        try:
            while not self.reply.done and not audience.pages_watch():
                if asyncio.get_running_loop().time() >= deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            audience.release(self._events)

    async def leave(self) -> None:
        if not self.reply.done:
            self.hang_up()
            logger.info("reply %s: its door left; stopped", self.reply.message_id)
        try:
            await self.reply.wait()
        finally:
            self.reply.audience.release(self._events)


class Starting:
    """`start()`'s result: await it for a `Turn`, or use it as `async with`."""

    def __init__(self, conversation: Conversation, asked: _Asked) -> None:
        self._conversation = conversation
        self._asked = asked
        self._turn: Turn | None = None

    def __await__(self) -> Generator[Any, None, Turn]:
        return self._start().__await__()

    async def _start(self) -> Turn:
        reply, events = await _begin(self._conversation, self._asked, starter=None, hold=True)
        assert events is not None
        return Turn(reply, events)

    async def __aenter__(self) -> Turn:
        self._turn = await self._start()
        return self._turn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._turn is not None
        await self._turn.leave()


@dataclass(frozen=True, slots=True)
class _Asked:
    """What a door asked for: the turn's kind, its text, and the uploads sent with it."""

    text: str
    kind: TurnKind
    attachments: tuple[uuid.UUID, ...] = ()


async def _begin(
    conversation: Conversation,
    asked: _Asked,
    *,
    starter: Watcher | None,
    hold: bool,
) -> tuple[Reply, HolderQueue | None]:
    if registry.for_conversation(conversation.pk) is not None:
        raise ReplyAlreadyStreaming  # known here without asking the database
    # A busy process says so before anything is saved.
    with admission.admitted():
        channel = await layer.new_channel()
        prepared = await database_sync_to_async(_prepare)(conversation, asked, channel)
        reply = Reply(
            started=prepared.started,
            channel=channel,
            history=prepared.history,
            system=conversation.system_prompt,
            provider=get_provider(),
            continues=asked.kind == "continue",
            title_from=prepared.title_from,
            refusal=prepared.refusal,
            thinking=prepared.thinking,
            cache=settings.CHAT_PROMPT_CACHING,
        )
        registry.add(reply)
    events = reply.audience.hold() if hold else None
    reply.audience.starter = starter
    # Announced here before the reply's first batch; to other processes by its driver.
    reply.audience.show_here(prepared.started)
    reply.start()
    return reply, events


@dataclass(frozen=True, slots=True)
class _Prepared:
    started: TurnStarted
    history: list[ChatTurn]
    title_from: tuple[str, str] | None
    refusal: str = ""
    thinking: Thinking | None = None


@dataclass(frozen=True, slots=True)
class _Request:
    """What a turn asks of the model besides its history."""

    model: str
    max_tokens: int
    thinking_budget: int
    """Tokens the model may think for (0: no thinking)."""
    thinking: Thinking | None
    """The request's thinking parameter (None: left out)."""


def _request(conversation: Conversation, kind: TurnKind) -> _Request:
    """The model, output limit and thinking of a turn. A Continue carries on in its reply's
    model; it thinks again only when the reply has no answer yet: thinking cannot be combined
    with a prefilled answer, so one that goes on from a partial answer does not think."""
    answer_tokens: int = settings.CHAT_MAX_TOKENS
    budget = conversation.thinking_budget
    if settings.CHAT_PROVIDER == "demo":
        # The offline demo answers whatever model is chosen; its replies say so.
        model = "demo"
    else:
        model = conversation.model or settings.CHAT_MODEL
    if kind == "continue":
        last = selectors.newest_message(conversation=conversation)
        if last is not None and last.role == Message.Role.ASSISTANT:
            model = last.model or model
            if last.content.strip():
                budget = 0
    spec = catalog.spec(model)
    budget = catalog.thinking_budget_for(spec, budget, answer_tokens=answer_tokens)
    thinking: Thinking | None = None
    if budget:
        adaptive = spec.thinking == "adaptive"
        effort = catalog.thinking_effort(budget)
        thinking = Thinking(budget_tokens=budget, adaptive=adaptive, effort=effort)
    elif spec.thinking == "adaptive":
        thinking = Thinking(budget_tokens=0)  # said outright: such a model may think unasked
    max_tokens = catalog.request_max_tokens(
        spec, answer_tokens=answer_tokens, thinking_budget=budget
    )
    return _Request(model, max_tokens, budget, thinking)


def _prepare(conversation: Conversation, asked: _Asked, reply_channel: str) -> _Prepared:
    """Save the turn (one transaction) and build the request's history."""
    kind, text = asked.kind, asked.text
    # The caller's copy may predate a change of model, system prompt or title: read them now.
    conversation.refresh_from_db(fields=["model", "system_prompt", "title", "thinking_budget"])
    had_title = bool(conversation.title)
    request = _request(conversation, kind)
    model, max_tokens, budget = request.model, request.max_tokens, request.thinking_budget
    user_message: Message | None = None
    removed: list[int] = []
    if kind == "send":
        user_message, assistant_message = services.turn_create(
            conversation=conversation,
            text=text,
            model=model,
            max_tokens=max_tokens,
            owner_channel=reply_channel,
            thinking_budget=budget,
            attachments=asked.attachments,
        )
    elif kind == "continue":
        assistant_message = services.turn_continue(
            conversation=conversation,
            max_tokens=max_tokens,
            owner_channel=reply_channel,
            thinking_budget=budget,
        )
    elif kind == "edit":
        user_message, removed, assistant_message = services.turn_edit(
            conversation=conversation,
            text=text,
            model=model,
            max_tokens=max_tokens,
            owner_channel=reply_channel,
            thinking_budget=budget,
        )
    else:  # regenerate: the user message is unchanged, so the page keeps its bubble
        _, removed, assistant_message = services.turn_regenerate(
            conversation=conversation,
            model=model,
            max_tokens=max_tokens,
            owner_channel=reply_channel,
            thinking_budget=budget,
        )
    history = selectors.history_for_model(
        conversation=conversation, before_message_id=assistant_message.pk
    )
    if kind == "continue" and assistant_message.content:
        # The model picks up where its reply was cut off: the partial is the start of its turn.
        if history and history[-1].role == "assistant":
            joined = f"{history[-1].content}\n\n{assistant_message.content}"
            history[-1] = ChatTurn(role="assistant", content=joined)
        else:
            history.append(ChatTurn(role="assistant", content=assistant_message.content))
    refusal = ""
    try:
        fitted = context.fit_history(
            history,
            context_tokens=settings.CHAT_CONTEXT_TOKENS,
            max_tokens=max_tokens,
            system=conversation.system_prompt,
        )
        history, trimmed = fitted.turns, fitted.dropped
    except context.ContextTooSmall as exc:
        history, trimmed, refusal = [], 0, str(exc)
    history = store.with_bytes(history)  # only now: the files of turns that fit
    if trimmed:
        logger.info(
            "conversation %s: %d oldest turns left out to fit the context window",
            conversation.pk,
            trimmed,
        )
    started = TurnStarted(
        user_message=user_message,
        assistant_message=assistant_message,
        title=str(conversation),
        kind=kind,
        removed=tuple(removed),
        trimmed=trimmed,
    )
    asked_about = text or conversation.title  # (a message of files only: their names)
    title_from = (conversation.title, asked_about) if kind == "send" and not had_title else None
    return _Prepared(
        started=started,
        history=history,
        title_from=title_from,
        refusal=refusal,
        thinking=request.thinking,
    )
