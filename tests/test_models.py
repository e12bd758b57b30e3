"""Database invariants."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from chat.data.services import ReplyAlreadyStreaming, turn_create
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_database_refuses_a_second_streaming_message_in_a_conversation(
    conversation: Conversation,
) -> None:
    Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, role="assistant", status="streaming")


def test_turn_start_saves_nothing_when_a_reply_is_streaming(conversation: Conversation) -> None:
    turn_create(conversation=conversation, text="one", model="m")
    with pytest.raises(ReplyAlreadyStreaming):
        turn_create(conversation=conversation, text="two", model="m")
    assert list(conversation.messages.values_list("content", flat=True)) == ["one", ""]


def test_first_message_titles_the_conversation(user: object) -> None:
    conversation = Conversation.objects.create(user=user)
    turn_create(conversation=conversation, text="How do I stop a runaway reply?", model="m")
    conversation.refresh_from_db()
    assert conversation.title == "How do I stop a runaway reply?"


def test_long_first_message_gives_a_short_title(user: object) -> None:
    conversation = Conversation.objects.create(user=user)
    turn_create(
        conversation=conversation, text="one two three four five six seven eight nine", model="m"
    )
    conversation.refresh_from_db()
    assert conversation.title == "one two three four five six seven eight…"


def test_display_text_carries_the_marker_only_when_interrupted() -> None:
    assert Message(content="abc", status="interrupted").display_text == "abc\n\n[Interrupted]"
    assert Message(content="", status="interrupted").display_text == "[Interrupted]"
    assert Message(content="abc", status="complete").display_text == "abc"
