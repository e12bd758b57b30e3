"""Managing conversations: the sidebar, search, rename, delete, and usage with its cost."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from chat.data import selectors
from chat.data.pricing import ModelTotals, format_usd, usage_from_totals
from chat.models import Conversation, Message
from chat.replies import stops
from chat.replies.layer import group_name
from chat.testing.conversations import add
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import SocketFactory, start_slow_reply

TITLE_ID = re.compile(r'id="conv-([0-9a-f-]{36})-title"')


def detail_url(conversation: Conversation) -> str:
    return reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})


def rename_url(conversation: Conversation) -> str:
    return reverse("chat:conversation_rename", kwargs={"conversation_id": conversation.pk})


def delete_url(conversation: Conversation) -> str:
    return reverse("chat:conversation_delete", kwargs={"conversation_id": conversation.pk})


def listed(html: str) -> list[str]:
    """The conversation ids of the list items in a page or fragment, in order."""
    return TITLE_ID.findall(html)


def make_conversation(user: User, title: str, *, age_minutes: int = 0) -> Conversation:
    """A conversation with a message (an empty one is never listed)."""
    conversation = Conversation.objects.create(user=user, title=title)
    add(conversation, "user", f"About {title}")
    # auto_now would overwrite a saved value: set the time the way turn_start does, by update().
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(minutes=age_minutes)
    )
    conversation.refresh_from_db()
    return conversation


def with_a_message(conversations: list[Conversation]) -> None:
    """Give each a message (an empty conversation is never listed)."""
    Message.objects.bulk_create(
        Message(conversation=c, role="user", content=f"About {c.title}") for c in conversations
    )


def search(client: Client, query: str, **extra: str) -> str:
    response = client.get(reverse("chat:conversation_search"), {"q": query, **extra})
    assert response.status_code == 200
    return response.content.decode()


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_search_finds_by_title_and_by_message_text_only_among_the_users_own(
    client: Client, user: User, other_user: User
) -> None:
    lisbon = make_conversation(user, "Trip to Lisbon", age_minutes=3)
    groceries = make_conversation(user, "Groceries", age_minutes=2)
    Message.objects.create(conversation=groceries, role="user", content="Buy a PINEAPPLE")
    Message.objects.create(conversation=groceries, role="assistant", content="Pineapple noted.")
    theirs = make_conversation(other_user, "Lisbon, again", age_minutes=1)
    Message.objects.create(conversation=theirs, role="user", content="pineapple pizza")
    client.force_login(user)

    assert listed(search(client, "lisbon")) == [str(lisbon.pk)]
    # Two messages match: the conversation is listed once.
    assert listed(search(client, "pineapple")) == [str(groceries.pk)]
    assert listed(search(client, "  pInEaPpLe ")) == [str(groceries.pk)]
    assert listed(search(client, "i")) == [str(groceries.pk), str(lisbon.pk)]  # newest first
    assert str(theirs.pk) not in search(client, "i")


@pytest.mark.django_db
def test_search_without_a_match_says_so_escaped(client: Client, user: User) -> None:
    make_conversation(user, "Something")
    client.force_login(user)
    html = search(client, "<b>nothing</b>")
    assert listed(html) == []
    assert "No conversations match “&lt;b&gt;nothing&lt;/b&gt;”." in html
    assert "<b>nothing" not in html


@pytest.mark.django_db
def test_empty_search_lists_the_newest_and_keeps_the_current_one_highlighted(
    client: Client, user: User
) -> None:
    older = make_conversation(user, "Older", age_minutes=5)
    newer = make_conversation(user, "Newer", age_minutes=1)
    client.force_login(user)
    html = search(client, "", current=str(older.pk))
    assert listed(html) == [str(newer.pk), str(older.pk)]
    current = re.findall(r'<a class="conv-link" href="([^"]+)" aria-current="page">', html)
    assert current == [detail_url(older)]
    # A malformed `current` is ignored, not an error.
    assert 'aria-current="page"' not in search(client, "", current="not-a-uuid")


@pytest.mark.django_db
def test_search_fragment_is_cut_at_50_with_a_link_to_all_matches(
    client: Client, user: User
) -> None:
    with_a_message(
        Conversation.objects.bulk_create(
            Conversation(user=user, title=f"Topic {i}") for i in range(55)
        )
    )
    client.force_login(user)
    html = search(client, "topic")
    assert len(listed(html)) == 50
    assert f'href="{reverse("chat:conversation_list")}?q=topic"' in html


@pytest.mark.django_db
def test_the_list_page_searches_without_javascript(
    client: Client, user: User, other_user: User
) -> None:
    match = make_conversation(user, "Weekly notes")
    Message.objects.create(conversation=match, role="user", content="the quarterly figures")
    other = make_conversation(user, "Holiday plans")
    make_conversation(other_user, "quarterly, theirs")
    client.force_login(user)
    url = reverse("chat:conversation_list")

    page = client.get(url, {"q": "Quarterly"}).content.decode()
    assert listed(page) == [str(match.pk)]
    assert 'name="q" value="Quarterly"' in page
    assert f'action="{url}"' in page and 'method="get"' in page  # the form works without JS

    page = client.get(url).content.decode()
    assert set(listed(page)) == {str(match.pk), str(other.pk)}
    assert "No conversations match" not in client.get(url, {"q": "weekly"}).content.decode()
    assert "No conversations match “zebra”." in client.get(url, {"q": "zebra"}).content.decode()


@pytest.mark.django_db
def test_search_needs_a_signed_in_user(client: Client) -> None:
    response = client.get(reverse("chat:conversation_search"), {"q": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --------------------------------------------------------------------------------------------
# The sidebar
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sidebar_lists_the_users_conversations_newest_first_and_marks_the_current_one(
    client: Client, user: User, other_user: User
) -> None:
    oldest = make_conversation(user, "Oldest", age_minutes=30)
    middle = make_conversation(user, "Middle", age_minutes=20)
    newest = make_conversation(user, "Newest", age_minutes=10)
    theirs = make_conversation(other_user, "Not yours", age_minutes=1)
    client.force_login(user)

    page = client.get(detail_url(middle)).content.decode()
    sidebar = page.split('<aside class="sidebar"', 1)[1].split("</aside>", 1)[0]
    assert listed(sidebar) == [str(newest.pk), str(middle.pk), str(oldest.pk)]
    assert str(theirs.pk) not in page
    assert re.findall(r'href="([^"]+)" aria-current="page"', sidebar) == [detail_url(middle)]
    # New chat goes to a new conversation's composer (it is made by its first message).
    assert f'id="new-chat" href="{reverse("chat:home")}"' in sidebar
    assert f'href="{reverse("chat:conversation_list")}">All conversations</a>' in sidebar
    assert f'hx-get="{reverse("chat:conversation_search")}"' in sidebar
    assert 'hx-trigger="input changed delay:250ms, search"' in sidebar
    assert "<script" not in sidebar


@pytest.mark.django_db
def test_sidebar_shows_the_newest_50(client: Client, user: User) -> None:
    with_a_message(
        Conversation.objects.bulk_create(
            Conversation(user=user, title=f"Chat {i}") for i in range(55)
        )
    )
    current = make_conversation(user, "Current")
    client.force_login(user)
    page = client.get(detail_url(current)).content.decode()
    ids = listed(page)
    assert len(ids) == 50 and ids[0] == str(current.pk)


# --------------------------------------------------------------------------------------------
# Rename
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rename_sets_the_trimmed_title_and_returns_to_the_conversation(
    client: Client, user: User, conversation: Conversation
) -> None:
    add(conversation, "user", "Hello")  # (an empty conversation is not in the sidebar)
    conversation.refresh_from_db()
    before = conversation.updated_at
    client.force_login(user)
    page = client.get(detail_url(conversation)).content.decode()
    assert 'class="chat-rename"' in page and 'name="title" value="Test chat"' in page

    response = client.post(rename_url(conversation), {"title": "  Plans for May  "})
    assert response.status_code == 302
    assert response["Location"] == detail_url(conversation)
    conversation.refresh_from_db()
    assert conversation.title == "Plans for May"
    assert conversation.updated_at == before  # a rename does not move it up the list
    page = client.get(detail_url(conversation)).content.decode()
    assert '<h1 class="chat-title" id="chat-title">Plans for May</h1>' in page
    assert (
        f'<span class="conv-title" id="conv-{conversation.pk}-title">Plans for May</span>' in page
    )


@pytest.mark.django_db
def test_rename_through_htmx_answers_with_the_new_title_fragment(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    response = client.post(
        rename_url(conversation), {"title": "<i>New</i> name"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(
        '<h1 class="chat-title" id="chat-title">&lt;i&gt;New&lt;/i&gt; name</h1>'
    )
    assert (
        f'<span class="conv-title" id="conv-{conversation.pk}-title" hx-swap-oob="true">'
        "&lt;i&gt;New&lt;/i&gt; name</span>"
    ) in html
    assert 'id="chat-rename" hx-swap-oob="true"' in html
    assert 'value="&lt;i&gt;New&lt;/i&gt; name"' in html
    assert "<title>&lt;i&gt;New&lt;/i&gt; name · Stopchat</title>" in html
    assert "<i>" not in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "error"),
    [
        ("", "Give the conversation a title."),
        ("    ", "Give the conversation a title."),
        ("x" * 201, "Keep the title to 200 characters or fewer."),
    ],
)
def test_an_invalid_title_is_refused_with_a_clear_message(
    client: Client, user: User, conversation: Conversation, title: str, error: str
) -> None:
    client.force_login(user)
    response = client.post(rename_url(conversation), {"title": title})
    assert response.status_code == 400
    html = response.content.decode()
    assert error in html and 'role="alert"' in html
    assert 'name="title"' in html  # the form again, to fix it
    htmx = client.post(rename_url(conversation), {"title": title}, headers={"HX-Request": "true"})
    assert htmx.status_code == 400
    assert error in htmx.content.decode()
    assert "<html" not in htmx.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Test chat"


@pytest.mark.django_db
def test_a_title_of_200_characters_is_accepted(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    assert client.post(rename_url(conversation), {"title": "y" * 200}).status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "y" * 200


@pytest.mark.django_db
def test_rename_is_owner_only_post_only_and_csrf_protected(
    client: Client, user: User, other_user: User, conversation: Conversation
) -> None:
    url = rename_url(conversation)
    anonymous = client.post(url, {"title": "Anon"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))

    client.force_login(other_user)
    assert client.post(url, {"title": "Mine now"}).status_code == 404

    client.force_login(user)
    assert client.get(url).status_code == 405

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    assert csrf_client.post(url, {"title": "No token"}).status_code == 403
    conversation.refresh_from_db()
    assert conversation.title == "Test chat"


# --------------------------------------------------------------------------------------------
# Delete
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_asks_for_confirmation_first(
    client: Client, user: User, conversation: Conversation
) -> None:
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(conversation=conversation, role="assistant", content="Hello")
    client.force_login(user)
    chat_page = client.get(detail_url(conversation)).content.decode()
    assert f'href="{delete_url(conversation)}"' in chat_page

    response = client.get(delete_url(conversation))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Delete “Test chat” and its 2 messages? This cannot be undone." in html
    assert f'<form method="post" action="{delete_url(conversation)}"' in html
    assert "csrfmiddlewaretoken" in html
    assert f'href="{detail_url(conversation)}" id="cancel-delete">Cancel</a>' in html
    assert Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.mark.django_db
def test_delete_removes_the_conversation_and_its_messages(
    client: Client, user: User, conversation: Conversation
) -> None:
    keep = make_conversation(user, "Keep me")
    for text in ("one", "two", "three"):
        Message.objects.create(conversation=conversation, role="user", content=text)
    client.force_login(user)

    response = client.post(delete_url(conversation))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:conversation_list")
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert Message.objects.filter(conversation=keep).count() == 1
    assert client.get(detail_url(conversation)).status_code == 404
    assert client.get(delete_url(conversation)).status_code == 404


@pytest.mark.django_db
def test_delete_is_owner_only_and_csrf_protected(
    client: Client, user: User, other_user: User, conversation: Conversation
) -> None:
    url = delete_url(conversation)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    client.force_login(other_user)
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    assert csrf_client.post(url).status_code == 403
    assert client.put(url).status_code in {404, 405}
    assert Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_conversation_with_a_streaming_orphan_leaves_nothing_and_says_gone(
    user: User, conversation: Conversation
) -> None:
    """A streaming reply whose owner is gone: closed first, then deleted; open tabs are told."""
    await Message.objects.acreate(conversation=conversation, role="user", content="Hi")
    await Message.objects.acreate(
        conversation=conversation, role="assistant", status="streaming", content="Part"
    )
    layer = get_channel_layer()
    assert layer is not None
    tab = await layer.new_channel()
    await layer.group_add(group_name(conversation.pk), tab)
    client = AsyncClient()
    await client.aforce_login(user)

    response = await client.post(delete_url(conversation))

    assert response.status_code == 302
    assert not await Conversation.objects.filter(pk=conversation.pk).aexists()
    assert not await Message.objects.filter(conversation_id=conversation.pk).aexists()
    events = [await asyncio.wait_for(layer.receive(tab), 1)]
    while events[-1]["type"] != "chat.gone":
        events.append(await asyncio.wait_for(layer.receive(tab), 1))
    assert events[-1] == {"type": "chat.gone"}


@pytest.mark.django_db(transaction=True)
async def test_deleting_while_a_reply_streams_stops_it_upstream_and_leaves_nothing_behind(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    user: User,
    conversation: Conversation,
) -> None:
    owner = await chat_socket(conversation, user)
    record = (await start_slow_reply(owner, fake_anthropic, "Tell me everything", deltas=5)).record
    client = AsyncClient()
    await client.aforce_login(user)

    response = await client.post(delete_url(conversation))

    assert response.status_code == 302
    await fake_anthropic.await_disconnect(record)
    assert record.disconnected_at is not None and not record.completed
    await asyncio.sleep(0.3)  # nothing the reply's owner does afterwards brings rows back
    assert not await Conversation.objects.filter(pk=conversation.pk).aexists()
    assert not await Message.objects.filter(conversation_id=conversation.pk).aexists()


@pytest.mark.django_db(transaction=True)
async def test_delete_refuses_while_a_streaming_reply_cannot_be_stopped(
    user: User, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the message bus down the reply cannot be stopped: nothing is deleted, and 503."""
    await Message.objects.acreate(
        conversation=conversation, role="assistant", status="streaming", owner_channel="x!y"
    )

    async def unavailable(conversation_id: Any, **_: Any) -> stops.StopResult:
        return stops.StopResult("unavailable", str(conversation_id))

    monkeypatch.setattr(stops, "request_stop", unavailable)
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.post(delete_url(conversation))
    assert response.status_code == 503
    assert "Nothing was deleted" in response.content.decode()
    assert await Conversation.objects.filter(pk=conversation.pk).aexists()


