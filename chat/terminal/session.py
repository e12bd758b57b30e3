"""The terminal chat's async part (`manage.py chat`): one turn at a time on one event loop.

The prompt is read synchronously in the main thread; each turn runs on a long-lived
`asyncio.Runner` (one loop for the whole session, so the provider's cached client and the
channel layer's connections stay on it). The turn is the web's own (`turns.start`, held by
this door), and every batch is printed as it arrives, so the text saved for a stopped reply is
exactly the text printed.

Ctrl+C: while a turn runs, SIGINT is the loop's (`loop.add_signal_handler`, installed before
`Runner.run`, so the runner does not install its own) and stops the reply like the Stop button:
the upstream task is cancelled, which closes the HTTP stream, and the partial is saved. Between
turns SIGINT is Python's default again, so Ctrl+C at the prompt raises KeyboardInterrupt.
Stops from elsewhere (a browser's Stop, the HTTP stop endpoint, another process) reach the
reply at its own address, as any reply's.

Ctrl+D typed while a reply prints means "quit after this one": `read_line` reads what the
terminal took in while no prompt waited before readline can garble it (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from django.core.management.base import OutputWrapper
from django.core.management.color import Style

from chat.data.pricing import ConversationUsage
from chat.models import INTERRUPTED_MARKER, Conversation, Message
from chat.replies import turns
from chat.replies.events import ReplyEvent, ReplyFinished, TextBatch, TitleChanged, TurnStarted

try:
    import termios
except ImportError:  # not a POSIX terminal
    termios = None  # type: ignore[assignment]

T = TypeVar("T")

YOU = "you> "
ASSISTANT = "claude> "


#: How each way a reply can be interrupted is told, after "[Interrupted] ".
_INTERRUPTED_HOW: dict[str, str] = {
    Message.StopReason.USER_STOP: "stopped elsewhere",
    Message.StopReason.SERVER_RESTART: "closed elsewhere",
    Message.StopReason.DISCONNECT: "ended",
}


class Console:
    """Where the terminal chat writes: every write is flushed at once (the terminal is the UI)."""

    def __init__(self, out: OutputWrapper, style: Style) -> None:
        self._out = out
        self.style = style

    def write(self, text: str, style_func: Callable[[str], str] | None = None) -> None:
        self._out.write(text, style_func=style_func, ending="")
        self._out.flush()

    def line(self, text: str = "", style_func: Callable[[str], str] | None = None) -> None:
        if text:
            self.write(text, style_func)  # styled without the newline, so colours end with it
        self.write("\n")

    def dim(self, text: str) -> str:
        """Faint text (the model's thinking), where the terminal shows colours at all."""
        if self.style.ERROR("x") == "x":  # --no-color, or not a terminal
            return text
        return f"\x1b[2m{text}\x1b[22m"


def format_usage(message: Message, usage: ConversationUsage | None = None) -> str:
    """One reply's tokens, and the conversation's so far: `tokens: 12 in, 340 out`, or
    `tokens: 12 in, ~85 out (estimated)` after a stop (its output count was never reported)."""
    tokens_in = "?" if message.input_tokens is None else f"{message.input_tokens:,}"
    tilde = "~" if message.tokens_estimated else ""
    text = f"tokens: {tokens_in} in, {tilde}{message.output_tokens or 0:,} out"
    if message.tokens_estimated:
        text += " (estimated)"
    extras = []
    if usage is not None and usage.replies > 1:
        extras.append(f"conversation: {usage.input_text} in, {usage.output_text} out")
    if usage is not None and usage.cost_usd != 0:  # (the demo model's replies cost nothing)
        extras.append(usage.cost_text)
    return " · ".join([text, ", ".join(extras)]) if extras else text


def format_interrupted(message: Message, *, by_ctrl_c: bool) -> str:
    """The line after an interrupted reply's partial text."""
    how = "cancelled" if by_ctrl_c else _INTERRUPTED_HOW.get(message.stop_reason, "stopped")
    return f"{INTERRUPTED_MARKER} {how} — {len(message.content):,} characters saved"


class Turn:
    """One message and its reply, printed as it streams."""

    def __init__(
        self,
        *,
        conversation: Conversation,
        text: str,
        console: Console,
        show_thinking: bool,
        attachments: Sequence[uuid.UUID] = (),
    ) -> None:
        self.conversation = conversation
        self.text = text
        self.attachments = attachments
        self.console = console
        self.show_thinking = show_thinking
        self._thinking = False
        """The model's thinking is being printed (its answer has not begun)."""
        self.turn: turns.Turn | None = None
        self.ctrl_c = False
        """Ctrl+C was pressed during this turn."""
        self._shown_newline = True
        """The text printed so far ends a line."""

    def interrupt(self) -> None:
        """Ctrl+C (a signal handler on the loop): stop the reply; safe to call again. After
        the reply, it gives up waiting for the conversation's new title."""
        self.ctrl_c = True
        if self.turn is not None:
            self.turn.stop(Message.StopReason.USER_STOP)
            self.turn.reply.give_up_title()

    async def run(self) -> Message | None:
        """Send the message and print the reply; the saved reply, or None if it was refused.

        The prompt comes back only once the reply has nothing more to say (its title, and the
        answer to a stop from elsewhere, included): the loop does not run while the prompt
        waits.
        """
        try:
            async with turns.start(
                conversation=self.conversation,
                text=self.text,
                kind="send",
                attachments=self.attachments,
            ) as turn:
                self.turn = turn
                if self.ctrl_c:  # pressed while the turn was being saved: stop it now
                    turn.stop(Message.StopReason.USER_STOP)
                async for event in turn:
                    self.show(event)
                return await turn.reply.wait()
        except turns.TurnRefused as exc:
            self.console.line(f"{exc} Your message was not sent.", self.console.style.ERROR)
            return None

    def show(self, event: ReplyEvent) -> None:
        if isinstance(event, TurnStarted):
            if event.trimmed:
                self.console.line(
                    f"({event.trimmed} oldest turns left out to fit the context window)",
                    self.console.style.WARNING,
                )
            self.console.write(ASSISTANT, self.console.style.HTTP_INFO)
            self._shown_newline = False
        elif isinstance(event, TextBatch):
            if event.thinking:
                self._show_thinking(event.thinking)
            if event.text:
                if self._thinking:  # the answer starts on a line of its own
                    self._thinking = False
                    self.console.line()
                self.console.write(event.text)
                self._shown_newline = event.text.endswith("\n")
        elif isinstance(event, ReplyFinished):
            self._finished(event.message, event.usage)
        elif isinstance(event, TitleChanged):
            self.console.line(f"(title: {event.title})")

    def _show_thinking(self, text: str) -> None:
        """Thinking is printed faint before the answer; hidden, it is one faint note."""
        if not self._thinking:
            self._thinking = True
            self.console.write(
                self.console.dim("(thinking) " if self.show_thinking else "(thinking…)")
            )
        if self.show_thinking:
            self.console.write(self.console.dim(text))
        self._shown_newline = False

    def _finished(self, message: Message, usage: ConversationUsage | None) -> None:
        style = self.console.style
        if not self._shown_newline:
            self.console.line()
        if message.status == Message.Status.INTERRUPTED:
            by_ctrl_c = self.ctrl_c and message.stop_reason == Message.StopReason.USER_STOP
            self.console.line(format_interrupted(message, by_ctrl_c=by_ctrl_c), style.WARNING)
        elif message.status == Message.Status.ERROR:
            self.console.line(f"[Error] {message.error}", style.ERROR)
        elif message.stop_reason == Message.StopReason.MAX_TOKENS:
            self.console.line("[Cut off] the reply reached its output limit", style.WARNING)
        elif message.stop_note:
            self.console.line(f"[{message.stop_note}]", style.WARNING)
        self.console.line(format_usage(message, usage))


class TerminalChat:
    """A terminal session's event loop. Use as a context manager (it closes the loop)."""

    def __init__(self, console: Console, *, show_thinking: bool = True) -> None:
        self.console = console
        self.show_thinking = show_thinking
        self._runner = asyncio.Runner()

    def __enter__(self) -> TerminalChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.close()

    def send(
        self, *, conversation: Conversation, text: str, attachments: Sequence[uuid.UUID] = ()
    ) -> Message | None:
        """Send `text` (with the files `/attach` stored) and print the reply as it streams;
        Ctrl+C stops it. The saved reply, or None if the turn was refused (nothing saved)."""
        turn = Turn(
            conversation=conversation,
            text=text,
            console=self.console,
            show_thinking=self.show_thinking,
            attachments=attachments,
        )
        return self._run(turn.run(), on_ctrl_c=turn.interrupt)

    def stop_elsewhere(self, *, conversation_id: uuid.UUID | str) -> turns.StopResult | None:
        """/stop: stop the conversation's reply streaming elsewhere, and say what happened.
        None if Ctrl+C gave up waiting for the answer."""
        holder: list[asyncio.Task[Any]] = []

        async def stop() -> turns.StopResult | None:
            task = asyncio.current_task()
            assert task is not None
            holder.append(task)
            try:
                return await turns.stop(conversation_id)
            except asyncio.CancelledError:
                return None

        def give_up() -> None:
            for task in holder:
                task.cancel()

        return self._run(stop(), on_ctrl_c=give_up)

    def _run(self, coro: Coroutine[Any, Any, T], *, on_ctrl_c: Callable[[], None]) -> T:
        # Installed before run(): Runner.run() only installs its own SIGINT handler (which
        # cancels the main task) when Python's default one is in place, so this one is active
        # for the whole run. remove_signal_handler() puts Python's default back.
        loop = self._runner.get_loop()
        loop.add_signal_handler(signal.SIGINT, on_ctrl_c)
        try:
            with output_kept_on_ctrl_c():
                return self._runner.run(coro)
        finally:
            loop.remove_signal_handler(signal.SIGINT)


@contextlib.contextmanager
def output_kept_on_ctrl_c() -> Iterator[None]:
    """Keep the terminal from discarding printed text when Ctrl+C is pressed.

    By default a terminal that turns Ctrl+C into SIGINT also flushes its output queue: text
    already printed but not yet displayed would be lost, and the saved partial would hold words
    the user never saw. NOFLSH turns that flush off while a turn runs.
    """
    fd: int | None = None
    for stream in (sys.stdin, sys.stdout):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream.isatty():
                fd = stream.fileno()
                break
    if fd is None or termios is None:
        yield
        return
    try:
        saved = termios.tcgetattr(fd)
        changed = list(saved)
        changed[3] |= termios.NOFLSH  # the local modes
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    except termios.error:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, saved)


