"""One assistant reply's life: history → provider stream → batches → the door's sink → saved.

Every door (the WebSocket consumer today) starts a turn with `start_turn()` and gets a `Reply`
back. The reply runs as two asyncio tasks owned by that door:

- the *upstream* task iterates the provider's stream. Stopping cancels exactly this task; the
  CancelledError leaves the SDK's `async with`, which closes the HTTP stream to the provider;
- the *driver* task coalesces text into batches (at most one per `batch_interval`), hands each
  batch to the sink, checkpoints on a timer, and saves the outcome when the stream ends.

The text saved for a stopped reply is exactly the text handed to the sink: a batch still
pending when Stop arrives was never shown, so it is dropped, not saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from channels.db import database_sync_to_async
from django.conf import settings

from chat.data import selectors, services
from chat.data.pricing import ConversationUsage
from chat.models import Conversation, Message
from chat.providers import (
    ChatTurn,
    Provider,
    ProviderError,
    StreamEnd,
    StreamStart,
    TextDelta,
    get_provider,
)
from chat.replies import context, titles

logger = logging.getLogger(__name__)


TurnKind = Literal["send", "regenerate", "edit", "continue"]


@dataclass(frozen=True, slots=True)
class TurnStarted:
    user_message: Message | None
    """The new (send) or edited (edit) user message; None when only the reply is new."""
    assistant_message: Message
    title: str = ""
    """The conversation's title (set from the first message), for the page's heading."""
    kind: TurnKind = "send"
    removed: tuple[int, ...] = ()
    """Messages the turn replaced (the old reply of a regenerate or an edit)."""
    trimmed: int = 0
    """The oldest turns left out of the request to fit the model's context window."""


@dataclass(frozen=True, slots=True)
class TextBatch:
    message_id: int
    text: str


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    message: Message
    usage: ConversationUsage | None = None
    """The conversation's token usage and cost, counting this reply."""


@dataclass(frozen=True, slots=True)
class TitleChanged:
    """The model named the conversation after its first exchange (chat/titles.py)."""

    conversation_id: str
    title: str


ReplyEvent = TurnStarted | TextBatch | ReplyFinished | TitleChanged

#: Each reply's driver task is named this plus the message id (chat/shutdown.py finds them).
REPLY_TASK_PREFIX = "reply-driver-"
Sink = Callable[[ReplyEvent], Awaitable[None]]


