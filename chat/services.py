"""Writes. Plain synchronous functions, each one transaction; async callers wrap them in
`channels.db.database_sync_to_async`, which also closes stale connections around each call.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Conversation, Message

TITLE_WORDS = 8


def estimate_tokens(chars: int) -> int:
    """About four characters a token for English text: an estimate, and flagged as one."""
    return (chars + 3) // 4


class ReplyAlreadyStreaming(Exception):
    """The conversation already has a streaming reply (the database refused a second one)."""


def conversation_create(
    *, user: User, title: str = "", model: str = "", system_prompt: str = ""
) -> Conversation:
    return Conversation.objects.create(
        user=user, title=title[:200], model=model, system_prompt=system_prompt
    )


def _title_from(text: str) -> str:
    words = text.split()
    title = " ".join(words[:TITLE_WORDS])
    return (title + "…" if len(words) > TITLE_WORDS else title)[:200]


def turn_start(
    *,
    conversation: Conversation,
    text: str,
    model: str,
    max_tokens: int | None = None,
    owner_channel: str = "",
) -> tuple[Message, Message]:
    """Save the user's message and an empty streaming assistant message after it, atomically.

    `owner_channel` is the channel-layer address that answers stops for the reply.

    Raises ReplyAlreadyStreaming when another reply in this conversation is still streaming;
    then nothing is saved, so the caller can tell the user without losing their text.
    """
    try:
        with transaction.atomic():
            user_message = Message.objects.create(
                conversation=conversation, role=Message.Role.USER, content=text
            )
            assistant_message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model,
                max_tokens=max_tokens,
                owner_channel=owner_channel,
                heartbeat_at=timezone.now(),
            )
            fields: dict[str, object] = {"updated_at": timezone.now()}
            if not conversation.title:
                fields["title"] = conversation.title = _title_from(text)
            Conversation.objects.filter(pk=conversation.pk).update(**fields)
    except IntegrityError as exc:
        raise ReplyAlreadyStreaming from exc
    return user_message, assistant_message


def message_checkpoint(*, message_id: int, content: str) -> bool:
    """Save a streaming reply's text so far and beat its heartbeat (one UPDATE).

    False when the reply is no longer streaming: something else closed it (the reaper, or a
    stop that got no answer), and its owner should stop too.
    """
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, heartbeat_at=timezone.now()
    )
    return updated == 1


def message_finalize(
    *,
    message_id: int,
    status: str,
    stop_reason: str,
    content: str,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    tokens_estimated: bool = False,
    time_to_first_token_ms: int | None = None,
    error: str = "",
) -> Message:
    """End a streaming reply with its final text and status, and return it.

    Only a message still streaming is changed: if something else ended it first (a reaper, an
    HTTP stop of an orphan), that outcome stands and is returned unchanged.
    """
    now = timezone.now()
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=status,
        stop_reason=stop_reason,
        content=content,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        tokens_estimated=tokens_estimated,
        time_to_first_token_ms=time_to_first_token_ms,
        error=error,
        finished_at=now,
        heartbeat_at=now,
    )
    return Message.objects.get(pk=message_id)


def message_finalize_orphan(*, message_id: int) -> Message:
    """Close a streaming reply whose owner is gone, keeping its last checkpointed text."""
    now = timezone.now()
    message = Message.objects.get(pk=message_id)
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=Message.Status.INTERRUPTED,
        stop_reason=Message.StopReason.SERVER_RESTART,
        output_tokens=estimate_tokens(len(message.content)),
        tokens_estimated=True,
        finished_at=now,
    )
    return Message.objects.get(pk=message_id)


def reap_orphans(*, older_than: timedelta) -> list[Message]:
    """Finalise every streaming reply whose heartbeat is older than `older_than`.

    A live reply beats its heartbeat every CHAT_CHECKPOINT_INTERVAL, so only replies whose
    process died (or lost its database) are caught. Returns the messages it closed.
    """
    cutoff = timezone.now() - older_than
    stale = Message.objects.filter(status=Message.Status.STREAMING, heartbeat_at__lt=cutoff)
    return [message_finalize_orphan(message_id=pk) for pk in stale.values_list("pk", flat=True)]