# --------------------------------------------------------------------------------------------
# The prompt
# --------------------------------------------------------------------------------------------


def read_line(prompt: str, console: Console) -> str:
    """`input(prompt)`, except for what was typed while no prompt waited (a reply printing).

    While a reply prints, the terminal is in its line mode: Ctrl+D on an empty line is kept
    there as an end of file, and a line ended by Enter or Ctrl+D as that line. readline's
    input() then turns the terminal to character mode first, and an end of file kept in line
    mode reaches it as a NUL byte (which it binds to set-mark): the Ctrl+D was lost and the
    chat waited at a new prompt. So what is waiting is read here, in line mode, as the
    terminal has it: an end of file raises EOFError (quit, as Ctrl+D at the prompt does); a
    whole line is the line (shown after the prompt, and added to readline's history, as
    input() does); a part-line (text, then Ctrl+D) is put in readline's buffer to go on with.
    """
    typed = typed_ahead()
    if typed is None:
        return input(prompt)
    if not typed:
        console.write(prompt)
        raise EOFError
    text = typed.decode(sys.stdin.encoding or "utf-8", errors="replace")
    if not text.endswith("\n"):
        return _input_starting_with(prompt, text)
    text = text.removesuffix("\n")
    console.write(f"{prompt}{text}\n")
    _add_history(text)
    return text


