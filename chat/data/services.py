"""Writes. Plain synchronous functions, each one transaction; async callers wrap them in
`channels.db.database_sync_to_async`, which also closes stale connections around each call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.data import selectors
from chat.files.checks import AttachmentRefused, check_total
from chat.models import Attachment, Conversation, Message

TITLE_WORDS = 8


def estimate_tokens(chars: int) -> int:
    """About four characters a token for English text: an estimate, and flagged as one."""
    return (chars + 3) // 4


def conversation_create(
    *,
    user: User,
    title: str = "",
    model: str = "",
    system_prompt: str = "",
    thinking_budget: int | None = None,
) -> Conversation:
    """A new conversation; its thinking is the site's default (CHAT_THINKING_BUDGET) unless
    given."""
    if thinking_budget is None:
        thinking_budget = max(0, settings.CHAT_THINKING_BUDGET)
    return Conversation.objects.create(
        user=user,
        title=title[:200],
        model=model,
        system_prompt=system_prompt,
        thinking_budget=thinking_budget,
    )


def _title_from(text: str) -> str:
    words = text.split()
    title = " ".join(words[:TITLE_WORDS])
    return (title + "…" if len(words) > TITLE_WORDS else title)[:200]


class TurnRefused(Exception):
    """A turn that cannot start; nothing was saved. Its message, shown by every door as it is,
    says why and what to do."""


class ReplyAlreadyStreaming(TurnRefused):
    """The conversation already has a streaming reply (the database refused a second one)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or _(
                "A reply is already streaming in this conversation (in another tab or a "
                "script?). Press Stop & Send to stop it and send this, or stop it first (Stop, "
                "Esc or /stop)."
            )
        )


class LimitReached(TurnRefused):
    """A per-user limit (replies streaming at once, messages a minute); nothing was saved."""


def _check_limits(conversation: Conversation, *, new_message: bool) -> None:
    """Refuse a reply that would break a per-user limit. Call inside the turn's transaction.

    The user's row is locked first, so two processes starting replies for one user at once
    count one after the other (PostgreSQL; SQLite writes one at a time anyway).
    """
    User.objects.select_for_update().filter(pk=conversation.user_id).exists()
    mine = Message.objects.filter(conversation__user_id=conversation.user_id)
    limit = settings.CHAT_MAX_CONCURRENT_REPLIES
    if mine.filter(status=Message.Status.STREAMING).count() >= limit:
        raise LimitReached(
            _(
                "You already have %(limit)s replies streaming (in other conversations or tabs), "
                "the most at once. Stop one or wait for it to end."
            )
            % {"limit": limit}
        )
    per_minute = settings.CHAT_MESSAGES_PER_MINUTE
    if new_message:
        recent = mine.filter(
            role=Message.Role.USER, created_at__gte=timezone.now() - timedelta(minutes=1)
        ).count()
        if recent >= per_minute:
            raise LimitReached(
                _(
                    "You have sent %(count)s messages in the last minute, the most allowed. "
                    "Wait a moment and send again."
                )
                % {"count": per_minute}
            )


def _reply_row(
    conversation: Conversation,
    *,
    model: str,
    max_tokens: int | None,
    owner_channel: str,
    thinking_budget: int = 0,
    parent: Message | None = None,
) -> Message:
    """An unsaved streaming assistant message (answering `parent`)."""
    return Message(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
        max_tokens=max_tokens,
        thinking_budget=thinking_budget,
        owner_channel=owner_channel,
        heartbeat_at=timezone.now(),
    )


def _touch(conversation: Conversation, **fields: object) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now(), **fields)


def _bind_attachments(
    *, message: Message, user_id: int, ids: Sequence[uuid.UUID]
) -> list[Attachment]:
    """Give the user's unsent attachments `ids` to `message`, in that order. Inside the turn's
    transaction: TurnRefused (rolling it back) if any is gone or not the user's."""
    if not ids:
        return []
    ids = [uuid.UUID(str(pk)) for pk in ids]
    found = {
        a.pk: a
        for a in Attachment.objects.select_for_update().filter(
            pk__in=ids, user_id=user_id, message__isnull=True
        )
    }
    if len(found) != len(ids):
        raise TurnRefused(
            _("An attached file is no longer there (sent already, or removed): attach it again.")
        )
    ordered = [found[pk] for pk in ids]
    try:
        check_total([attachment.size for attachment in ordered])
    except AttachmentRefused as exc:
        raise TurnRefused(str(exc)) from None
    for position, attachment in enumerate(ordered):
        attachment.message = message
        attachment.position = position
        attachment.draft_for = None  # (sent: it waits in no composer, and goes with its message)
    Attachment.objects.bulk_update(ordered, ["message", "position", "draft_for"])
    return ordered


