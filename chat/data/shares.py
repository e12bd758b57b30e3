"""Share links: writes and reads. A link shows a copy of a conversation, taken when it was
shared, to anyone who has it (chat/web/shares.py serves it, without signing in).

The copy (`ShareLink.snapshot`) is the shown branch at that moment, made once and never updated:
later messages, edits, version switches and deletions do not reach a link. It keeps what the
page shows of each message (text, status, how it ended, the error, the thinking) and of each
attachment only its name, kind and size: the files stay behind the owner-only view. A link is
revoked by deleting it, copy and all; deleting the conversation deletes its links.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from chat.data import selectors
from chat.data.services import ReplyAlreadyStreaming, TurnRefused
from chat.models import Conversation, Message, ShareLink

#: The snapshot's layout; a later one would be read by its own version here.
SNAPSHOT_VERSION = 1
#: A user's links at most: each holds a copy of its conversation, so a script sharing in a
#: loop would otherwise grow the database without bound.
MAX_LINKS_PER_USER = 200


@dataclass(frozen=True, slots=True)
class SharedFile:
    """An attachment as a share page shows it: named, never linked."""

    name: str
    kind: str
    size: int


@dataclass(frozen=True, slots=True)
class SharedMessage:
    """One message of a snapshot, as the share page renders it."""

    role: str
    content: str
    status: str
    stop_reason: str
    stop_note: str
    error: str
    thinking: str
    thinking_ms: int | None
    created_at: datetime | None
    files: tuple[SharedFile, ...]

    @property
    def thinking_seconds(self) -> int | None:
        """Whole seconds the model thought (at least 1), as on the chat page."""
        if self.thinking_ms is None:
            return None
        return max(1, round(self.thinking_ms / 1000))


def _message_copy(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "stop_reason": message.stop_reason,
        "stop_note": message.stop_note,
        "error": message.error,
        "thinking": message.thinking,
        "thinking_ms": message.thinking_ms,
        "created_at": message.created_at.isoformat(),
        "files": [{"name": a.name, "kind": a.kind, "size": a.size} for a in message.files],
    }


def share_create(*, conversation: Conversation) -> ShareLink:
    """A new link to the conversation as it is now (its shown branch), with a new token.

    Refused (TurnRefused, nothing saved) while a reply streams in it -- the copy would freeze
    half a reply, or a question without its answer -- and when it has no messages yet, or the
    user has MAX_LINKS_PER_USER links already.
    """
    with transaction.atomic():
        messages = selectors.all_messages(conversation=conversation)
        if any(m.status == Message.Status.STREAMING for m in messages):
            raise ReplyAlreadyStreaming(
                _("A reply is streaming: share the conversation once it has finished (or stop it).")
            )
        if not messages:
            raise TurnRefused(_("There is nothing to share yet: send a message first."))
        links = ShareLink.objects.filter(conversation__user_id=conversation.user_id).count()
        if links >= MAX_LINKS_PER_USER:
            raise TurnRefused(
                _(
                    "You have %(links)s share links, the most one account may have: revoke "
                    "some on your account page first."
                )
                % {"links": links}
            )
        title = (
            Conversation.objects.filter(pk=conversation.pk).values_list("title", flat=True).first()
        )
        return ShareLink.objects.create(
            token=secrets.token_urlsafe(24),
            conversation=conversation,
            title=title or "",
            snapshot={
                "version": SNAPSHOT_VERSION,
                "messages": [_message_copy(m) for m in messages],
            },
            message_count=len(messages),
        )


def shares_revoke(*, conversation: Conversation) -> int:
    """Revoke every link to the conversation; how many there were."""
    deleted, _ = ShareLink.objects.filter(conversation=conversation).delete()
    return deleted


def share_revoke(*, user: AbstractBaseUser, token: str) -> bool:
    """Revoke one of the user's links; False if it is not theirs (or already gone)."""
    deleted, _ = ShareLink.objects.filter(token=token, conversation__user_id=user.pk).delete()
    return bool(deleted)


def share_by_token(*, token: str) -> ShareLink | None:
    """The link with this token, for anyone who has it; None when there is none (revoked)."""
    if not token or len(token) > 64:
        return None
    return ShareLink.objects.filter(token=token).first()


def share_links_of(*, user: AbstractBaseUser) -> list[ShareLink]:
    """The user's links, newest first, without their copies (the account page lists them)."""
    return list(
        ShareLink.objects.filter(conversation__user_id=user.pk)
        .select_related("conversation")
        .defer("snapshot")
    )


def shared_messages(link: ShareLink) -> list[SharedMessage]:
    """The link's copy of the conversation, oldest first."""
    rows: list[dict[str, Any]] = link.snapshot.get("messages", [])
    return [
        SharedMessage(
            role=str(row.get("role", "")),
            content=str(row.get("content", "")),
            status=str(row.get("status", "")),
            stop_reason=str(row.get("stop_reason", "")),
            stop_note=str(row.get("stop_note", "")),
            error=str(row.get("error", "")),
            thinking=str(row.get("thinking", "")),
            thinking_ms=row.get("thinking_ms"),
            created_at=parse_datetime(str(row.get("created_at", ""))),
            files=tuple(
                SharedFile(name=str(f["name"]), kind=str(f["kind"]), size=int(f["size"]))
                for f in row.get("files", [])
            ),
        )
        for row in rows
    ]
