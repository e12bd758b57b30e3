"""A conversation exported as JSON (chat/data/export.py) read back as a new conversation of the
user who imports it.

Two steps. `parse` reads and checks the whole file and returns an `ImportPlan`, or refuses it
with `ImportRefused` saying why: the format and version, every field's type and size, the
roles and statuses allowed, that every parent is in the file and the parents form no loop, and
every attached file again through chat/files/checks.py (its type from its bytes, images decoded
and re-encoded; a file that fails is a refusal, never skipped). It touches neither the database
nor the storage, so it runs in a worker thread. `conversation_import` then stores the files and
saves the conversation, its messages and their attachments in one transaction: on any error
nothing is saved and the files stored for it are deleted.

An imported message is never `streaming`: a file that says so is refused. Timestamps are kept
(the conversation's `updated_at` is the import's, so it comes first in the sidebar).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, gettext_lazy

from chat.data.export import FORMAT, VERSION
from chat.files import store
from chat.files.checks import (
    AttachmentRefused,
    CheckedFile,
    check_count,
    check_file,
    check_total,
    size_text,
)
from chat.models import Attachment, Conversation, Message
from chat.providers.catalog import MIN_THINKING_BUDGET

#: The largest file an import takes (the upload, JSON and base64 files together).
MAX_IMPORT_BYTES = 100 * 1024 * 1024
#: The most messages (every version counted) one import may hold.
MAX_MESSAGES = 20_000
#: The most attached files (every version's counted) one import may hold: each is decoded and
#: checked again, an image re-encoded.
MAX_FILES = 2_000
#: The largest value of a count (PositiveIntegerField's on every database).
MAX_COUNT = 2_147_483_647
#: The largest thinking budget a conversation may be imported with.
MAX_THINKING_BUDGET = 1_000_000

ROLES = frozenset(Message.Role.values)
#: An imported message is finished, one way or another.
STATUSES = frozenset({Message.Status.COMPLETE, Message.Status.INTERRUPTED, Message.Status.ERROR})
KINDS = frozenset(Attachment.Kind.values)
#: A stop reason: Anthropic's, the app's, or one the app does not know yet (kept, and shown).
STOP_REASON = re.compile(r"[a-z0-9_]{0,32}")

_TEXT_FIELDS = ("content", "thinking", "thinking_signature", "error")
_COUNT_FIELDS = (
    "thinking_ms",
    "max_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "time_to_first_token_ms",
)


class ImportRefused(ValueError):
    """A file that is not imported; nothing was saved. The message says why, to be shown as it
    is; `status` is the HTTP status a door answers with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    key: int | str
    """Its id in the file."""
    parent: int | str | None
    fields: dict[str, Any]
    """The Message fields to save (role, content, status, active, created_at, …)."""
    files: tuple[tuple[int, str], ...]
    """Its attachments, in order: (index in `ImportPlan.files`, the name it has)."""


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """A checked file, ready to be saved."""

    conversation: dict[str, Any]
    """The Conversation fields to save (title, model, system_prompt, thinking_budget,
    created_at)."""
    messages: tuple[ImportedMessage, ...]
    """Parents before their children; versions of a message in the file's order."""
    files: tuple[CheckedFile, ...]
    """The files to store, each once (an edited message's versions share theirs)."""


# --- Reading and checking -------------------------------------------------------------------
# Every refusal is a whole sentence through gettext; `where` names the part of the file
# ("Message 3 (id 7)", "The conversation", "Message 3 (id 7), file 2") and `field` is a JSON
# key, quoted as it is in the file.


def _refuse(message: str, **values: object) -> ImportRefused:
    return ImportRefused(message % values if values else message)