def turn_create(
    *,
    conversation: Conversation,
    text: str,
    model: str,
    max_tokens: int | None = None,
    owner_channel: str = "",
    thinking_budget: int = 0,
    attachments: Sequence[uuid.UUID] = (),
) -> tuple[Message, Message]:
    """Save the user's message and an empty streaming assistant message after it, atomically.

    `owner_channel` is the channel-layer address that answers stops for the reply.
    `attachments`: the user's unsent uploads that go with the message (TurnRefused if one is
    gone); the saved message has them, in order, in `sent_attachments`.

    Raises ReplyAlreadyStreaming when another reply in this conversation is still streaming;
    then nothing is saved, so the caller can tell the user without losing their text.
    """
    try:
        with transaction.atomic():
            _check_limits(conversation, new_message=True)
            # The message follows the shown branch's last one; the reply follows the message.
            shown = selectors.branch(conversation_id=conversation.pk).ids
            user_message = Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=text,
                parent_id=shown[-1] if shown else None,
            )
            user_message.save(force_insert=True)
            assistant_message = _reply_row(
                conversation,
                model=model,
                max_tokens=max_tokens,
                owner_channel=owner_channel,
                thinking_budget=thinking_budget,
                parent=user_message,
            )
            assistant_message.save(force_insert=True)
            user_message.sent_attachments = _bind_attachments(
                message=user_message, user_id=conversation.user_id, ids=attachments
            )
            fields: dict[str, object] = {}
            if not conversation.title:
                named = text or ", ".join(a.name for a in user_message.sent_attachments)
                fields["title"] = conversation.title = _title_from(named)
            _touch(conversation, **fields)
    except IntegrityError as exc:
        raise ReplyAlreadyStreaming from exc
    return user_message, assistant_message


def _replace_last_reply(
    conversation: Conversation,
    *,
    new_text: str | None,
    model: str,
    max_tokens: int | None,
    owner_channel: str,
    thinking_budget: int = 0,
) -> tuple[Message, list[int], Message]:
    """Start a new version of the last exchange of the shown branch (one transaction): a new
    reply to the last user message (regenerate), or, with `new_text`, a new version of that
    message (its files kept) with a new reply (edit). The earlier versions are kept, no longer
    shown. Returns the user message answered, the ids of the messages the page no longer shows,
    and the new streaming reply.
    """
    try:
        with transaction.atomic():
            _check_limits(conversation, new_message=False)
            shown = selectors.branch(conversation_id=conversation.pk).ids
            last_user = (
                Message.objects.select_for_update()
                .filter(pk__in=shown, role=Message.Role.USER)
                .order_by("-id")
                .first()
            )
            if last_user is None:
                raise TurnRefused(_("There is no message to answer again yet."))
            if conversation.messages.filter(status=Message.Status.STREAMING).exists():
                raise ReplyAlreadyStreaming
            removed = [pk for pk in shown if pk > last_user.pk]
            if new_text is None:
                asked = last_user
                replies = Message.objects.filter(parent=last_user)
                # A reply that failed before any text has nothing to keep: Retry replaces it.
                failed = replies.filter(status=Message.Status.ERROR, content="", thinking="")
                failed.delete()
                replies.update(active=False)
            else:
                asked = _new_version_of(last_user, new_text)
                removed.insert(0, last_user.pk)
            asked.sent_attachments = list(asked.attachments.all())
            assistant_message = _reply_row(
                conversation,
                model=model,
                max_tokens=max_tokens,
                owner_channel=owner_channel,
                thinking_budget=thinking_budget,
                parent=asked,
            )
            assistant_message.save(force_insert=True)
            mark_versions(asked)
            mark_versions(assistant_message)
            _touch(conversation)
    except IntegrityError as exc:
        raise ReplyAlreadyStreaming from exc
    return asked, removed, assistant_message


def mark_versions(message: Message) -> None:
    """Tell the message which of its versions it is (for its bubble's `< k/N >`)."""
    siblings = Message.objects.filter(
        conversation_id=message.conversation_id, parent_id=message.parent_id
    ).order_by("id")
    selectors.mark_version(message, list(siblings.values_list("id", flat=True)))


def messages_below(*, conversation: Conversation, message_id: int) -> int:
    """How many messages deleting this one takes with it (every version below it)."""
    return len(_subtree(conversation, message_id)) - 1


