"""Conversations made on the spot for tests and the benchmark: messages appended one after
another, as turns append them (each follows the one before it on the shown branch)."""

from __future__ import annotations

from collections.abc import Iterable

from chat.data import selectors
from chat.models import Conversation, Message


def append(conversation: Conversation, messages: Iterable[Message]) -> list[Message]:
    """Save `messages` (unsaved, of `conversation`) after the shown branch's last message, in
    order: one INSERT for them all, one UPDATE for their links."""
    rows = list(messages)
    shown = selectors.branch(conversation_id=conversation.pk).ids
    saved = Message.objects.bulk_create(rows)
    before = shown[-1] if shown else None
    for message in saved:
        message.parent_id = before
        before = message.pk
    Message.objects.bulk_update(saved, ["parent"], batch_size=500)
    return saved


def add(
    conversation: Conversation,
    role: str,
    content: str = "",
    status: str = "complete",
    **fields: object,
) -> Message:
    """One message after the shown branch's last one."""
    message = Message(
        conversation=conversation, role=role, content=content, status=status, **fields
    )
    return append(conversation, [message])[0]