# --------------------------------------------------------------------------------------------
# Usage and cost
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0", "$0.00"),
        ("0.0105", "$0.0105"),
        ("0.0123456", "$0.0123"),
        ("0.05", "$0.05"),
        ("0.000456", "$0.000456"),
        ("0.0000004", "<$0.000001"),
        ("0.099999", "$0.10"),
        ("0.5", "$0.50"),
        ("1234.5", "$1,234.50"),
    ],
)
def test_dollars_are_shown_with_enough_precision_for_small_sums(amount: str, text: str) -> None:
    assert format_usd(Decimal(amount)) == text


def test_cost_is_summed_per_model_at_the_table_prices() -> None:
    usage = usage_from_totals(
        [
            ModelTotals("claude-sonnet-4-6", input_tokens=1000, output_tokens=500, replies=1),
            ModelTotals("claude-haiku-4-5", input_tokens=2000, output_tokens=1000, replies=2),
            ModelTotals("claude-sonnet-4-6", input_tokens=0, output_tokens=100, replies=1),
        ]
    )
    # sonnet: 1000 * 3 + 600 * 15 = 12,000; haiku: 2000 * 1 + 1000 * 5 = 7,000 (per million)
    assert usage.cost_usd == Decimal("0.019")
    assert (usage.input_tokens, usage.output_tokens, usage.replies) == (3000, 1600, 4)
    assert usage.priced and not usage.estimated
    assert (usage.input_text, usage.output_text, usage.cost_text) == ("3,000", "1,600", "$0.019")


