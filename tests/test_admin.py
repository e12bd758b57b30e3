"""Django admin: every conversation, browsable by staff only, with the marker and token figures."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def add_transcript(conversation: Conversation) -> None:
    """A question and a stopped reply."""
    Message.objects.create(conversation=conversation, role="user", content="Question")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Half an answer",
        status="interrupted",
        stop_reason="user_stop",
        input_tokens=10,
        output_tokens=4,
        tokens_estimated=True,
    )


def test_admin_lists_conversations_with_counts(
    client: Client, staff: User, conversation: Conversation
) -> None:
    add_transcript(conversation)
    client.force_login(staff)
    page = client.get(reverse("admin:chat_conversation_changelist")).content.decode()
    assert "Test chat" in page and "alice" in page
    assert 'class="field-message_count">2<' in page
    assert 'class="field-interrupted_count">1<' in page


@pytest.mark.parametrize(
    "query",
    [
        "?messages__status__exact=interrupted",
        "?messages__stop_reason__exact=user_stop",
        "?q=Half+an",
    ],
)
def test_admin_filters_and_searches(
    client: Client, staff: User, conversation: Conversation, query: str
) -> None:
    add_transcript(conversation)
    client.force_login(staff)
    page = client.get(reverse("admin:chat_conversation_changelist") + query).content.decode()
    assert "Test chat" in page


def test_admin_transcript_shows_marker_and_estimated_tokens(
    client: Client, staff: User, conversation: Conversation
) -> None:
    add_transcript(conversation)
    client.force_login(staff)
    page = client.get(
        reverse("admin:chat_conversation_change", args=[conversation.pk])
    ).content.decode()
    assert "Half an answer" in page and "[Interrupted]" in page
    assert "~4 (estimated)" in page


def test_admin_shows_a_replys_thinking_apart_and_its_cached_input(
    client: Client, staff: User, conversation: Conversation
) -> None:
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="The answer <b>alone</b>",
        thinking="First I weigh <script>x</script> the options.",
        thinking_signature="sig-abc",
        thinking_ms=3200,
        input_tokens=12,
        cache_read_input_tokens=4800,
        cache_creation_input_tokens=300,
        output_tokens=40,
    )
    client.force_login(staff)
    page = client.get(
        reverse("admin:chat_conversation_change", args=[conversation.pk])
    ).content.decode()
    assert "First I weigh &lt;script&gt;x&lt;/script&gt; the options." in page  # escaped
    assert "4800 read · 300 written" in page
    page = client.get(reverse("admin:chat_message_change", args=[reply.pk])).content.decode()
    assert "sig-abc" in page and "3200" in page and "4800" in page
    found = client.get(reverse("admin:chat_message_changelist") + "?q=weigh").content.decode()
    assert f"assistant #{reply.pk}" in found


def test_admin_is_staff_only(client: Client, user: User) -> None:
    client.force_login(user)
    response = client.get(reverse("admin:chat_conversation_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