def _new_version_of(message: Message, text: str) -> Message:
    """A user message's new version with `text` and the same files (their rows copied; the
    stored files are shared, and deleted with the last row that names them)."""
    siblings = Message.objects.filter(
        conversation_id=message.conversation_id, parent_id=message.parent_id
    )
    siblings.update(active=False)
    edited = Message(
        conversation_id=message.conversation_id,
        parent_id=message.parent_id,
        role=Message.Role.USER,
        content=text,
    )
    edited.save(force_insert=True)
    copies = []
    for attachment in message.attachments.all():
        attachment.pk = uuid.uuid4()
        attachment.message = edited
        attachment._state.adding = True
        copies.append(attachment)
    Attachment.objects.bulk_create(copies)
    return edited


def _subtree(conversation: Conversation, message_id: int) -> list[int]:
    """The message's id and those of every message below it, in any version."""
    children: dict[int | None, list[int]] = {}
    rows = Message.objects.filter(conversation=conversation).values_list("id", "parent_id")
    for pk, parent in rows:
        children.setdefault(parent, []).append(pk)
    found, todo = [], [message_id]
    while todo:
        pk = todo.pop()
        found.append(pk)
        todo.extend(children.get(pk, []))
    return found


def version_select(*, conversation: Conversation, message_id: int) -> bool:
    """Show that version of a message (and, below it, the versions chosen there before).
    False if the conversation has no such message; ReplyAlreadyStreaming while one streams."""
    with transaction.atomic():
        chosen = Message.objects.select_for_update().filter(
            conversation=conversation, pk=message_id
        )
        message = chosen.first()
        if message is None:
            return False
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            raise ReplyAlreadyStreaming(
                _("A reply is streaming: stop it or let it finish before switching versions.")
            )
        Message.objects.filter(conversation=conversation, parent_id=message.parent_id).exclude(
            pk=message.pk
        ).update(active=False)
        chosen.update(active=True)
    return True


def message_delete(*, conversation: Conversation, message_id: int) -> int:
    """Delete a message of the shown branch and everything after it (the replies that follow
    it, in every version below it); how many messages went. An earlier version of it, if any,
    is shown in its place. TurnRefused if it is not shown; ReplyAlreadyStreaming while a reply
    streams."""
    with transaction.atomic():
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            raise ReplyAlreadyStreaming(
                _("A reply is streaming: stop it or let it finish before deleting messages.")
            )
        if message_id not in selectors.branch(conversation_id=conversation.pk).ids:
            raise TurnRefused(_("That message is not in the conversation as shown."))
        message = Message.objects.select_for_update().get(pk=message_id)
        # The whole subtree in one deletion (Django's collector would otherwise walk it one
        # level at a time, recursively).
        deleted, per_model = Message.objects.filter(
            pk__in=_subtree(conversation, message_id)
        ).delete()
        remaining = Message.objects.filter(
            conversation=conversation, parent_id=message.parent_id
        ).order_by("-id")
        newest = remaining.first()
        if newest is not None and not remaining.filter(active=True).exists():
            remaining.filter(pk=newest.pk).update(active=True)
        _touch(conversation)
    return per_model.get("chat.Message", deleted)


def turn_regenerate(
    *,
    conversation: Conversation,
    model: str,
    max_tokens: int | None,
    owner_channel: str = "",
    thinking_budget: int = 0,
) -> tuple[Message, list[int], Message]:
    """Answer the last user message again: its old reply is replaced by a new streaming one."""
    return _replace_last_reply(
        conversation,
        new_text=None,
        model=model,
        max_tokens=max_tokens,
        owner_channel=owner_channel,
        thinking_budget=thinking_budget,
    )


def turn_edit(
    *,
    conversation: Conversation,
    text: str,
    model: str,
    max_tokens: int | None,
    owner_channel: str = "",
    thinking_budget: int = 0,
) -> tuple[Message, list[int], Message]:
    """Change the last user message to `text` and answer it afresh (its old reply is dropped)."""
    return _replace_last_reply(
        conversation,
        new_text=text,
        model=model,
        max_tokens=max_tokens,
        owner_channel=owner_channel,
        thinking_budget=thinking_budget,
    )


