"""Attachments kept: stored, bound to the message they were sent with, read back, deleted.

Plain synchronous functions (async callers wrap them in `database_sync_to_async`). A file is
stored under a name made of its owner and a new id (`<user id>/<uuid>.<type's extension>`),
never of the name the user gave. A row's deletion, however it comes (its message, its
conversation or its user deleted, or an unsent upload reaped), deletes its files once the
transaction commits (`_delete_files`, connected in chat/apps.py).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from chat.files.checks import AttachmentRefused, CheckedFile, check_file
from chat.models import Attachment, Conversation
from chat.providers import ChatTurn, FilePart

logger = logging.getLogger(__name__)

#: Unsent uploads a user may have waiting at once (composers in several tabs, removed chips).
UNSENT_PER_USER_FACTOR = 4


def attachment_create(
    *, user: AbstractBaseUser, checked: CheckedFile, draft_for: uuid.UUID | str | None = None
) -> Attachment:
    """Store a checked file as the user's, not yet sent with any message; `draft_for` is the
    conversation whose composer it was attached in (refused unless it is the user's)."""
    if draft_for:
        draft_for = _own_conversation(user, draft_for)
    unsent = Attachment.objects.filter(user_id=user.pk, message__isnull=True).count()
    if unsent >= settings.CHAT_MAX_ATTACHMENTS * UNSENT_PER_USER_FACTOR:
        raise AttachmentRefused(
            gettext("You have %(unsent)s files attached but not sent: send or remove some first.")
            % {"unsent": unsent},
            status=429,
        )
    attachment_id = uuid.uuid4()
    saved: list[str] = []
    try:
        file, thumbnail = save_files(user.pk, attachment_id, checked, saved)
        return Attachment.objects.create(
            id=attachment_id,
            user_id=user.pk,
            draft_for_id=draft_for or None,
            name=checked.name,
            kind=checked.kind,
            media_type=checked.media_type,
            size=len(checked.data),
            file=file,
            thumbnail=thumbnail,
            width=checked.width,
            height=checked.height,
            pages=checked.pages,
            tokens=checked.tokens,
        )
    except BaseException:
        delete_saved(saved)
        raise


def _own_conversation(user: AbstractBaseUser, conversation_id: uuid.UUID | str) -> uuid.UUID:
    try:
        found = uuid.UUID(str(conversation_id))
    except ValueError:
        found = None
    if found is None or not Conversation.objects.filter(pk=found, user_id=user.pk).exists():
        raise AttachmentRefused(gettext("This conversation is not there any more."), status=404)
    return found


def save_files(
    user_id: int, stem_id: uuid.UUID, checked: CheckedFile, saved: list[str]
) -> tuple[str, str]:
    """Store a checked file (and an image's thumbnail) as `<user id>/<stem id>.<type>`, never
    under the name given; the names stored, also appended to `saved` as they are (for the
    caller to delete should anything after fail)."""
    storage = storages["attachments"]
    stem = f"{user_id}/{stem_id.hex}"
    name = storage.save(f"{stem}.{checked.extension}", ContentFile(checked.data))
    saved.append(name)
    thumbnail = ""
    if checked.thumbnail:
        thumbnail = storage.save(f"{stem}.thumb.webp", ContentFile(checked.thumbnail))
        saved.append(thumbnail)
    return name, thumbnail


def delete_saved(names: list[str]) -> None:
    """Delete files stored for something that then failed."""
    storage = storages["attachments"]
    for name in names:
        storage.delete(name)


def attach(
    *, user: AbstractBaseUser, name: object, data: bytes, declared_type: object = ""
) -> Attachment:
    """Check a file and store it as the user's, unsent (the API's and the terminal's way in;
    the page uploads through chat/web/attachments.py). AttachmentRefused says why not."""
    return attachment_create(user=user, checked=check_file(name, data, declared_type))


def drafts(*, user: AbstractBaseUser, conversation_id: uuid.UUID | None) -> list[Attachment]:
    """The user's unsent uploads waiting in a conversation's composer (None: a new chat's),
    oldest first: the page shows them again after a reload."""
    return list(
        Attachment.objects.filter(
            user_id=user.pk, message__isnull=True, draft_for_id=conversation_id
        ).order_by("created_at")
    )


def discard_all_unsent(*, ids: list[uuid.UUID], user: AbstractBaseUser) -> None:
    """Remove uploads made for a message that was then refused (nothing of it is kept)."""
    Attachment.objects.filter(pk__in=ids, user_id=user.pk, message__isnull=True).delete()


def attachment_for_user(
    *, attachment_id: uuid.UUID | str, user: User | AnonymousUser
) -> Attachment | None:
    """The attachment if `user` owns it (or may view every conversation in the admin)."""
    if not user.is_authenticated:
        return None
    found = Attachment.objects.filter(pk=attachment_id).first()
    if found is None:
        return None
    if found.user_id == user.pk or user.has_perm("chat.view_attachment"):
        return found
    return None


def discard_unsent(*, attachment_id: uuid.UUID | str, user: AbstractBaseUser) -> bool:
    """Remove an upload the user took back out of the composer (never a sent one)."""
    deleted, _ = Attachment.objects.filter(
        pk=attachment_id, user_id=user.pk, message__isnull=True
    ).delete()
    return deleted > 0


def read(attachment: Attachment) -> bytes:
    with storages["attachments"].open(attachment.file.name or "", "rb") as handle:
        data: bytes = handle.read()
    return data


def with_bytes(turns: list[ChatTurn]) -> list[ChatTurn]:
    """The turns with their files read and encoded for a request (only the turns that fit; in
    the caller's worker thread, never on the event loop: base64 of 10 MB takes a while). A
    file gone from the storage is said to be gone, in its place, rather than failing the
    turn."""
    keys = {part.key for turn in turns for part in turn.files}
    if not keys:
        return turns
    found = {str(a.pk): a for a in Attachment.objects.filter(pk__in=keys)}
    return [
        dataclasses.replace(turn, files=tuple(_read_part(part, found) for part in turn.files))
        for turn in turns
    ]


def _read_part(part: FilePart, found: dict[str, Attachment]) -> FilePart:
    attachment = found.get(part.key)
    try:
        if attachment is None:
            raise FileNotFoundError(part.key)
        data = read(attachment)
    except OSError:
        logger.exception("attachment %s (%s) could not be read", part.key, part.name)
        gone = f"(The attached file {part.name} is no longer available.)"
        return FilePart(
            kind="text", media_type="text/plain", name=part.name, tokens=20, content=gone
        )
    if part.kind == "text":
        return dataclasses.replace(part, content=data.decode("utf-8"))
    return dataclasses.replace(part, content=base64.b64encode(data).decode("ascii"))


def reap_unsent(*, older_than: timedelta | None = None) -> int:
    """Delete uploads never sent (older than CHAT_UNSENT_ATTACHMENT_TTL); how many."""
    age = (
        timedelta(seconds=settings.CHAT_UNSENT_ATTACHMENT_TTL) if older_than is None else older_than
    )
    deleted, _ = Attachment.objects.filter(
        message__isnull=True, created_at__lt=timezone.now() - age
    ).delete()
    return deleted


def delete_files(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """post_delete of an Attachment: its files go once the deletion is committed (a rolled
    back deletion keeps them), unless another row still names them (an edited message's new
    version shares its files)."""
    names = [name for name in (instance.file.name, instance.thumbnail.name) if name]

    def delete() -> None:
        storage = storages["attachments"]
        for name in names:
            if Attachment.objects.filter(Q(file=name) | Q(thumbnail=name)).exists():
                continue
            try:
                storage.delete(name)
            except OSError:
                logger.exception("attachment %s: file %s could not be deleted", instance.pk, name)

    transaction.on_commit(delete)
