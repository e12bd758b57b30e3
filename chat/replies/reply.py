"""One assistant reply's life: history → provider stream → batches → its audience → saved.

A reply belongs to its process, not to the door that started it: `chat/replies/turns.py`
creates it, the registry holds it while it streams, and its audience (chat/replies/audience.py)
is whoever watches it, in any process. It runs as asyncio tasks of its own:

- the *upstream* task iterates the provider's stream. Stopping cancels exactly this task; the
  CancelledError leaves the SDK's `async with`, which closes the HTTP stream to the provider;
- the *driver* task coalesces text into batches (at most one per `batch_interval`), publishes
  each batch, checkpoints on a timer, and saves the outcome when the stream ends;
- the *inbox* task reads the reply's own channel-layer address: stops and watchers from any
  process arrive there;
- the *guard* task stops the reply when nobody has watched it for the grace.

The text saved for a stopped reply is exactly the text published: a batch still pending when
Stop arrives was never shown, so it is dropped, not saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat.data import selectors, services
from chat.models import Message
from chat.providers import (
    ChatTurn,
    Provider,
    ProviderError,
    StreamEnd,
    StreamStart,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ThinkingSigned,
)
from chat.replies import layer, process_metrics, titles
from chat.replies.audience import Audience
from chat.replies.events import (
    ReplyFinished,
    Snapshot,
    StopAnswer,
    TextBatch,
    TitleChanged,
    TurnStarted,
)
from chat.replies.registry import registry

logger = logging.getLogger(__name__)


class Reply:
    """A streaming assistant reply. Create it with `chat.replies.turns`."""

    def __init__(
        self,
        *,
        started: TurnStarted,
        channel: str,
        history: list[ChatTurn],
        system: str,
        provider: Provider,
        continues: bool = False,
        title_from: tuple[str, str] | None = None,
        refusal: str = "",
        thinking: Thinking | None = None,
        cache: bool = False,
    ) -> None:
        message = started.assistant_message
        self.started = started
        """How the turn began (shown to a page that opens mid-reply)."""
        self.message = message
        self.message_id: int = message.pk
        self.conversation_id = str(message.conversation_id)
        self.channel = channel
        """The reply's own channel-layer address (stored as the message's `owner_channel`)."""
        self.audience = Audience(self)
        self._history = history
        self._system = system
        self._provider = provider
        self._thinking = thinking
        self._cache = cache
        self._batch_interval: float = settings.CHAT_BATCH_INTERVAL
        self._checkpoint_interval: float = settings.CHAT_CHECKPOINT_INTERVAL

        # A continued reply keeps its text, thinking and token counts so far, and adds to them.
        self.prefix = message.content if continues else ""
        thought = message.thinking if continues else ""
        self._base_usage = (
            (message.input_tokens, message.output_tokens, message.tokens_estimated)
            if continues
            else (None, None, False)
        )
        self._base_cache = (
            (message.cache_read_input_tokens, message.cache_creation_input_tokens)
            if continues
            else (None, None)
        )
        self._base_thinking_ms = message.thinking_ms if continues else None
        # (automatic title, user text) when this turn named the conversation: a better title
        # is asked of the model once the reply has ended (chat/replies/titles.py).
        self._title_from = title_from
        # Set when the request cannot be made at all (it would not fit the context window):
        # the reply ends at once as an error with this reason, and the provider is not called.
        self._refusal = refusal

        self._pending: list[str] = []  # received, not yet published
        self._sent: list[str] = [self.prefix] if self.prefix else []  # what the pages were shown
        # The thinking likewise. A second thought (Continue on a reply stopped while it
        # thought) follows the first after a blank line.
        self._pending_thinking: list[str] = []
        self._thought: list[str] = [thought] if thought else []
        self._signature = ""
        self._thinking_from: float | None = None
        self._thinking_until: float | None = None
        self._cache_usage: tuple[int | None, int | None] = (None, None)
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
        self._inbox: asyncio.Task[None] | None = None
        self._guard: asyncio.Task[None] | None = None
        self._settler: asyncio.Task[None] | None = None
        self._titling: asyncio.Task[None] | None = None
        self._busy: set[asyncio.Task[Any]] = set()  # stop answers, snapshots, checkpoints
        self._checkpointing = False
        self._stopped_at: float | None = None
        self._closed = asyncio.Event()

    # --- what doors call (through chat/replies/turns.py) ---------------------------------------

    def start(self) -> None:
        """Start streaming; the turn's start (already shown in this process) goes to the other
        processes' pages first."""
        self._upstream = asyncio.create_task(self._read_upstream())
        self._driver = asyncio.create_task(self._drive())
        self._inbox = asyncio.create_task(self._serve_inbox())
        self._guard = asyncio.create_task(self.audience.guard())

    @property
    def done(self) -> bool:
        return self._driver is None or self._driver.done()

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def stop(self, reason: str) -> None:
        """Stop now: close the upstream stream at once; the driver then saves the partial.

        Safe to call twice or after the end; the first reason wins.
        """
        if self._stop_reason is None and not self.done:
            self._stop_reason = reason
        if self._upstream is not None and not self._upstream.done():
            self._upstream.cancel()
            if self._stopped_at is None:
                # Timed until the upstream task has left the SDK's stream, which closes it.
                self._stopped_at = stopped_at = time.monotonic()
                self._upstream.add_done_callback(
                    lambda _: process_metrics.STOP_SECONDS.observe(time.monotonic() - stopped_at)
                )
        # Wake the driver now: an upstream task cancelled before its first step never runs its
        # `finally`, so it would not wake the driver until the next checkpoint.
        self._wake.set()

    async def wait(self) -> Message:
        """The saved message once the reply has ended (shielded: waiting never cancels it)."""
        assert self._driver is not None, "start() first"
        return await asyncio.shield(self._driver)

    async def closed(self) -> None:
        """Everything the reply does is over: saved, its title asked for, stops answered.
        Cancelling this wait gives up on the title (the terminal's Ctrl+C after the reply)."""
        await self._closed.wait()

    def give_up_title(self) -> None:
        if self._titling is not None:
            self._titling.cancel()

    def text_so_far(self) -> str:
        """The answer's text the pages have been shown."""
        return "".join(self._sent)

    def thinking_so_far(self) -> str:
        """The thinking the pages have been shown."""
        return "".join(self._thought)

    def thinking_seconds(self) -> float | None:
        """How long the model has thought (so far, or in all once it answered)."""
        if self._thinking_from is None:
            return None
        until = self._thinking_until or time.monotonic()
        return (self._base_thinking_ms or 0) / 1000 + until - self._thinking_from

    def snapshot(self) -> Snapshot:
        """The reply as the pages have been shown it, for a page that starts watching now."""
        return Snapshot(self.message, self.text_so_far(), self.thinking_so_far())

    def shown(self, batch: TextBatch) -> None:
        """A batch was handed to the audience (called by it, in order)."""
        if batch.thinking:
            self._thought.append(batch.thinking)
        if batch.text:
            self._sent.append(batch.text)

    # --- the tasks --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

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
                thinking=self._thinking,
                cache=self._cache,
            )
            async for event in stream:
                if isinstance(event, TextDelta):
                    now = time.monotonic()
                    if self._first_token_at is None:
                        self._first_token_at = now
                    if self._thinking_from is not None and self._thinking_until is None:
                        self._thinking_until = now
                    self._pending.append(event.text)
                    self._received_chars += len(event.text)
                    self._wake.set()
                elif isinstance(event, ThinkingDelta):
                    now = time.monotonic()
                    if self._first_token_at is None:
                        self._first_token_at = now
                    if self._thinking_from is None:
                        self._thinking_from = now
                        if self._thought:
                            self._pending_thinking.append("\n\n")
                    self._pending_thinking.append(event.text)
                    self._received_chars += len(event.text)
                    self._wake.set()
                elif isinstance(event, ThinkingSigned):
                    self._signature = event.signature
                    self._thinking_until = self._thinking_until or time.monotonic()
                elif isinstance(event, StreamStart):
                    self._input_tokens = event.input_tokens
                    self._cache_usage = (
                        event.cache_read_input_tokens,
                        event.cache_creation_input_tokens,
                    )
                elif isinstance(event, StreamEnd):
                    self._end = event
        except ProviderError as exc:
            logger.warning(
                "reply %s in conversation %s failed upstream: %s",
                self.message_id,
                self.conversation_id,
                exc,
            )
            self._error = str(exc)
        except Exception:
            logger.exception(
                "reply %s in conversation %s crashed", self.message_id, self.conversation_id
            )
            self._error = "The reply failed because of a server error."
        finally:
            self._wake.set()

    async def _drive(self) -> Message:
        assert self._upstream is not None
        try:
            try:
                await self.audience.announce_elsewhere(self.started)
                await self._pump(self._upstream)
            except asyncio.CancelledError:
                # The process is going away (chat/replies/shutdown.py): save what was seen.
                self.stop(Message.StopReason.DISCONNECT)
                await self._finish()
                raise
            except Exception:
                logger.exception("reply %s: publishing a batch failed", self.message_id)
                self._error = self._error or "The reply could not be delivered."
                self._upstream.cancel()
            message = await self._finish()
        finally:
            self._settler = asyncio.create_task(self._settle())
        return message

    async def _settle(self) -> None:
        """After the save: name the conversation, let pending answers go out, then close."""
        try:
            if self._title_from is not None and self.message.content:
                self._titling = asyncio.create_task(self._retitle(self.message, *self._title_from))
                await asyncio.wait([self._titling])  # (a title given up on is no error)
        finally:
            while self._busy:
                await asyncio.wait(list(self._busy))
            for task in (self._inbox, self._guard):
                if task is not None:
                    task.cancel()
            self.audience.close()
            self._closed.set()

    async def _retitle(self, message: Message, auto_title: str, user_text: str) -> None:
        try:
            await self._name_conversation(message, auto_title, user_text)
        except Exception:
            logger.exception("reply %s: naming the conversation failed", self.message_id)

    async def _name_conversation(self, message: Message, auto_title: str, user_text: str) -> None:
        title = await titles.suggest(self._provider, user_text=user_text, reply=message.content)
        if not title or title == auto_title:
            return
        renamed = await database_sync_to_async(services.conversation_retitle)(
            conversation_id=message.conversation_id, old=auto_title, new=title
        )
        if renamed:
            await self.audience.publish(TitleChanged(self.conversation_id, title))

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
            if self._pending or self._pending_thinking:
                batch = TextBatch(
                    message_id=self.message_id,
                    text="".join(self._pending),
                    thinking="".join(self._pending_thinking),
                )
                self._pending.clear()
                self._pending_thinking.clear()
                await self.audience.publish(batch)
            if upstream.done() and not (self._pending or self._pending_thinking):
                # (Text that arrived while the last batch was being delivered goes out first.)
                return
            if time.monotonic() - last_checkpoint >= self._checkpoint_interval:
                last_checkpoint = time.monotonic()
                self._checkpoint_soon()
            # The coalescing window; it ends early when the stream ends or is stopped.
            await asyncio.wait([upstream], timeout=self._batch_interval)

    def _checkpoint_soon(self) -> None:
        """Save the text so far in the background: the batches (and a stop) never wait for the
        database. One checkpoint at a time; a reply whose last one is still queued skips this."""
        if self._checkpointing:
            return
        self._checkpointing = True
        self._spawn(self._checkpoint(self.text_so_far(), self.thinking_so_far()))

    async def _checkpoint(self, content: str, thinking: str) -> None:
        try:
            still_ours = await database_sync_to_async(services.message_checkpoint)(
                message_id=self.message_id, content=content, thinking=thinking
            )
        except Exception:
            logger.exception("reply %s: a checkpoint failed", self.message_id)
            return
        finally:
            self._checkpointing = False
        if not still_ours and not self.done:
            # Closed elsewhere (a stop that could not reach us, or the reaper): that outcome
            # stands in the database, so stop spending tokens on it now.
            logger.warning(
                "reply %s was closed elsewhere while streaming; stopping it", self.message_id
            )
            self.stop(Message.StopReason.SERVER_RESTART)

    async def _finish(self) -> Message:
        assert self._upstream is not None
        if not self._upstream.done():
            await asyncio.wait([self._upstream])
        content = self.text_so_far()
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
        thought = self.thinking_seconds()
        fields |= {
            "content": content,
            "thinking": self.thinking_so_far(),
            # The signature of a whole thought only: one cut short has none.
            "thinking_signature": self._signature if self._stop_reason is None else "",
            "thinking_ms": round(thought * 1000) if thought is not None else None,
            "input_tokens": _plus(base_in, self._input_tokens),
            "output_tokens": _plus(base_out, output_tokens),
            "cache_read_input_tokens": _plus(self._base_cache[0], self._cache_usage[0]),
            "cache_creation_input_tokens": _plus(self._base_cache[1], self._cache_usage[1]),
            "tokens_estimated": tokens_estimated or base_estimated,
            "time_to_first_token_ms": ttft,
        }
        try:
            # Shielded: a second cancellation must not lose the save.
            message = await asyncio.shield(
                database_sync_to_async(services.message_finalize)(
                    message_id=self.message_id, **fields
                )
            )
        finally:
            # From here on a new turn may start in this conversation.
            registry.remove(self)
        self.message = message
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
        await self.audience.publish(ReplyFinished(message=message, usage=usage))
        return message

    # --- the reply's own address --------------------------------------------------------------

    async def _serve_inbox(self) -> None:
        """Stops and watchers from any process. Each is handled in a task of its own, so that
        nothing waits behind another; a stop's answer is sent after its partial is saved."""
        delay = 0.1
        while True:
            try:
                event = await layer.receive(self.channel)
            except layer.LayerUnavailable as exc:
                # Redis is down: stops from elsewhere wait for it (the page's own Stop, a closed
                # connection and the reply's own checkpoint still work).
                logger.warning("reply %s: its address is unreachable (%s)", self.message_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            kind = event.get("type")
            if kind == "chat.stop":
                self._spawn(self.answer_stop(event))
            elif kind == "reply.watch":
                self._spawn(self.audience.watch_remote(event["watcher"]))
            elif kind == "reply.unwatch":
                self.audience.unwatch_remote(event["watcher"])

    async def answer_stop(self, event: dict[str, Any]) -> None:
        """Answer a `chat.stop` sent by `stops.request_stop`: stop this reply if it is the one
        named and still streaming (its partial saved first), then say what happened."""
        answer: StopAnswer
        if not self.done and event["message_id"] == self.message_id:
            self.stop(event.get("reason") or Message.StopReason.USER_STOP)
            message = await self.wait()
            answer = {
                "type": "stop.answer",
                "message_id": self.message_id,
                "outcome": "stopped",
                "chars": len(message.content),
            }
        else:
            answer = {
                "type": "stop.answer",
                "message_id": event["message_id"],
                "outcome": "finished",
                "chars": None,
            }
        with contextlib.suppress(layer.LayerUnavailable):
            await layer.send(event["reply_channel"], answer)


def _plus(a: int | None, b: int | None) -> int | None:
    """Two token counts added, where either may be unknown."""
    return None if a is None and b is None else (a or 0) + (b or 0)
