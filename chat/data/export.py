"""A conversation exported: as a readable Markdown transcript of the branch on the page, and as
JSON with everything needed to restore it (every version, attachments and all), in a format
chat/data/imports.py reads back.

The database is read once, into a `Snapshot` (`conversation_snapshot`); the writers then touch
only the attachments storage, so a caller can run them in a worker thread, away from the
database thread and the event loop. The JSON is written piece by piece to a binary file, each
attachment's bytes read and base64-encoded in chunks: an export holds one chunk of a file in
memory, never the whole conversation's files.

The JSON format, version 1 (`FORMAT`, `VERSION`):

    {"format": "stopchat.conversation", "version": 1, "exported_at": ISO 8601,
     "conversation": {"title", "model", "system_prompt", "thinking_budget", "created_at",
                      "updated_at"},
     "messages": [{"id": export-local int, "parent": its parent's id or null, "active": bool,
                   "role", "content", "status", … the fields of MESSAGE_FIELDS …,
                   "attachments": [{"name", "kind", "media_type", "size", "data": base64}]}]}

Messages come oldest first, so a parent always comes before its children, and versions of one
message in the order they were made. A reply still streaming is exported as it stands (the text
of its last checkpoint), as `interrupted`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.core.files.storage import storages
from django.utils import timezone
from django.utils.text import slugify
from markdown_it import MarkdownIt

from chat.data import selectors
from chat.files.checks import size_text
from chat.models import Attachment, Conversation, Message

logger = logging.getLogger(__name__)

FORMAT = "stopchat.conversation"
VERSION = 1

#: A message's fields as exported (and imported), beside id, parent, active and attachments.
MESSAGE_FIELDS = (
    "role",
    "content",
    "status",
    "stop_reason",
    "error",
    "thinking",
    "thinking_signature",
    "thinking_ms",
    "model",
    "max_tokens",
    "thinking_budget",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "tokens_estimated",
    "time_to_first_token_ms",
    "created_at",
    "finished_at",
)

#: Bytes of a file read at a time; a multiple of 3, so that the base64 of each chunk joins into
#: the base64 of the whole.
CHUNK_BYTES = 3 * 256 * 1024


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A conversation as read for an export: every message, and the branch the page shows."""

    conversation: Conversation
    messages: list[Message]
    """Every message of the tree, oldest first, with its attachments prefetched."""
    shown: selectors.Branch


def conversation_snapshot(*, conversation: Conversation) -> Snapshot:
    """Read the conversation for an export (two queries and the attachments' prefetch)."""
    messages = list(
        Message.objects.filter(conversation=conversation)
        .prefetch_related("attachments")
        .order_by("id")
    )
    return Snapshot(
        conversation=conversation,
        messages=messages,
        shown=selectors.branch(conversation_id=conversation.pk),
    )


def filename(conversation: Conversation, extension: str) -> str:
    """A file name from the title: letters, digits and dashes only (`my-chat.md`)."""
    stem = slugify(conversation.title, allow_unicode=True)[:80].strip("-_") or "conversation"
    return f"{stem}.{extension}"


# --- JSON -------------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _message_fields(message: Message, ids: dict[int, int]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": ids[message.pk],
        "parent": ids.get(message.parent_id) if message.parent_id is not None else None,
        "active": message.active,
    }
    for name in MESSAGE_FIELDS:
        value = getattr(message, name)
        fields[name] = _time(value) if isinstance(value, datetime) else value
    if message.status == Message.Status.STREAMING:
        fields["status"] = Message.Status.INTERRUPTED.value
    return fields


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _open_attachment(attachment: Attachment) -> IO[bytes] | None:
    try:
        return storages["attachments"].open(attachment.file.name or "", "rb")
    except OSError:
        logger.exception(
            "export: attachment %s (file %s) could not be read; left out",
            attachment.pk,
            attachment.file.name,
        )
        return None


