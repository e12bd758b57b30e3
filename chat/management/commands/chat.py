"""Chat in the terminal, on the same database and provider as the web app (chat/terminal.py).

    python manage.py chat [--user NAME] [--conversation UUID]

Conversations started here are ordinary conversations of the user: they appear in the browser
and the admin, and the browser's ones can be resumed here.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from chat.data import selectors, services
from chat.files import checks, store
from chat.models import INTERRUPTED_MARKER, Attachment, Conversation
from chat.providers import load_provider
from chat.replies.inputs import InvalidMessage, clean_message
from chat.replies.slash import COMMANDS, command_of
from chat.terminal.session import ASSISTANT, YOU, Console, TerminalChat, read_line

with contextlib.suppress(ImportError):  # line editing and history for input(), where available
    import readline  # noqa: F401

#: How much of each message of the last exchange is shown when a conversation is resumed.
EXCERPT_CHARS = 300

#: /help in a terminal: the composer's commands, with Ctrl+C for this terminal's own reply.
TERMINAL_HELP = COMMANDS | {
    "/stop": "stop a reply streaming in this conversation elsewhere (a browser tab, another "
    "terminal); Ctrl+C stops the one streaming here",
    "/attach PATH": "attach a file (an image, a PDF or a text file) to your next message; "
    "/attach alone lists the files waiting",
}


class Command(BaseCommand):
    help = (
        "Chat with the model in the terminal. Ctrl+C stops a reply; Ctrl+C or Ctrl+D at the "
        "prompt quits. Conversations are the same as the web app's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user", help="Username to chat as (optional when there is only one user)."
        )
        parser.add_argument(
            "--conversation", metavar="UUID", help="Resume one of the user's conversations."
        )
        parser.add_argument(
            "--hide-thinking",
            action="store_true",
            help="Do not print Claude's thinking (it is printed faint before the answer).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = _user(options["user"])
        conversation = _conversation(user, options["conversation"])
        console = Console(self.stdout, self.style)
        with _quiet_logs(options["verbosity"]):
            load_provider()  # the SDK's import takes a second: not at the first message
            self._banner(console, user, conversation)
            with TerminalChat(console, show_thinking=not options["hide_thinking"]) as chat:
                self._loop(console, chat, user, conversation)

    def _banner(self, console: Console, user: User, conversation: Conversation | None) -> None:
        if settings.CHAT_PROVIDER == "demo":
            model = "the demo model (offline)"
        else:
            model = (conversation.model if conversation else "") or settings.CHAT_MODEL
        console.line(f"Chatting as {user.username} with {model}.", self.style.MIGRATE_HEADING)
        console.line("Ctrl+C stops a reply; Ctrl+C or Ctrl+D at the prompt quits; /help.")
        if conversation is not None:
            _show_resumed(console, conversation)

    def _loop(
        self, console: Console, chat: TerminalChat, user: User, conversation: Conversation | None
    ) -> None:
        attached: list[Attachment] = []  # /attach: stored, unsent, for the next message
        try:
            self._chat(console, chat, user, conversation, attached)
        finally:
            store.discard_all_unsent(ids=[a.pk for a in attached], user=user)

    def _chat(
        self,
        console: Console,
        chat: TerminalChat,
        user: User,
        conversation: Conversation | None,
        attached: list[Attachment],
    ) -> None:
        while True:
            try:
                raw = read_line(YOU, console)  # input(), and Ctrl+D typed during a reply
            except (EOFError, KeyboardInterrupt):
                console.line()  # the shell's prompt on a line of its own
                return
            command = command_of(raw)
            path = _attach_argument(raw)
            if path is not None:
                self._attach(console, user, path, attached)
            elif command == "/help":
                for name, what in TERMINAL_HELP.items():
                    console.line(f"  {name:<12} {what}")
                console.line("  Anything else (other slash text included) is sent as a message.")
            elif command == "/new":
                conversation = None
                console.line("New conversation: it is saved with your first message.")
            elif command == "/stop":
                if conversation is None:
                    console.line("Nothing is streaming, so there is nothing to stop.")
                    continue
                result = chat.stop_elsewhere(conversation_id=conversation.pk)
                if result is None:  # Ctrl+C, after the terminal's "^C"
                    console.line()
                    console.line("Gave up waiting for the answer (the stop may still take effect).")
                else:
                    console.line(result.text)
            else:
                try:
                    text = clean_message(raw, max_chars=settings.CHAT_MAX_MESSAGE_CHARS)
                except InvalidMessage as exc:
                    console.line(str(exc), self.style.ERROR)
                    continue
                if not text:
                    continue
                if conversation is None:
                    conversation = services.conversation_create(user=user)
                    console.line(f"New conversation: {_path(conversation)}")
                ids = [a.pk for a in attached]
                if chat.send(conversation=conversation, text=text, attachments=ids) is not None:
                    attached.clear()  # sent with it (a refused message keeps them for the next)

    def _attach(self, console: Console, user: User, path: str, attached: list[Attachment]) -> None:
        """/attach PATH: check and store the file for the next message; /attach: list them."""
        if not path:
            if not attached:
                console.line("No files attached. /attach PATH adds one to your next message.")
            for attachment in attached:
                console.line(f"  {attachment.name} ({_describe(attachment)})")
            return
        try:
            checks.check_count(len(attached) + 1)
            file = Path(path).expanduser()
            checks.check_size(file.name, file.stat().st_size)
            attachment = store.attach(user=user, name=file.name, data=file.read_bytes())
        except checks.AttachmentRefused as exc:
            console.line(f"{exc} Nothing was attached.", self.style.ERROR)
            return
        except OSError as exc:
            console.line(f"Cannot read {path}: {exc.strerror or exc}.", self.style.ERROR)
            return
        attached.append(attachment)
        console.line(
            f"Attached {attachment.name} ({_describe(attachment)}): it goes with your next message."
        )


@contextlib.contextmanager
def _quiet_logs(verbosity: int) -> Iterator[None]:
    """The terminal is the UI, and log lines on stderr land in the middle of replies. Below
    -v 2, the app logs warnings only, and not those about a reply's outcome (chat.replies.reply):
    the terminal prints each outcome itself, more plainly. Errors always show."""
    if verbosity >= 2:
        yield
        return
    levels = {"chat": logging.WARNING, "chat.replies.reply": logging.ERROR}
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), level))
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _attach_argument(raw: str) -> str | None:
    """The PATH of `/attach PATH` ("" for `/attach` alone), or None for anything else."""
    text = raw.strip()
    if text.lower() == "/attach":
        return ""
    if text[:8].lower() == "/attach " or text[:8].lower() == "/attach\t":
        return text[8:].strip().strip("'\"")
    return None


def _describe(attachment: Attachment) -> str:
    what = {"image": "image", "document": "PDF", "text": "text"}[attachment.kind]
    if attachment.width and attachment.height:
        what += f", {attachment.width} x {attachment.height}"
    if attachment.pages:
        what += f", {attachment.pages} page{'s' if attachment.pages > 1 else ''}"
    return f"{what}, {checks.size_text(attachment.size)}"


def _user(username: str | None) -> User:
    users = get_user_model().objects.order_by("username")
    if username:
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        return user
    some = list(users[:6])
    if len(some) == 1:
        return some[0]
    if not some:
        raise CommandError(
            "There are no users yet: create one with `manage.py createsuperuser` (or sign up "
            "in the web app), then run this again."
        )
    names = ", ".join(u.username for u in some[:5]) + (", …" if len(some) > 5 else "")
    raise CommandError(f"Several users exist ({names}): choose one with --user NAME.")


def _conversation(user: User, conversation_id: str | None) -> Conversation | None:
    if conversation_id is None:
        return None  # created with the first message, so quitting at once leaves nothing
    try:
        uuid.UUID(conversation_id)
    except ValueError:
        raise CommandError(f"No such conversation: {conversation_id}") from None
    conversation = selectors.conversation_for_user(conversation_id=conversation_id, user=user)
    if conversation is None:
        raise CommandError(f"No such conversation of {user.username}: {conversation_id}")
    return conversation


def _path(conversation: Conversation) -> str:
    return reverse("chat:conversation_detail", args=[conversation.pk])


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _show_resumed(console: Console, conversation: Conversation) -> None:
    count = conversation.messages.count()
    console.line(f"Resuming “{conversation}” ({count:,} messages): {_path(conversation)}")
    for message in selectors.conversation_messages(conversation=conversation, limit=2):
        prefix = YOU if message.role == message.Role.USER else ASSISTANT
        marker = f" {INTERRUPTED_MARKER}" if message.is_interrupted else ""
        console.line(f"  {prefix}{_excerpt(message.content)}{marker}")
    if selectors.streaming_message(conversation_id=conversation.pk) is not None:
        console.line("A reply is streaming in this conversation elsewhere: /stop stops it.")
