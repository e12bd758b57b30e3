"""Reads. Plain synchronous functions; async callers wrap them in `database_sync_to_async`."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal, cast

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from chat.data.pricing import ConversationUsage, ModelTotals, usage_from_totals
from chat.models import Attachment, Conversation, Message
from chat.providers import ChatTurn, FilePart


def conversation_for_user(
    *, conversation_id: uuid.UUID | str, user: AbstractBaseUser | AnonymousUser
) -> Conversation | None:
    """The conversation if `user` owns it; None otherwise (never another user's)."""
    if not user.is_authenticated:
        return None
    return Conversation.objects.filter(pk=conversation_id, user_id=user.pk).first()


def _with_messages(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Only conversations with a message: an empty one (made by the API, or left over from
    before a conversation was made by its first message) is never listed."""
    return conversations.filter(Exists(Message.objects.filter(conversation_id=OuterRef("pk"))))


def conversation_list(*, user: AbstractBaseUser) -> QuerySet[Conversation]:
    return _with_messages(Conversation.objects.filter(user_id=user.pk)).order_by("-updated_at")


#: The newest messages a conversation page shows; "Show earlier messages" loads older ones, this
#: many at a time. (Rendering every reply's Markdown on each load made a page of 1,000 messages
#: take about half a second; see bench/page.py.)
PAGE_MESSAGES = 50


def conversation_messages(
    *, conversation: Conversation, before: int | None = None, limit: int = PAGE_MESSAGES
) -> list[Message]:
    """A page of the shown branch of the conversation, oldest first: its newest `limit`
    messages, or the newest `limit` before message id `before`. If older ones remain, the
    page's first message has `has_earlier` set, and the page offers "Show earlier messages"
    above it. Each message knows its version among its siblings (`version`, `versions`)."""
    shown = branch(conversation_id=conversation.pk)
    ids = shown.ids
    if before is not None:
        ids = [pk for pk in ids if pk < before]  # (a branch's ids grow: children are newer)
    page = _messages(ids[-limit:], shown)
    if len(ids) > limit and page:
        page[0].has_earlier = True
    return page


def all_messages(*, conversation: Conversation) -> list[Message]:
    """The shown branch of the conversation, oldest first (the API's transcript)."""
    shown = branch(conversation_id=conversation.pk)
    return _messages(shown.ids, shown)


@dataclass(frozen=True, slots=True)
class Branch:
    """The conversation as shown: from the first message, the active version at each step."""

    ids: list[int]
    """The shown messages' ids, oldest first."""
    versions: dict[int, list[int]]
    """For each shown message, the ids of all its versions (itself included), oldest first."""


def branch(*, conversation_id: uuid.UUID | str) -> Branch:
    """The shown branch: one read of the conversation's (id, parent, active) rows."""
    children: dict[int | None, list[tuple[int, bool]]] = defaultdict(list)
    rows = Message.objects.filter(conversation_id=conversation_id).order_by("id")
    for pk, parent, active in rows.values_list("id", "parent_id", "active"):
        children[parent].append((pk, active))
    ids: list[int] = []
    versions: dict[int, list[int]] = {}
    step: list[tuple[int, bool]] = children.get(None, [])
    while step:
        # The active version; were none marked (never, but safe), the newest.
        chosen = next((pk for pk, active in reversed(step) if active), step[-1][0])
        ids.append(chosen)
        versions[chosen] = [pk for pk, _ in step]
        step = children.get(chosen, [])
    return Branch(ids=ids, versions=versions)


def _messages(ids: list[int], shown: Branch) -> list[Message]:
    """Those messages, oldest first, with their attachments and their version numbers."""
    messages = list(
        Message.objects.filter(pk__in=ids).prefetch_related("attachments").order_by("id")
    )
    for message in messages:
        mark_version(message, shown.versions.get(message.pk, [message.pk]))
    return messages


def mark_version(message: Message, versions: list[int]) -> None:
    """Set which of `versions` (its siblings' ids, oldest first) the message is."""
    index = versions.index(message.pk) if message.pk in versions else len(versions) - 1
    message.version, message.versions = index + 1, len(versions)
    message.previous_version = versions[index - 1] if index > 0 else None
    message.next_version = versions[index + 1] if index + 1 < len(versions) else None


def history_for_model(*, conversation: Conversation, before_message_id: int) -> list[ChatTurn]:
    """The conversation as the model should see it: the branch that leads to one message (its
    parent, its parent's parent, … to the first), without it.

    Interrupted replies carry the `[Interrupted]` marker so the model knows it was cut off.
    A user message's attachments go with it, in their place (`FilePart`s without their bytes:
    chat/replies/turns.py reads those for the turns that fit the window).
    Messages API rules are met here: the first turn is the user's, roles alternate (turns of
    the same role are joined), and no turn is empty.
    """
    turns: list[ChatTurn] = []
    parents = dict(Message.objects.filter(conversation=conversation).values_list("id", "parent_id"))
    ancestors: list[int] = []
    at = parents.get(before_message_id)
    while at is not None:
        ancestors.append(at)
        at = parents.get(at)
    messages = (
        Message.objects.filter(pk__in=ancestors)
        .exclude(status=Message.Status.STREAMING)
        .prefetch_related("attachments")
    )
    for message in messages.order_by("id"):
        text = message.display_text.strip()
        files = tuple(file_part(a) for a in message.files)
        if not text and not files:
            continue
        role: Literal["user", "assistant"] = (
            "user" if message.role == Message.Role.USER else "assistant"
        )
        if not turns and role == "assistant":
            continue
        if turns and turns[-1].role == role:
            last = turns[-1]
            joined = f"{last.content}\n\n{text}" if last.content and text else last.content or text
            turns[-1] = ChatTurn(role=role, content=joined, files=last.files + files)
        else:
            turns.append(ChatTurn(role=role, content=text, files=files))
    return turns


def file_part(attachment: Attachment) -> FilePart:
    """An attachment as a turn's file (its bytes not read yet)."""
    kind = cast(Literal["image", "document", "text"], attachment.kind)
    return FilePart(
        kind=kind,
        media_type=attachment.media_type,
        name=attachment.name,
        tokens=attachment.tokens,
        key=str(attachment.pk),
        size=attachment.size,
    )


def message_by_id(*, message_id: int) -> Message:
    """The message, knowing which of its versions it is (for its bubble)."""
    message = Message.objects.get(pk=message_id)
    siblings = Message.objects.filter(
        conversation_id=message.conversation_id, parent_id=message.parent_id
    ).order_by("id")
    mark_version(message, list(siblings.values_list("id", flat=True)))
    return message


def streaming_message(*, conversation_id: uuid.UUID | str) -> Message | None:
    return Message.objects.filter(
        conversation_id=conversation_id, status=Message.Status.STREAMING
    ).first()


def streaming_conversation_ids(*, user_id: int) -> list[str]:
    return [
        str(cid)
        for cid in Message.objects.filter(
            conversation__user_id=user_id, status=Message.Status.STREAMING
        ).values_list("conversation_id", flat=True)
    ]


def active_replies(*, user: AbstractBaseUser) -> list[Message]:
    """The user's streaming replies, with their conversations, oldest first."""
    return list(
        Message.objects.filter(conversation__user_id=user.pk, status=Message.Status.STREAMING)
        .select_related("conversation")
        .order_by("created_at")
    )


# Async twins for async views (each one database hop, closing stale connections around it).
aconversation_for_user = database_sync_to_async(conversation_for_user)
aactive_replies = database_sync_to_async(active_replies)


def newest_message(*, conversation: Conversation) -> Message | None:
    """The last message of the shown branch (where the next message goes), knowing which of
    its versions it is."""
    shown = branch(conversation_id=conversation.pk)
    message = Message.objects.filter(pk=shown.ids[-1]).first() if shown.ids else None
    if message is not None:
        mark_version(message, shown.versions[message.pk])
    return message


# --- The conversations sidebar, search, and usage -------------------------------------------


def sidebar_conversations(
    *, user: AbstractBaseUser, limit: int = 50, current: Conversation | None = None
) -> list[Conversation]:
    """The user's newest conversations, newest first (only what a list item shows); the one
    on the page (`current`) is listed even while it is still empty."""
    mine = Conversation.objects.filter(user_id=user.pk)
    listed = _with_messages(mine)
    if current is not None:
        listed = listed | mine.filter(pk=current.pk)
    return list(listed.only("id", "title", "updated_at").order_by("-updated_at")[:limit])


def conversation_search(*, user: AbstractBaseUser, query: str) -> QuerySet[Conversation]:
    """The user's conversations whose title or any message contains `query` (case-insensitive;
    ASCII only on SQLite), each once, newest first."""
    query = query.strip()
    in_messages = Message.objects.filter(conversation_id=OuterRef("pk"), content__icontains=query)
    return (
        _with_messages(Conversation.objects.filter(user_id=user.pk))
        .filter(Q(title__icontains=query) | Exists(in_messages))
        .only("id", "title", "updated_at")
        .order_by("-updated_at")
    )


def conversation_usage(*, conversation_id: uuid.UUID | str) -> ConversationUsage:
    """Tokens and cost of a conversation's replies, in one aggregate query."""
    rows = (
        Message.objects.filter(conversation_id=conversation_id, role=Message.Role.ASSISTANT)
        .values("model", "tokens_estimated")
        .annotate(
            replies=Count("id"),
            with_input=Count("input_tokens"),
            with_output=Count("output_tokens"),
            input_sum=Sum("input_tokens"),
            output_sum=Sum("output_tokens"),
            cache_read_sum=Sum("cache_read_input_tokens"),
            cache_creation_sum=Sum("cache_creation_input_tokens"),
        )
        .order_by()  # no ORDER BY: Meta.ordering must not split the groups
    )
    return usage_from_totals(
        ModelTotals(
            model=row["model"],
            input_tokens=row["input_sum"] or 0,
            output_tokens=row["output_sum"] or 0,
            replies=row["replies"],
            cache_read_tokens=row["cache_read_sum"] or 0,
            cache_creation_tokens=row["cache_creation_sum"] or 0,
            input_missing=row["with_input"] < row["replies"],
            output_estimated=row["tokens_estimated"] or row["with_output"] < row["replies"],
        )
        for row in rows
    )


aconversation_usage = database_sync_to_async(conversation_usage)