def _write_attachments(out: IO[bytes], attachments: Iterable[Attachment]) -> None:
    """The message's files as a JSON list, each file's bytes base64-encoded a chunk at a time.
    A file gone from the storage is left out (and logged) rather than failing the export."""
    out.write(b"[")
    first = True
    for attachment in attachments:
        handle = _open_attachment(attachment)
        if handle is None:
            continue
        with handle:
            meta = {
                "name": attachment.name,
                "kind": attachment.kind,
                "media_type": attachment.media_type,
                "size": attachment.size,
            }
            out.write(("" if first else ", ").encode() + _dumps(meta)[:-1].encode())
            out.write(b', "data": "')
            while chunk := handle.read(CHUNK_BYTES):
                out.write(base64.b64encode(chunk))
            out.write(b'"}')
        first = False
    out.write(b"]")


def write_json(snapshot: Snapshot, out: IO[bytes]) -> None:
    """Write the conversation's JSON export (UTF-8) to `out`. Reads the attachments storage,
    never the database."""
    conversation = snapshot.conversation
    ids = {message.pk: index for index, message in enumerate(snapshot.messages, start=1)}
    head = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _time(timezone.now()),
        "conversation": {
            "title": conversation.title,
            "model": conversation.model,
            "system_prompt": conversation.system_prompt,
            "thinking_budget": conversation.thinking_budget,
            "created_at": _time(conversation.created_at),
            "updated_at": _time(conversation.updated_at),
        },
    }
    out.write(_dumps(head)[:-1].encode() + b', "messages": [')
    for index, message in enumerate(snapshot.messages):
        out.write(b"\n" if index == 0 else b",\n")
        out.write(_dumps(_message_fields(message, ids))[:-1].encode() + b', "attachments": ')
        _write_attachments(out, message.files)
        out.write(b"}")
    out.write(b"\n]}\n")


# --- Markdown ---------------------------------------------------------------------------------

#: CommonMark, raw HTML on: how a Markdown viewer reads the transcript (GitHub, an editor's
#: preview). Used only to find what in the model's text would be read as HTML.
_reader = MarkdownIt("commonmark")

#: What a label or a name must not start: emphasis, links, code, HTML, entities, tables.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>!|~#&])")

ROLE_LABELS = {"user": "User", "assistant": "Claude"}
#: The footer's words for how an interrupted reply was stopped (as the page says them).
STOPPED = {
    "disconnect": "stopped: nobody was watching",
    "server_restart": "stopped: server restarted",
}


def _plain(text: str) -> str:
    """Text that Markdown shows as it is, on one line (a title, a file name, a model)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(text.split()))


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else "?"


def _html_lines(text: str) -> set[int]:
    """The lines of `text` where a Markdown viewer would begin reading raw HTML: the first line
    of an HTML block, and every line of a paragraph or heading with a tag in it."""
    lines: set[int] = set()
    for token in _reader.parse(text):
        if token.map is None:
            continue
        if token.type == "html_block":
            lines.add(token.map[0])
        elif token.type == "inline" and any(
            child.type == "html_inline" for child in token.children or []
        ):
            lines.update(range(*token.map))
    return lines


def without_html(text: str) -> str:
    """The model's Markdown with nothing a viewer would read as HTML: where a CommonMark
    parser finds a tag, a comment or an HTML block, every `<` of that line (of an HTML block,
    its first line; of a paragraph, all of them) becomes `&lt;`, which shows as `<`. Lines
    without HTML, code among them, stay as they are. Parsed again after each pass (what an
    HTML block held is read afresh once it no longer starts one); should that not settle,
    every `<` is escaped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for _ in range(20):
        tainted = _html_lines(text)
        if not tainted:
            return text
        lines = text.split("\n")
        for number in tainted:
            if number < len(lines):
                lines[number] = lines[number].replace("<", "&lt;")
        text = "\n".join(lines)
    return text.replace("<", "&lt;")