def typed_ahead() -> bytes | None:
    """One line, or b"" for an end of file, that the terminal holds in line mode, read without
    waiting. None when nothing is ended there yet (text still being typed stays for readline),
    or where input() does not use readline (it reads the terminal in line mode itself)."""
    if termios is None or "readline" not in sys.modules:
        return None
    try:
        fd = sys.stdin.fileno()
        if not (os.isatty(fd) and sys.stdout.isatty()):
            return None
        if not termios.tcgetattr(fd)[3] & termios.ICANON:  # not line mode: leave it be
            return None
        ready, _, _ = select.select([fd], [], [], 0)
        if not ready:
            return None
        # In line mode the terminal answers a read with one line, or with nothing for an end
        # of file; select said one is there, so this does not wait.
        return os.read(fd, 65536)
    except (AttributeError, OSError, ValueError, termios.error):
        return None


def _add_history(text: str) -> None:
    """Add a line to readline's history as input() would have: not empty, not a repeat."""
    readline = sys.modules.get("readline")
    if readline is None or not text:
        return
    length = readline.get_current_history_length()
    if length and readline.get_history_item(length) == text:
        return
    readline.add_history(text)


def _input_starting_with(prompt: str, text: str) -> str:
    """input(prompt) with `text` already in readline's buffer (typed, not yet entered)."""
    readline = sys.modules.get("readline")
    if readline is None or not hasattr(readline, "set_pre_input_hook"):  # (not every build)
        return input(prompt)

    def prefill() -> None:
        readline.insert_text(text)
        readline.redisplay()

    readline.set_pre_input_hook(prefill)
    try:
        return input(prompt)
    finally:
        readline.set_pre_input_hook()