def turn_continue(
    *,
    conversation: Conversation,
    max_tokens: int | None,
    owner_channel: str = "",
    thinking_budget: int = 0,
) -> Message:
    """Stream the last reply again from where it was cut off, into the same message.

    The saved text is kept (trailing whitespace dropped: the model continues a prefill that
    must not end in whitespace) and the message is streaming again; its token counts so far
    are kept on it and the continuation's are added when it ends (chat/generation.py).
    """
    with transaction.atomic():
        _check_limits(conversation, new_message=False)
        shown = selectors.branch(conversation_id=conversation.pk).ids
        last = Message.objects.select_for_update().filter(pk__in=shown[-1:]).first()
        if last is None or not last.can_continue:
            raise TurnRefused(
                _("Only the last reply can be continued, and only if it was cut off.")
            )
        try:
            with transaction.atomic():
                Message.objects.filter(pk=last.pk).update(
                    status=Message.Status.STREAMING,
                    content=last.content.rstrip(),
                    stop_reason="",
                    error="",
                    max_tokens=max_tokens,
                    thinking_budget=thinking_budget,
                    owner_channel=owner_channel,
                    heartbeat_at=timezone.now(),
                    finished_at=None,
                )
        except IntegrityError as exc:
            raise ReplyAlreadyStreaming from exc
        _touch(conversation)
    return Message.objects.get(pk=last.pk)


def conversation_rename(*, conversation: Conversation, title: str) -> None:
    """Set the title. A rename is not activity: updated_at stays, and so its place in lists."""
    conversation.title = title[:200]
    Conversation.objects.filter(pk=conversation.pk).update(title=conversation.title)


def conversation_delete(*, conversation_id: uuid.UUID | str) -> None:
    """Delete a conversation with its messages (stop its streaming reply first)."""
    Conversation.objects.filter(pk=conversation_id).delete()


def conversation_retitle(*, conversation_id: uuid.UUID | str, old: str, new: str) -> bool:
    """Replace an automatic title, unless the user renamed the conversation meanwhile."""
    return Conversation.objects.filter(pk=conversation_id, title=old).update(title=new[:200]) == 1


def message_checkpoint(*, message_id: int, content: str, thinking: str = "") -> bool:
    """Save a streaming reply's text (and thinking) so far and beat its heartbeat (one UPDATE).

    False when the reply is no longer streaming: something else closed it (the reaper, or a
    stop that got no answer), and its owner should stop too.
    """
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, thinking=thinking, heartbeat_at=timezone.now()
    )
    return updated == 1


def message_finalize(
    *,
    message_id: int,
    status: str,
    stop_reason: str,
    content: str,
    thinking: str = "",
    thinking_signature: str = "",
    thinking_ms: int | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
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
        thinking=thinking,
        thinking_signature=thinking_signature,
        thinking_ms=thinking_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
        tokens_estimated=tokens_estimated,
        time_to_first_token_ms=time_to_first_token_ms,
        error=error,
        finished_at=now,
        heartbeat_at=now,
    )
    message = Message.objects.filter(pk=message_id).first()
    if message is not None:
        mark_versions(message)
    if message is None:
        # The conversation was deleted while the reply streamed: nothing is left to save, but
        # the caller still reports the outcome (an unsaved message).
        message = Message(
            id=message_id,
            role=Message.Role.ASSISTANT,
            status=status,
            stop_reason=stop_reason,
            content=content,
            finished_at=now,
        )
    return message


def message_finalize_orphan(*, message_id: int) -> Message:
    """Close a streaming reply whose owner is gone, keeping its last checkpointed text."""
    now = timezone.now()
    message = Message.objects.get(pk=message_id)
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=Message.Status.INTERRUPTED,
        stop_reason=Message.StopReason.SERVER_RESTART,
        output_tokens=estimate_tokens(len(message.content) + len(message.thinking)),
        tokens_estimated=True,
        finished_at=now,
    )
    return Message.objects.get(pk=message_id)


def reap_orphans(
    *, older_than: timedelta, alive: Callable[[], Collection[int]] = frozenset
) -> list[Message]:
    """Finalise every streaming reply whose heartbeat is older than `older_than`, except the
    ones `alive()` names (still streaming in the calling process).

    A live reply beats its heartbeat every CHAT_CHECKPOINT_INTERVAL, so only replies whose
    process died (or lost its database) are caught. `alive` is asked after the stale replies
    are found, not before: a reply registered meanwhile (its turn saved while this call waited
    for the database) is spared too. Returns the messages it closed.
    """
    cutoff = timezone.now() - older_than
    stale = list(
        Message.objects.filter(
            status=Message.Status.STREAMING, heartbeat_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    if not stale:
        return []
    spared = set(alive())
    return [message_finalize_orphan(message_id=pk) for pk in stale if pk not in spared]
