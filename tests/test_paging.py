"""A long conversation opens on its newest messages; "Show earlier messages" loads the rest
(the server side, with Django's test client; the browser side is tests/test_browser_paging.py).

The page renders the newest page of messages only (chat/selectors.PAGE_MESSAGES): rendering every
reply's Markdown on each load made a page of 1,000 messages take about half a second
(bench/page.py).
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.data import selectors
from chat.models import Conversation, Message
from chat.testing.conversations import append
from chat.ws import render

PAGE = selectors.PAGE_MESSAGES
ARTICLE_ID = re.compile(r'<article id="msg-(\d+)"')


def _reply(i: int) -> str:
    return f"Answer **{i}**:\n\n```python\nprint({i})\n```"


def _long_conversation(user: User, count: int) -> tuple[Conversation, list[int]]:
    conversation = Conversation.objects.create(user=user, title="Long")
    append(
        conversation,
        (
            Message(conversation=conversation, role=Message.Role.USER, content=f"Question {i}")
            if i % 2 == 0
            else Message(conversation=conversation, role=Message.Role.ASSISTANT, content=_reply(i))
            for i in range(count)
        ),
    )
    return conversation, list(conversation.messages.order_by("id").values_list("id", flat=True))


def _shown(html: str) -> list[int]:
    return [int(i) for i in ARTICLE_ID.findall(html)]


@pytest.mark.django_db
def test_the_page_shows_the_newest_messages_and_a_control_for_the_earlier_ones(
    client: Client, user: User
) -> None:
    conversation, ids = _long_conversation(user, 2 * PAGE + 20)
    client.force_login(user)
    url = reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
    html = client.get(url).content.decode()
    assert _shown(html) == ids[-PAGE:]
    # The socket is still told the newest message the page holds (its catch-up relies on it).
    assert f"/ws/chat/{conversation.pk}/?after={ids[-1]}" in html
    assert html.count('id="show-earlier"') == 1
    assert f'hx-get="{url}?before={ids[-PAGE]}"' in html
    assert html.index('id="earlier-messages"') < html.index(f'id="msg-{ids[-PAGE]}"')

    # Each click brings the page before, with the next control first while any are left.
    fragment = client.get(f"{url}?before={ids[-PAGE]}", headers={"HX-Request": "true"})
    assert "HX-Request" in fragment["Vary"]
    text = fragment.content.decode()
    assert "<html" not in text and "chat-title" not in text
    assert _shown(text) == ids[-2 * PAGE : -PAGE]
    assert f"?before={ids[-2 * PAGE]}" in text
    assert "<pre" in text  # finished replies are rendered as on the page
    last = client.get(f"{url}?before={ids[-2 * PAGE]}", headers={"HX-Request": "true"})
    assert _shown(last.content.decode()) == ids[: -2 * PAGE]
    assert "show-earlier" not in last.content.decode()


@pytest.mark.django_db
def test_a_short_conversation_has_no_control_and_odd_requests_get_the_whole_page(
    client: Client, user: User, other_user: User
) -> None:
    conversation, ids = _long_conversation(user, PAGE)
    client.force_login(user)
    url = reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
    html = client.get(url).content.decode()
    assert _shown(html) == ids and "show-earlier" not in html
    # Without htmx, or with a `before` that is no message id, the full page as usual.
    for query in ["?before=3", "?before=abc", "?before=%C2%B2", "?before=" + "9" * 40]:
        headers = {} if query == "?before=3" else {"HX-Request": "true"}
        response = client.get(url + query, headers=headers)
        assert response.status_code == 200
        assert "<html" in response.content.decode() and _shown(response.content.decode()) == ids
    # Never another user's messages.
    client.force_login(other_user)
    assert client.get(f"{url}?before={ids[-1]}", headers={"HX-Request": "true"}).status_code == 404


@pytest.mark.django_db
def test_the_catch_up_of_a_stale_page_sends_the_newest_page_with_its_control(user: User) -> None:
    conversation, ids = _long_conversation(user, 2 * PAGE + 20)
    frame = render.catch_up(selectors.conversation_messages(conversation=conversation))
    assert _shown(frame) == ids[-PAGE:]
    assert frame.startswith('<div id="messages" hx-swap-oob="innerHTML">')
    assert f"?before={ids[-PAGE]}" in frame
