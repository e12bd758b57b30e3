"""What the model is sent as history."""

from __future__ import annotations

import pytest

from chat.data.selectors import history_for_model
from chat.models import Conversation, Message
from chat.providers import ChatTurn
from chat.testing import conversations

pytestmark = pytest.mark.django_db


def add(conversation: Conversation, role: str, content: str, status: str = "complete") -> Message:
    return conversations.add(conversation, role, content, status)


def test_history_marks_interrupted_replies_and_stops_before_the_new_reply(
    conversation: Conversation,
) -> None:
    add(conversation, "user", "Q1")
    add(conversation, "assistant", "Partial", "interrupted")
    add(conversation, "user", "Q2")
    reply = add(conversation, "assistant", "", "streaming")
    assert history_for_model(conversation=conversation, before_message_id=reply.pk) == [
        ChatTurn("user", "Q1"),
        ChatTurn("assistant", "Partial\n\n[Interrupted]"),
        ChatTurn("user", "Q2"),
    ]


def test_history_joins_same_role_turns_and_skips_empty_failed_replies(
    conversation: Conversation,
) -> None:
    add(conversation, "user", "Q1")
    add(conversation, "assistant", "", "error")
    add(conversation, "user", "Q1 again")
    reply = add(conversation, "assistant", "", "streaming")
    assert history_for_model(conversation=conversation, before_message_id=reply.pk) == [
        ChatTurn("user", "Q1\n\nQ1 again"),
    ]


def test_history_of_an_empty_interrupted_reply_is_the_marker(conversation: Conversation) -> None:
    add(conversation, "user", "Q1")
    add(conversation, "assistant", "", "interrupted")
    add(conversation, "user", "Q2")
    reply = add(conversation, "assistant", "", "streaming")
    turns = history_for_model(conversation=conversation, before_message_id=reply.pk)
    assert turns[1] == ChatTurn("assistant", "[Interrupted]")