class Reply:
    """A streaming assistant reply. Create it with `start_turn()`."""

    def __init__(
        self,
        *,
        message: Message,
        history: list[ChatTurn],
        system: str,
        provider: Provider,
        sink: Sink,
        continues: bool = False,
        title_from: tuple[str, str] | None = None,
        refusal: str = "",
    ) -> None:
        self.message = message
        self._history = history
        self._system = system
        self._provider = provider
        self._sink = sink
        self._batch_interval: float = settings.CHAT_BATCH_INTERVAL
        self._checkpoint_interval: float = settings.CHAT_CHECKPOINT_INTERVAL

        # A continued reply keeps its text and its token counts so far, and adds to them.
        self.prefix = message.content if continues else ""
        self._base_usage = (
            (message.input_tokens, message.output_tokens, message.tokens_estimated)
            if continues
            else (None, None, False)
        )
        # (automatic title, user text) when this turn named the conversation: a better title
        # is asked of the model once the reply has ended (chat/titles.py).
        self._title_from = title_from
        self._title_task: asyncio.Task[None] | None = None
        # Set when the request cannot be made at all (it would not fit the context window):
        # the reply ends at once as an error with this reason, and the provider is not called.
        self._refusal = refusal

        self._pending: list[str] = []  # received, not yet handed to the sink
        self._sent: list[str] = [self.prefix] if self.prefix else []  # what the user saw
        self._received_chars = 0
        self._wake = asyncio.Event()
        self._stop_reason: str | None = None
        self._error: str = ""
        self._end: StreamEnd | None = None
        self._input_tokens: int | None = None
        self._started = time.monotonic()
        self._first_token_at: float | None = None
        self._upstream: asyncio.Task[None] | None = None
        self._driver: asyncio.Task[Message] | None = None

    # --- what a door calls --------------------------------------------------------------

    def start(self) -> None:
        self._upstream = asyncio.create_task(
            self._read_upstream(), name=f"reply-{self.message.pk}-upstream"
        )
        self._driver = asyncio.create_task(
            self._drive(), name=f"{REPLY_TASK_PREFIX}{self.message.pk}"
        )

    @property
    def done(self) -> bool:
        return self._driver is None or self._driver.done()

    def stop(self, reason: str) -> None:
        """Stop now: close the upstream stream at once; the driver then saves the partial.

        Safe to call twice or after the end; the first reason wins.
        """
        if self._stop_reason is None and not self.done:
            self._stop_reason = reason
        if self._upstream is not None and not self._upstream.done():
            self._upstream.cancel()
        # Wake the driver now: an upstream task cancelled before its first step never runs its
        # `finally`, so it would not wake the driver until the next checkpoint.
        self._wake.set()

    async def wait(self) -> Message:
        """The saved message once the reply has ended (shielded: waiting never cancels it)."""
        assert self._driver is not None, "start() first"
        return await asyncio.shield(self._driver)

    # --- the two tasks --------------------------------------------------------------------

    async def _read_upstream(self) -> None:
        if self._refusal:
            self._error = self._refusal
            self._wake.set()
            return
        try:
            stream = self._provider.stream(
                model=self.message.model,
                system=self._system,
                history=self._history,
                max_tokens=self.message.max_tokens or settings.CHAT_MAX_TOKENS,
            )
            async for event in stream:
                if isinstance(event, TextDelta):
                    if self._first_token_at is None:
                        self._first_token_at = time.monotonic()
                    self._pending.append(event.text)
                    self._received_chars += len(event.text)
                    self._wake.set()
                elif isinstance(event, StreamStart):
                    self._input_tokens = event.input_tokens
                elif isinstance(event, StreamEnd):
                    self._end = event
        except ProviderError as exc:
            logger.warning(
                "reply %s in conversation %s failed upstream: %s",
                self.message.pk,
                self.message.conversation_id,
                exc,
            )
            self._error = str(exc)
        except Exception:
            logger.exception(
                "reply %s in conversation %s crashed", self.message.pk, self.message.conversation_id
            )
            self._error = "The reply failed because of a server error."
        finally:
            self._wake.set()

    async def _drive(self) -> Message:
        assert self._upstream is not None
        try:
            await self._pump(self._upstream)
        except asyncio.CancelledError:
            # The owner itself is going away (process shutdown): save what was seen, then go.
            self.stop(Message.StopReason.DISCONNECT)
            await self._finish()
            raise
        except Exception:
            logger.exception("reply %s: delivering a batch failed", self.message.pk)
            self._error = self._error or "The reply could not be delivered."
            self._upstream.cancel()
        message = await self._finish()
        if self._title_from is not None and message.content:
            self._title_task = asyncio.create_task(
                self._retitle(message, *self._title_from), name=f"reply-title-{message.pk}"
            )
        return message

    async def _retitle(self, message: Message, auto_title: str, user_text: str) -> None:
        title = await titles.suggest(self._provider, user_text=user_text, reply=message.content)
        if not title or title == auto_title:
            return
        renamed = await database_sync_to_async(services.conversation_retitle)(
            conversation_id=message.conversation_id, old=auto_title, new=title
        )
        if renamed:
            try:
                await self._sink(TitleChanged(str(message.conversation_id), title))
            except Exception:
                logger.debug(
                    "conversation %s: the new title could not be shown", message.conversation_id
                )

    async def _pump(self, upstream: asyncio.Task[None]) -> None:
        last_checkpoint = time.monotonic()
        while True:
            # Woken by text, by the end of the stream, or by the checkpoint timer: a reply
            # waiting long for its first token still beats its heartbeat.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._checkpoint_interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stop_reason is not None:
                return  # a pending batch was never shown: it is dropped with the stop
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                self._sent.append(text)
                await self._sink(TextBatch(message_id=self.message.pk, text=text))
            if upstream.done() and not self._pending:
                # (Text that arrived while the last batch was being delivered goes out first.)
                return
            if time.monotonic() - last_checkpoint >= self._checkpoint_interval:
                last_checkpoint = time.monotonic()
                still_ours = await database_sync_to_async(services.message_checkpoint)(
                    message_id=self.message.pk, content="".join(self._sent)
                )
                if not still_ours:
                    # Closed elsewhere (a stop that could not reach us, or the reaper): that
                    # outcome stands in the database, so stop spending tokens on it now.
                    logger.warning(
                        "reply %s was closed elsewhere while streaming; stopping it",
                        self.message.pk,
                    )
                    self.stop(Message.StopReason.SERVER_RESTART)
                    return
            # The coalescing window; it ends early when the stream ends or is stopped.
            await asyncio.wait([upstream], timeout=self._batch_interval)

    async def _finish(self) -> Message:
        assert self._upstream is not None
        if not self._upstream.done():
            await asyncio.wait([self._upstream])
        content = "".join(self._sent)
        ttft = (
            round((self._first_token_at - self._started) * 1000)
            if self._first_token_at is not None
            else None
        )
        estimated = services.estimate_tokens(self._received_chars)
        fields: dict[str, object]
        output_tokens: int | None
        if self._stop_reason is not None:
            fields = {"status": Message.Status.INTERRUPTED, "stop_reason": self._stop_reason}
            output_tokens, tokens_estimated = estimated, True
        elif self._end is not None and not self._error:
            fields = {"status": Message.Status.COMPLETE, "stop_reason": self._end.stop_reason}
            output_tokens, tokens_estimated = self._end.output_tokens, False
        else:
            fields = {
                "status": Message.Status.ERROR,
                "stop_reason": Message.StopReason.ERROR,
                "error": self._error or "The model's stream ended unexpectedly.",
            }
            output_tokens, tokens_estimated = estimated, True
        base_in, base_out, base_estimated = self._base_usage
        fields |= {
            "content": content,
            "input_tokens": _plus(base_in, self._input_tokens),
            "output_tokens": _plus(base_out, output_tokens),
            "tokens_estimated": tokens_estimated or base_estimated,
            "time_to_first_token_ms": ttft,
        }
        # Shielded: a second cancellation must not lose the save.
        message = await asyncio.shield(
            database_sync_to_async(services.message_finalize)(message_id=self.message.pk, **fields)
        )
        logger.info(
            "reply %s in conversation %s ended: %s (%s), %d chars",
            message.pk,
            message.conversation_id,
            message.status,
            message.stop_reason,
            len(message.content),
        )
        usage = (
            await database_sync_to_async(selectors.conversation_usage)(
                conversation_id=message.conversation_id
            )
            if message.conversation_id is not None
            else None
        )
        try:
            await self._sink(ReplyFinished(message=message, usage=usage))
        except Exception:
            # The door is gone (socket closed); the outcome is saved, which is what matters.
            logger.debug("reply %s: the final frame could not be delivered", message.pk)
        return message