def test_a_model_without_a_price_makes_the_cost_unknown() -> None:
    unknown = usage_from_totals([ModelTotals("gpt-nothing", 10, 10, replies=1)])
    assert unknown.cost_usd is None and not unknown.priced
    assert unknown.cost_text == "cost unknown"
    assert "gpt-nothing" in unknown.description
    partly = usage_from_totals(
        [
            ModelTotals("gpt-nothing", 10, 10, replies=1),
            ModelTotals("claude-opus-4-5", 1000, 1000, replies=1),
        ]
    )
    assert partly.cost_usd == Decimal("0.03") and not partly.priced
    assert partly.cost_text == "$0.03 + unknown"


def test_cached_input_is_priced_at_the_cache_rates() -> None:
    usage = usage_from_totals(
        [
            ModelTotals(
                "claude-sonnet-4-6",
                input_tokens=1000,
                output_tokens=100,
                replies=2,
                cache_read_tokens=100_000,
                cache_creation_tokens=10_000,
            )
        ]
    )
    # 1000 * 3 + 10,000 * 3.75 + 100,000 * 0.30 + 100 * 15 = 72,000 (per million)
    assert usage.cost_usd == Decimal("0.072")
    assert (usage.input_text, usage.cached_text) == ("1,000", "100,000")
    assert "100,000 read from Anthropic's prompt cache" in usage.description
    # A table that gives only input and output prices: the cache prices follow Anthropic's
    # multipliers of the input price (1.25x to write, 0.1x to read).
    two = usage_from_totals(
        [ModelTotals("m", 0, 0, replies=1, cache_read_tokens=1_000_000)], prices={"m": (2, 10)}
    )
    assert two.cost_usd == Decimal("0.2")