def _fenced(text: str, info: str = "text") -> str:
    """`text` as a fenced code block no line of it can close (a longer fence than any run of
    tildes in it)."""
    runs = [len(run) for run in re.findall(r"~+", text)]
    fence = "~" * max(3, max(runs, default=0) + 1)
    return f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}"


def _open_at_end(text: str) -> str | None:
    """None if what follows `text` after a blank line starts afresh; otherwise the markup of
    the code fence `text` leaves open (or "" if something else stays open)."""
    probe = f"{text}\n\nend-of-message"
    last = probe.count("\n")
    tokens = _reader.parse(probe)
    if any(
        token.type == "paragraph_open" and token.level == 0 and token.map == [last, last + 1]
        for token in tokens
    ):
        return None
    for token in reversed(tokens):
        if token.type == "fence" and token.map is not None and token.map[1] > last:
            return token.markup
    return ""


def _contained(text: str) -> str:
    """The model's Markdown, made to end where it ends: a code fence it leaves open would
    swallow the rest of the transcript, so it is closed (and were that not enough, the whole
    text is fenced)."""
    for _ in range(3):
        markup = _open_at_end(text)
        if markup is None:
            return text
        if not markup:
            break
        text = f"{text.rstrip(chr(10))}\n{markup}"
    return _fenced(text)


def _message_markdown(message: Message) -> str:
    role = ROLE_LABELS.get(message.role, message.role)
    parts = [f"### {role} · {_when(message.created_at)}"]
    if message.versions > 1:
        parts.append(
            f"*Version {message.version} of {message.versions} (every version is in the JSON "
            "export).*"
        )
    if message.thinking:
        if message.status == Message.Status.INTERRUPTED and not message.content:
            summary = "Stopped while thinking"
        else:
            summary = "Thinking"
        if message.thinking_seconds:
            summary += f" ({message.thinking_seconds} s)"
        parts.append(
            f"<details><summary>{summary}</summary>\n\n{_fenced(message.thinking)}\n\n</details>"
        )
    if message.content.strip():
        parts.append(_contained(without_html(message.content)))
    if message.files:
        listed = [
            f"- {_plain(a.name)} ({_plain(a.media_type)}, {size_text(a.size)})"
            for a in message.files
        ]
        parts.append("Attached:\n\n" + "\n".join(listed))
    if message.status in (Message.Status.INTERRUPTED, Message.Status.STREAMING):
        how = STOPPED.get(message.stop_reason, "stopped")
        if message.status == Message.Status.STREAMING:
            how = "still streaming when exported"
        parts.append(f"**\\[Interrupted\\]** ({how})")
    if message.stop_note:
        parts.append(f"> {_plain(message.stop_note)}")
    if message.status == Message.Status.ERROR:
        reason = _plain(message.error or "The reply failed.")
        parts.append(f"> **Error:** {reason}")
    return "\n\n".join(parts)


def markdown(snapshot: Snapshot) -> str:
    """The transcript of the branch the page shows, oldest first."""
    conversation = snapshot.conversation
    by_id = {message.pk: message for message in snapshot.messages}
    shown = [by_id[pk] for pk in snapshot.shown.ids if pk in by_id]
    for message in shown:
        selectors.mark_version(message, snapshot.shown.versions.get(message.pk, [message.pk]))
    every = len(snapshot.messages)
    count = f"{len(shown)} shown" + (f" ({every} with every version)" if every > len(shown) else "")
    head = [
        f"# {_plain(str(conversation))}",
        "\n".join(
            [
                f"- Model: {_plain(conversation.model or 'the site default')}",
                f"- Created: {_when(conversation.created_at)}",
                f"- Updated: {_when(conversation.updated_at)}",
                f"- Messages: {count}",
                f"- Exported: {_when(timezone.now())}",
            ]
        ),
    ]
    if conversation.system_prompt.strip():
        head.append("System prompt:\n\n" + _fenced(conversation.system_prompt))
    body = [_message_markdown(message) for message in shown]
    return "\n\n".join([*head, "---", *body]) + "\n"
