"""Versions on the server: the tree Regenerate and Edit grow, the branch the page, Claude and
the API follow, switching and deleting, the admin's view, and the migration of linear data.
(The page itself: tests/browser/test_versions.py.)"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.data import api_tokens, selectors, services
from chat.data.services import ReplyAlreadyStreaming, TurnRefused
from chat.files import store
from chat.models import Attachment, Conversation, Message
from chat.testing.conversations import add
from chat.testing.files import image_bytes
from tests.helpers import files_in

pytestmark = pytest.mark.django_db


def exchange(conversation: Conversation, question: str, answer: str) -> tuple[Message, Message]:
    return add(conversation, "user", question), add(conversation, "assistant", answer)


def finish(reply: Message, text: str) -> None:
    Message.objects.filter(pk=reply.pk).update(status="complete", content=text)


def regenerate(conversation: Conversation, text: str) -> Message:
    _, _, reply = services.turn_regenerate(conversation=conversation, model="m", max_tokens=10)
    finish(reply, text)
    return reply


def shown(conversation: Conversation) -> list[tuple[str, int, int]]:
    return [
        (m.content, m.version, m.versions)
        for m in selectors.all_messages(conversation=conversation)
    ]


def test_regenerate_and_edit_grow_versions_and_the_branch_follows_the_choice(
    conversation: Conversation,
) -> None:
    exchange(conversation, "Q1", "A1")
    question, first = exchange(conversation, "Q2", "first")
    second = regenerate(conversation, "second")
    assert shown(conversation) == [("Q1", 1, 1), ("A1", 1, 1), ("Q2", 1, 1), ("second", 2, 2)]
    assert services.version_select(conversation=conversation, message_id=first.pk)
    assert shown(conversation)[-1] == ("first", 1, 2)
    # A message sent now follows the version shown, and Claude is sent that branch.
    user, reply = services.turn_create(conversation=conversation, text="Q3", model="m")
    assert user.parent_id == first.pk
    history = selectors.history_for_model(conversation=conversation, before_message_id=reply.pk)
    assert [t.content for t in history] == ["Q1", "A1", "Q2", "first", "Q3"]
    finish(reply, "A3")
    # The other version has its own branch below it (nothing after it yet).
    services.version_select(conversation=conversation, message_id=second.pk)
    assert shown(conversation)[-1] == ("second", 2, 2)
    services.version_select(conversation=conversation, message_id=first.pk)
    assert shown(conversation)[-2:] == [("Q3", 1, 1), ("A3", 1, 1)]
    # Edit: the message's earlier text is version 1, and its branch is kept under it.
    edited, removed, edited_reply = services.turn_edit(
        conversation=conversation, text="Q3, better", model="m", max_tokens=10
    )
    finish(edited_reply, "A3, better")
    assert removed == [user.pk, reply.pk]
    assert [(m.content, m.version, m.versions) for m in [edited]] == [("Q3, better", 2, 2)]
    services.version_select(conversation=conversation, message_id=user.pk)
    assert shown(conversation)[-2:] == [("Q3", 1, 2), ("A3", 1, 1)]
    assert question.pk in selectors.branch(conversation_id=conversation.pk).ids


def test_retry_replaces_a_reply_that_failed_before_any_text(conversation: Conversation) -> None:
    add(conversation, "user", "Q")
    failed = add(conversation, "assistant", "", "error")
    reply = regenerate(conversation, "ok")
    assert not Message.objects.filter(pk=failed.pk).exists()
    assert shown(conversation) == [("Q", 1, 1), ("ok", 1, 1)]
    assert reply.versions == 1


def test_switching_and_deleting_are_refused_while_a_reply_streams(
    conversation: Conversation,
) -> None:
    _, first = exchange(conversation, "Q", "first")
    regenerate(conversation, "second")
    add(conversation, "user", "Q2")
    add(conversation, "assistant", "", "streaming")
    with pytest.raises(ReplyAlreadyStreaming, match="before switching versions"):
        services.version_select(conversation=conversation, message_id=first.pk)
    with pytest.raises(ReplyAlreadyStreaming, match="before deleting messages"):
        services.message_delete(conversation=conversation, message_id=first.pk)


def test_deleting_a_message_takes_every_version_below_it_and_shows_an_earlier_one(
    conversation: Conversation,
) -> None:
    exchange(conversation, "Q1", "A1")
    question, _ = exchange(conversation, "Q2", "first")
    second = regenerate(conversation, "second")
    exchange(conversation, "Q3", "A3")
    assert services.message_delete(conversation=conversation, message_id=second.pk) == 3
    assert shown(conversation) == [("Q1", 1, 1), ("A1", 1, 1), ("Q2", 1, 1), ("first", 1, 1)]
    with pytest.raises(TurnRefused, match="not in the conversation as shown"):
        services.message_delete(conversation=conversation, message_id=second.pk)
    assert services.message_delete(conversation=conversation, message_id=question.pk) == 2
    assert [m for m, _, _ in shown(conversation)] == ["Q1", "A1"]


def test_an_edited_message_keeps_its_files_shared_until_the_last_version_goes(
    conversation: Conversation,
    user: User,
    attachments_dir: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    attachment = store.attach(user=user, name="a.png", data=image_bytes())
    original, reply = services.turn_create(
        conversation=conversation, text="See", model="m", attachments=[attachment.pk]
    )
    finish(reply, "ok")
    edited, _, _ = services.turn_edit(
        conversation=conversation, text="See this", model="m", max_tokens=10
    )
    copy = Attachment.objects.get(message=edited)
    assert copy.file.name == attachment.file.name and copy.pk != attachment.pk
    stored = files_in(attachments_dir)
    with django_capture_on_commit_callbacks(execute=True):
        Message.objects.filter(pk=original.pk).delete()  # (with its reply, below it)
    assert files_in(attachments_dir) == stored  # still named by the edited version
    with django_capture_on_commit_callbacks(execute=True):
        Message.objects.filter(pk=edited.pk).delete()
    assert files_in(attachments_dir) == []


def test_the_api_shows_the_branch_with_version_numbers(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "Q", "first")
    regenerate(conversation, "second")
    _, token = api_tokens.token_create(user=user, name="t")
    data = client.get(
        reverse("chat:api_conversation", args=[conversation.pk]),
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    messages = data["messages"]
    assert [m["content"] for m in messages] == ["Q", "second"]
    assert "version" not in messages[0]
    assert (messages[1]["version"], messages[1]["versions"]) == (2, 2)


def test_the_admin_shows_every_version(
    client: Client, staff: User, conversation: Conversation
) -> None:
    exchange(conversation, "Q", "first take")
    regenerate(conversation, "second take")
    client.force_login(staff)
    page = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    html = page.content.decode()
    assert "first take" in html and "second take" in html
    assert "1 of 2, not shown" in html and "2 of 2, shown" in html


def test_the_migration_links_linear_messages_in_order(conversation: Conversation) -> None:
    migration = importlib.import_module("chat.migrations.0008_message_versions")
    rows = [
        Message.objects.create(conversation=conversation, role=role, content=text)
        for role, text in (("user", "Q1"), ("assistant", "A1"), ("user", "Q2"))
    ]
    migration.link_in_order(apps, None)
    linked = list(Message.objects.order_by("id").values_list("parent_id", flat=True))
    assert linked == [None, rows[0].pk, rows[1].pk]
    assert [m for m, _, _ in shown(conversation)] == ["Q1", "A1", "Q2"]