def test_an_estimate_anywhere_marks_the_figures_built_from_it() -> None:
    usage = usage_from_totals(
        [
            ModelTotals("claude-sonnet-4-6", 1000, 400, replies=1),
            ModelTotals("claude-sonnet-4-6", 500, 200, replies=1, output_estimated=True),
        ]
    )
    assert usage.estimated and usage.output_estimated and not usage.input_estimated
    assert (usage.input_text, usage.output_text) == ("1,500", "~600")
    assert usage.cost_text == "~$0.0135"
    no_input = usage_from_totals(
        [ModelTotals("claude-haiku-4-5", 0, 0, replies=1, input_missing=True)]
    )
    assert no_input.estimated and no_input.input_text == "~0"


def test_a_conversation_without_replies_cost_nothing() -> None:
    usage = usage_from_totals([])
    assert (usage.cost_usd, usage.priced, usage.estimated, usage.replies) == (
        Decimal(0),
        True,
        False,
        0,
    )


@pytest.mark.django_db
def test_conversation_usage_is_one_query_over_the_assistant_messages(
    conversation: Conversation, django_assert_num_queries: Any
) -> None:
    def reply(**fields: Any) -> None:
        Message.objects.create(conversation=conversation, role="assistant", **fields)

    Message.objects.create(conversation=conversation, role="user", content="Hi")
    reply(model="claude-sonnet-4-6", input_tokens=1000, output_tokens=400)
    reply(
        model="claude-sonnet-4-6",
        input_tokens=500,
        output_tokens=200,
        tokens_estimated=True,
        status="interrupted",
    )
    reply(model="claude-haiku-4-5", input_tokens=100, output_tokens=100)
    with django_assert_num_queries(1):
        usage = selectors.conversation_usage(conversation_id=conversation.pk)
    assert (usage.input_tokens, usage.output_tokens, usage.replies) == (1600, 700, 3)
    # sonnet 1500 * 3 + 600 * 15 = 13,500; haiku 100 * 1 + 100 * 5 = 600 (per million)
    assert usage.cost_usd == Decimal("0.0141")
    assert usage.output_estimated and not usage.input_estimated
    reply(model="claude-haiku-4-5", status="streaming")  # no counts yet
    usage = selectors.conversation_usage(conversation_id=conversation.pk)
    assert usage.input_estimated and usage.replies == 4


@pytest.mark.django_db
def test_the_chat_heading_shows_tokens_and_cost(
    client: Client, user: User, conversation: Conversation, settings: Any
) -> None:
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        model="claude-sonnet-4-6",
        input_tokens=1234,
        output_tokens=567,
        tokens_estimated=True,
        status="interrupted",
    )
    client.force_login(user)
    page = client.get(detail_url(conversation)).content.decode()
    usage = re.search(
        r'<span id="conversation-usage" class="conversation-usage" title="[^"]*">'
        r"(.*?)</span>",
        page,
    )
    assert usage is not None
    # 1234 * 3 + 567 * 15 = 12,207 per million
    assert usage.group(1) == "1,234 in · ~567 out · ~$0.0122"

    settings.CHAT_PRICES = {}
    page = client.get(detail_url(conversation)).content.decode()
    assert "1,234 in · ~567 out · cost unknown</span>" in page


@pytest.mark.django_db
def test_a_new_conversation_shows_no_usage_yet(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    page = client.get(detail_url(conversation)).content.decode()
    assert re.search(
        r'<span id="conversation-usage" class="conversation-usage" title="[^"]*"></span>', page
    )