def _plus(a: int | None, b: int | None) -> int | None:
    """Two token counts added, where either may be unknown."""
    return None if a is None and b is None else (a or 0) + (b or 0)


@dataclass(frozen=True, slots=True)
class _Begun:
    started: TurnStarted
    history: list[ChatTurn]
    title_from: tuple[str, str] | None
    refusal: str = ""


def _begin_turn(
    conversation: Conversation, kind: TurnKind, text: str, owner_channel: str
) -> _Begun:
    # The socket's copy may predate a change of model, system prompt or title: read them now.
    conversation.refresh_from_db(fields=["model", "system_prompt", "title"])
    had_title = bool(conversation.title)
    # The offline demo answers whatever model is chosen; its replies say so (and cost nothing).
    demo = settings.CHAT_PROVIDER == "demo"
    model = "demo" if demo else conversation.model or settings.CHAT_MODEL
    max_tokens = settings.CHAT_MAX_TOKENS
    user_message: Message | None = None
    removed: list[int] = []
    if kind == "send":
        user_message, assistant_message = services.turn_start(
            conversation=conversation,
            text=text,
            model=model,
            max_tokens=max_tokens,
            owner_channel=owner_channel,
        )
    elif kind == "continue":
        assistant_message = services.turn_continue(
            conversation=conversation, max_tokens=max_tokens, owner_channel=owner_channel
        )
    elif kind == "edit":
        user_message, removed, assistant_message = services.turn_edit(
            conversation=conversation,
            text=text,
            model=model,
            max_tokens=max_tokens,
            owner_channel=owner_channel,
        )
    else:  # regenerate: the user message is unchanged, so the page keeps its bubble
        _, removed, assistant_message = services.turn_regenerate(
            conversation=conversation,
            model=model,
            max_tokens=max_tokens,
            owner_channel=owner_channel,
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
    title_from = (conversation.title, text) if kind == "send" and not had_title else None
    return _Begun(started=started, history=history, title_from=title_from, refusal=refusal)


async def start_turn(
    *,
    conversation: Conversation,
    text: str,
    sink: Sink,
    owner_channel: str = "",
    kind: TurnKind = "send",
) -> Reply:
    """Start a reply: to a new user message (send), to the last one again (regenerate), to
    the last one edited to `text` (edit), or from where the last reply was cut off (continue).

    The turn is saved, announced to the sink, and its reply started. `owner_channel` is the
    channel-layer address where the door answers `chat.stop` events (see chat/control.py).
    Raises services.ReplyAlreadyStreaming if a reply is already streaming and
    services.TurnRefused if the conversation has nothing to regenerate, edit or continue;
    either way nothing is saved.
    """
    begun = await database_sync_to_async(_begin_turn)(conversation, kind, text, owner_channel)
    await sink(begun.started)
    reply = Reply(
        message=begun.started.assistant_message,
        history=begun.history,
        system=conversation.system_prompt,
        provider=get_provider(),
        sink=sink,
        continues=kind == "continue",
        title_from=begun.title_from,
        refusal=begun.refusal,
    )
    reply.start()
    return reply