def _text(value: object, where: str, field: str, *, max_chars: int | None = None) -> str:
    if not isinstance(value, str):
        raise _refuse(gettext('%(where)s: "%(field)s" should be text.'), where=where, field=field)
    if "\x00" in value:
        raise _refuse(
            gettext('%(where)s: "%(field)s" contains a NUL character.'), where=where, field=field
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(
            gettext('%(where)s: "%(field)s" is not valid Unicode text.'), where=where, field=field
        ) from None
    if max_chars is not None and len(value) > max_chars:
        raise _refuse(
            gettext('%(where)s: "%(field)s" is longer than %(max)s characters.'),
            where=where,
            field=field,
            max=f"{max_chars:,}",
        )
    return value


def _count(
    value: object, where: str, field: str, *, nullable: bool, maximum: int = MAX_COUNT
) -> int | None:
    if value is None and nullable:
        return None
    if type(value) is not int or not 0 <= value <= maximum:
        raise _refuse(
            gettext('%(where)s: "%(field)s" should be a whole number from 0 to %(max)s.'),
            where=where,
            field=field,
            max=f"{maximum:,}",
        )
    return value


def _when(value: object, where: str, field: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise _refuse(
            gettext(
                '%(where)s: "%(field)s" should be a date and time with its time zone (ISO 8601).'
            ),
            where=where,
            field=field,
        )
    return parsed


def _flag(value: object, where: str, field: str) -> bool:
    if not isinstance(value, bool):
        raise _refuse(
            gettext('%(where)s: "%(field)s" should be true or false.'), where=where, field=field
        )
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(gettext("%(where)s should be a JSON object."), where=where)
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _document(data: bytes) -> dict[str, Any]:
    """The file as JSON, and an export of the format and version this app reads."""
    try:
        document = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _refuse(
            gettext(
                "That file is not JSON. Import a conversation exported as JSON (a conversation's "
                "Export menu, JSON; or a .json file from Export all)."
            )
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _refuse(
            gettext(
                'That file is JSON, but not an exported conversation (its "format" is not '
                '"%(format)s").'
            ),
            format=FORMAT,
        )
    version = document.get("version")
    if type(version) is not int:
        raise _refuse(gettext('The export has no version number ("version").'))
    if version != VERSION:
        raise _refuse(
            gettext(
                "The export is of version %(version)s of the format; this app reads version "
                "%(supported)s."
            ),
            version=version,
            supported=VERSION,
        )
    return document


def _conversation_fields(value: object) -> dict[str, Any]:
    where = gettext("The conversation")
    data = _object(value, where)
    budget = _count(
        data.get("thinking_budget", 0),
        where,
        "thinking_budget",
        nullable=False,
        maximum=MAX_THINKING_BUDGET,
    )
    if budget and budget < MIN_THINKING_BUDGET:
        raise _refuse(
            gettext(
                'The conversation\'s "thinking_budget" should be 0 (off) or at least %(min)s '
                "tokens."
            ),
            min=f"{MIN_THINKING_BUDGET:,}",
        )
    return {
        "title": _text(data.get("title", ""), where, "title", max_chars=200).strip(),
        "model": _text(data.get("model", ""), where, "model", max_chars=100),
        "system_prompt": _text(
            data.get("system_prompt", ""),
            where,
            "system_prompt",
            max_chars=settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
        ),
        "thinking_budget": budget,
        "created_at": _when(data.get("created_at"), where, "created_at"),
    }


def _key(value: object, where: str, field: str) -> int | str:
    if (type(value) is int) or (isinstance(value, str) and 0 < len(value) <= 100):
        return value
    raise _refuse(
        gettext('%(where)s: "%(field)s" should be a number or a short text.'),
        where=where,
        field=field,
    )


_Files = dict[tuple[str, str, str, str], int]

_KIND_WORDS = {
    "image": gettext_lazy("an image"),
    "document": gettext_lazy("a PDF"),
    "text": gettext_lazy("a text file"),
}


def _attachments(
    value: object, where: str, *, role: str, found: _Files, files: list[CheckedFile]
) -> tuple[tuple[int, str], ...]:
    """A message's files, each checked as an upload is (and stored once, `found` by its
    bytes, name, type and kind)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _refuse(gettext('%(where)s: "attachments" should be a list.'), where=where)
    if value and role != Message.Role.USER:
        raise _refuse(
            gettext("%(where)s is Claude's, and only the user's messages have files."),
            where=where,
        )
    try:
        check_count(len(value))
    except AttachmentRefused as exc:
        raise _refuse("%(where)s: %(reason)s", where=where, reason=exc) from None
    encoded_limit = (settings.CHAT_MAX_ATTACHMENT_BYTES + 2) // 3 * 4
    listed: list[tuple[int, str]] = []
    for number, item in enumerate(value, start=1):
        file_where = gettext("%(where)s, file %(number)s") % {"where": where, "number": number}
        entry = _object(item, file_where)
        name = _text(entry.get("name"), file_where, "name", max_chars=1000)
        media_type = _text(entry.get("media_type", ""), file_where, "media_type", max_chars=100)
        kind = entry.get("kind")
        if kind not in KINDS:
            raise _refuse(
                gettext('%(where)s: "kind" should be one of %(kinds)s.'),
                where=file_where,
                kinds=", ".join(sorted(KINDS)),
            )
        encoded = entry.get("data")
        if not isinstance(encoded, str):
            raise _refuse(gettext('%(where)s: "data" (base64) is missing.'), where=file_where)
        if len(encoded) > encoded_limit:
            raise _refuse(
                gettext("%(where)s (%(name)s) is larger than %(limit)s, the most a file can be."),
                where=file_where,
                name=name,
                limit=size_text(settings.CHAT_MAX_ATTACHMENT_BYTES),
            )
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _refuse(
                gettext('%(where)s (%(name)s): "data" is not base64.'), where=file_where, name=name
            ) from None
        size = entry.get("size")
        if size is not None and size != len(raw):
            raise _refuse(
                gettext(
                    '%(where)s (%(name)s): "size" says %(size)s, but its data holds %(bytes)s '
                    "bytes."
                ),
                where=file_where,
                name=name,
                size=size,
                bytes=len(raw),
            )
        lookup = (hashlib.sha256(raw).hexdigest(), name, media_type, str(kind))
        if lookup not in found:
            try:
                checked = check_file(name, raw, media_type)
            except AttachmentRefused as exc:
                raise _refuse("%(where)s: %(reason)s", where=where, reason=exc) from None
            if checked.kind != kind:
                raise _refuse(
                    gettext(
                        "%(where)s: %(name)s is listed as %(listed)s, but its content is "
                        "%(found)s: refused."
                    ),
                    where=where,
                    name=checked.name,
                    listed=_KIND_WORDS[str(kind)],
                    found=_KIND_WORDS[checked.kind],
                )
            found[lookup] = len(files)
            files.append(checked)
        listed.append((found[lookup], files[found[lookup]].name))
    try:
        check_total([len(files[index].data) for index, _ in listed])
    except AttachmentRefused as exc:
        raise _refuse("%(where)s: %(reason)s", where=where, reason=exc) from None
    return tuple(listed)


def _message(
    value: object, number: int, *, found: _Files, files: list[CheckedFile]
) -> ImportedMessage:
    where = gettext("Message %(number)s") % {"number": number}
    data = _object(value, where)
    for required in ("id", "parent", "active", "role", "status", "content"):
        if required not in data:
            raise _refuse(gettext('%(where)s has no "%(field)s".'), where=where, field=required)
    key = _key(data["id"], where, "id")
    where = gettext("Message %(number)s (id %(id)s)") % {"number": number, "id": key}
    parent = None if data["parent"] is None else _key(data["parent"], where, "parent")
    role = data["role"]
    if role not in ROLES:
        raise _refuse(
            gettext('%(where)s has the role %(role)s; a message is "user" or "assistant".'),
            where=where,
            role=json.dumps(role)[:40],
        )
    status = data["status"]
    if status not in STATUSES:
        raise _refuse(
            gettext(
                '%(where)s has the status %(status)s; an imported message is "complete", '
                '"interrupted" or "error" (never "streaming").'
            ),
            where=where,
            status=json.dumps(status)[:40],
        )
    if role == Message.Role.USER and status != Message.Status.COMPLETE:
        raise _refuse(
            gettext("%(where)s is the user's, and a user's message is always \"complete\"."),
            where=where,
        )
    stop_reason = _text(data.get("stop_reason", ""), where, "stop_reason", max_chars=32)
    if not STOP_REASON.fullmatch(stop_reason):
        raise _refuse(
            gettext('%(where)s: "stop_reason" should be lowercase letters, digits and _.'),
            where=where,
        )
    fields: dict[str, Any] = {
        "role": role,
        "status": status,
        "stop_reason": stop_reason,
        "active": _flag(data["active"], where, "active"),
        "model": _text(data.get("model", ""), where, "model", max_chars=100),
        "thinking_budget": _count(
            data.get("thinking_budget", 0), where, "thinking_budget", nullable=False
        ),
        "tokens_estimated": _flag(data.get("tokens_estimated", False), where, "tokens_estimated"),
        "created_at": _when(data.get("created_at"), where, "created_at"),
        "finished_at": _when(data.get("finished_at"), where, "finished_at"),
    }
    for name in _TEXT_FIELDS:
        fields[name] = _text(data.get(name, ""), where, name)
    for name in _COUNT_FIELDS:
        fields[name] = _count(data.get(name), where, name, nullable=True)
    attachments = _attachments(data.get("attachments"), where, role=role, found=found, files=files)
    return ImportedMessage(key=key, parent=parent, fields=fields, files=attachments)


def _in_tree_order(messages: list[ImportedMessage]) -> tuple[ImportedMessage, ...]:
    """Parents before children, otherwise the file's order (so versions keep theirs, and the
    ids a branch is paged by grow along it). Refuses a parent not in the file, and a loop."""
    index = {message.key: number for number, message in enumerate(messages)}
    if len(index) != len(messages):
        seen: set[int | str] = set()
        for number, message in enumerate(messages, start=1):
            if message.key in seen:
                raise _refuse(
                    gettext("Message %(number)s has the id %(id)s, as an earlier one does."),
                    number=number,
                    id=message.key,
                )
            seen.add(message.key)
    children: dict[int | str | None, list[int]] = defaultdict(list)
    for number, message in enumerate(messages):
        if message.parent is not None and message.parent not in index:
            raise _refuse(
                gettext(
                    "Message %(number)s (id %(id)s) follows the message %(parent)s, which is not "
                    "in the file."
                ),
                number=number + 1,
                id=message.key,
                parent=message.parent,
            )
        children[message.parent].append(number)
    ready = list(children[None])
    heapq.heapify(ready)
    ordered: list[ImportedMessage] = []
    while ready:
        number = heapq.heappop(ready)
        ordered.append(messages[number])
        for child in children.get(messages[number].key, []):
            heapq.heappush(ready, child)
    if len(ordered) != len(messages):
        placed = {message.key for message in ordered}
        stuck = next(n for n, m in enumerate(messages, start=1) if m.key not in placed)
        raise _refuse(
            gettext(
                "The messages' parents form a loop (message %(number)s is its own ancestor, or "
                "follows one that is): a conversation is a tree."
            ),
            number=stuck,
        )
    return tuple(ordered)


def _one_shown_version(messages: tuple[ImportedMessage, ...]) -> None:
    shown: dict[int | str | None, int] = defaultdict(int)
    for message in messages:
        if message.fields["active"]:
            shown[message.parent] += 1
            if shown[message.parent] > 1:
                raise _refuse(
                    gettext(
                        "Two versions of one message are both marked shown (active), among "
                        "them the message with id %(id)s."
                    ),
                    id=message.key,
                )


def parse(data: bytes) -> ImportPlan:
    """Read and check an exported conversation: the plan to save it, or ImportRefused. Pure
    (no database, no storage); images are decoded and re-encoded, which takes a while."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportRefused(
            gettext("That file is %(size)s; an import can be at most %(limit)s.")
            % {"size": size_text(len(data)), "limit": size_text(MAX_IMPORT_BYTES)},
            status=413,
        )
    document = _document(data)
    conversation = _conversation_fields(document.get("conversation"))
    listed = document.get("messages")
    if not isinstance(listed, list):
        raise _refuse(gettext('The export has no list of messages ("messages").'))
    if not listed:
        raise _refuse(gettext("The export has no messages: there is nothing to import."))
    if len(listed) > MAX_MESSAGES:
        raise _refuse(
            gettext("The export has %(count)s messages; an import can have at most %(max)s."),
            count=f"{len(listed):,}",
            max=f"{MAX_MESSAGES:,}",
        )
    attached = sum(len(m.get("attachments") or ()) for m in listed if isinstance(m, dict))
    if attached > MAX_FILES:
        raise _refuse(
            gettext("The export has %(count)s attached files; an import can have at most %(max)s."),
            count=f"{attached:,}",
            max=f"{MAX_FILES:,}",
        )
    found: _Files = {}
    files: list[CheckedFile] = []
    messages = []
    for number, item in enumerate(listed, start=1):
        messages.append(_message(item, number, found=found, files=files))
        if isinstance(item, dict):
            item.pop("attachments", None)  # (its base64, no longer needed)
    ordered = _in_tree_order(messages)
    _one_shown_version(ordered)
    return ImportPlan(conversation=conversation, messages=ordered, files=tuple(files))


# --- Saving -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stored:
    file: str
    thumbnail: str


def _store_files(user_id: int, files: tuple[CheckedFile, ...], saved: list[str]) -> list[_Stored]:
    """Store each file as uploads are (chat/files/store.py); every name stored is appended to
    `saved` as it is, for the caller to delete should anything fail."""
    stored = []
    for checked in files:
        name, thumbnail = store.save_files(user_id, uuid.uuid4(), checked, saved)
        stored.append(_Stored(file=name, thumbnail=thumbnail))
    return stored


def _save(user: AbstractBaseUser, plan: ImportPlan, stored: list[_Stored]) -> Conversation:
    with transaction.atomic():
        fields = dict(plan.conversation)
        created_at = fields.pop("created_at")
        conversation = Conversation.objects.create(user_id=user.pk, **fields)
        if created_at is not None:
            # (auto_now_add writes the time of the INSERT; the export's is kept.)
            Conversation.objects.filter(pk=conversation.pk).update(created_at=created_at)
            conversation.created_at = created_at
        rows = [
            Message(
                conversation=conversation,
                **{k: v for k, v in m.fields.items() if k != "created_at"},
            )
            for m in plan.messages
        ]
        # One INSERT (ids in tree order), then one UPDATE for the links and the times.
        Message.objects.bulk_create(rows, batch_size=500)
        pks = {m.key: row.pk for m, row in zip(plan.messages, rows, strict=True)}
        for m, row in zip(plan.messages, rows, strict=True):
            row.parent_id = pks[m.parent] if m.parent is not None else None
            if m.fields["created_at"] is not None:
                row.created_at = m.fields["created_at"]
        Message.objects.bulk_update(rows, ["parent", "created_at"], batch_size=500)
        attachments = [
            Attachment(
                user_id=user.pk,
                message=row,
                name=name,
                kind=plan.files[index].kind,
                media_type=plan.files[index].media_type,
                size=len(plan.files[index].data),
                file=stored[index].file,
                thumbnail=stored[index].thumbnail,
                width=plan.files[index].width,
                height=plan.files[index].height,
                pages=plan.files[index].pages,
                tokens=plan.files[index].tokens,
                position=position,
            )
            for m, row in zip(plan.messages, rows, strict=True)
            for position, (index, name) in enumerate(m.files)
        ]
        Attachment.objects.bulk_create(attachments, batch_size=500)
    return conversation


def conversation_import(*, user: AbstractBaseUser, plan: ImportPlan) -> Conversation:
    """Save a parsed export as a new conversation of `user`: its files stored first, then every
    row in one transaction. On any error nothing is saved: the transaction rolls back and the
    files stored for it are deleted."""
    saved: list[str] = []
    try:
        stored = _store_files(user.pk, plan.files, saved)
        return _save(user, plan, stored)
    except BaseException:
        store.delete_saved(saved)
        raise
