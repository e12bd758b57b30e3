"""The conversations sidebar, rename, delete and search, in a real Chromium against daphne.

Same machinery as tests/browser/test_chat.py (fixtures in tests/browser/conftest.py): the
app runs in its own process, its SQLite file is read directly, and any console error or page
exception fails the test. The live database is shared by the session, so each test recognises
its own conversations by id or by a word no other test uses.
"""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp, create_user
from tests.browser.helpers import (
    SCREENSHOTS,
    ContextFactory,
    expect_complete,
    new_chat,
    send_with_enter,
    sign_in,
)
from tests.helpers import QUICK_REPLY

pytestmark = pytest.mark.browser


ANSWER = (
    "Use slicing for a reversed copy, or `reversed()` for an iterator:\n\n"
    "```python\nitems = [1, 2, 3]\nprint(items[::-1])  # [3, 2, 1]\n```\n\n"
    "`items.reverse()` reverses the list in place and returns `None`."
)


def conversation_row(app: LiveApp, conversation_id: str) -> dict | None:
    rows = app.query(
        "SELECT id, title FROM chat_conversation WHERE id = ?", (conversation_id.replace("-", ""),)
    )
    return rows[0] if rows else None


def sidebar_ids(page: Page) -> list[str]:
    """The conversation ids in the sidebar's list, top to bottom."""
    return page.locator(".sidebar .conv-title").evaluate_all(
        "els => els.map(e => e.id.replace(/^conv-/, '').replace(/-title$/, ''))"
    )


def chat_once(page: Page, text: str) -> str:
    """A new conversation (from the button on the page) with one complete exchange; its id."""
    conversation = new_chat(page)
    _, reply = send_with_enter(page, f"{QUICK_REPLY} {text}")
    expect_complete(page, reply)
    return conversation


def rename(page: Page, title: str) -> None:
    page.locator(".chat-rename summary").click()
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_role("button", name="Save title").click()
    expect(page.locator("#chat-title")).to_have_text(title)


def sign_in_as(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"://[^/]+/$"))  # the composer at /


# --------------------------------------------------------------------------------------------
# The sidebar
# --------------------------------------------------------------------------------------------


def test_the_sidebar_lists_conversations_newest_first_and_highlights_the_current_one(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    first = chat_once(page, "First of two. (sidebar order)")
    expect(page.locator(".sidebar")).to_be_visible()
    second = chat_once(page, "Second of two. (sidebar order)")  # New chat in the sidebar
    page.reload()

    assert sidebar_ids(page)[:2] == [second, first]
    current = page.locator('.sidebar [aria-current="page"]')
    expect(current).to_have_count(1)
    expect(current).to_have_attribute("href", f"/conversations/{second}/")
    expect(current).to_contain_text("Second of two.")

    # Keyboard: the search box, then the list, are reachable with Tab from New chat.
    page.locator("#new-chat").focus()
    page.keyboard.press("Tab")
    expect(page.locator("#conversation-search")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(".sidebar .conv-link").first).to_be_focused()

    page.locator(f"#conv-{first}-title").click()
    page.wait_for_url(f"**/conversations/{first}/")
    expect(page.locator('.sidebar [aria-current="page"]')).to_have_attribute(
        "href", f"/conversations/{first}/"
    )
    expect(page.locator("#chat-title")).to_contain_text("First of two.")
    # The chat column keeps its width beside the sidebar.
    sidebar, chat = page.locator(".sidebar").bounding_box(), page.locator("#chat").bounding_box()
    assert sidebar is not None and chat is not None
    assert sidebar["width"] == pytest.approx(260, abs=1)
    assert chat["width"] == pytest.approx(860, abs=1)
    assert chat["x"] >= sidebar["x"] + sidebar["width"]


def test_on_a_narrow_screen_the_list_page_takes_the_sidebars_place(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    page.set_viewport_size({"width": 420, "height": 800})
    sign_in(page, live_app)
    word = f"narrow{secrets.token_hex(4)}"
    conversation = chat_once(page, f"About {word} on a phone. (narrow)")
    expect(page.locator(".sidebar")).to_be_hidden()

    page.get_by_role("link", name="Conversations", exact=True).click()
    page.wait_for_url(re.compile(r"/conversations/$"))
    expect(page.locator(f"#conv-{conversation}-title")).to_be_visible()
    page.get_by_role("searchbox", name="Search conversations").fill(word)
    expect(page.locator("#conversation-items .conv-link")).to_have_count(1)
    expect(page.locator("#conversation-items .conv-link")).to_have_attribute(
        "href", f"/conversations/{conversation}/"
    )


# --------------------------------------------------------------------------------------------
# Rename
# --------------------------------------------------------------------------------------------


def test_rename_changes_the_heading_and_the_sidebar_without_reloading(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = chat_once(page, "Something to rename. (rename)")
    # Rendered after the first message gave the conversation its title (the prefill).
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    page.evaluate("window.__sameDocument = true")
    page.locator(".chat-rename summary").click()
    box = page.get_by_label("Title", exact=True)
    expect(box).to_have_value(re.compile(r"Something to rename\."))

    # An empty (blank) title never leaves the browser: the field is invalid.
    box.fill("   ")
    page.get_by_role("button", name="Save title").click()
    assert box.evaluate("b => b.validity.valid") is False
    expect(page.locator("#chat-title")).to_contain_text("Something to rename.")

    title = f"Renamed <b>{secrets.token_hex(3)}</b>"
    box.fill(title)
    box.press("Enter")
    expect(page.locator("#chat-title")).to_have_text(title)
    expect(page.locator(f"#conv-{conversation}-title")).to_have_text(title)
    expect(page).to_have_title(f"{title} · Stopchat")
    expect(page.locator(".chat-rename")).not_to_have_attribute("open", "")
    expect(page.locator(".chat-rename summary")).to_be_focused()
    assert page.evaluate("window.__sameDocument") is True  # no reload: the socket stayed open
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    row = conversation_row(live_app, conversation)
    assert row is not None and row["title"] == title

    page.reload()
    expect(page.locator("#chat-title")).to_have_text(title)
    page.locator(".chat-rename summary").click()
    expect(page.get_by_label("Title", exact=True)).to_have_value(title)


# --------------------------------------------------------------------------------------------
# Delete
# --------------------------------------------------------------------------------------------


def test_delete_asks_first_cancel_keeps_it_and_delete_removes_it(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = chat_once(page, "Soon to be gone. (delete)")
    url = f"/conversations/{conversation}/"

    page.get_by_role("link", name="Delete…").click()
    page.wait_for_url(f"**{url}delete/")
    expect(page.locator(".confirm-card")).to_contain_text(
        re.compile(r"Delete “.*Soon to be gone\..*” and its 2 messages\? This cannot be undone\.")
    )
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(f"**{url}")
    assert conversation_row(live_app, conversation) is not None
    expect(page.locator(f"#conv-{conversation}-title")).to_be_visible()

    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url(re.compile(r"/conversations/$"))
    expect(page.locator(f"#conv-{conversation}-title")).to_have_count(0)
    assert conversation_row(live_app, conversation) is None
    assert live_app.messages(conversation) == []
    # Gone from the sidebar of another conversation too, and its URL is a 404.
    new_chat(page)
    expect(page.locator(f"#conv-{conversation}-title")).to_have_count(0)
    assert page.request.get(url).status == 404


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


def test_search_finds_a_word_that_is_only_in_a_messages_text(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    word = f"zephyr{secrets.token_hex(4)}"
    # Past the eighth word, so that the automatic title does not contain it.
    wanted = chat_once(page, f"one two three four five six seven eight {word}")
    row = conversation_row(live_app, wanted)
    assert row is not None and word not in row["title"]
    other = chat_once(page, "Nothing special here. (search)")

    search = page.get_by_role("searchbox", name="Search conversations")
    search.fill(word.upper())
    items = page.locator("#conversation-items .conv-link")
    expect(items).to_have_count(1)
    expect(items).to_have_attribute("href", f"/conversations/{wanted}/")
    expect(page.locator(f"#conv-{other}-title")).to_have_count(0)

    search.fill(f"{word}-nowhere")
    expect(page.locator("#conversation-items")).to_have_text(
        f"No conversations match “{word}-nowhere”."
    )

    # Enter searches too, without leaving the page (a reply here would be cut by leaving).
    page.evaluate("window.__sameDocument = true")
    search.fill(word)
    expect(items).to_have_count(1)
    search.press("Enter")
    page.wait_for_timeout(500)
    expect(items).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True
    assert page.url.endswith(f"/conversations/{other}/")

    search.fill("")  # cleared: the newest again, the open one highlighted
    expect(page.locator('#conversation-items [aria-current="page"]')).to_have_attribute(
        "href", f"/conversations/{other}/"
    )
    assert sidebar_ids(page)[:2] == [other, wanted]

    # Without htmx it is a plain GET form to the list page.
    page.goto(f"/conversations/?q={word}")
    expect(page.locator("#conversation-items .conv-link")).to_have_count(1)
    expect(page.get_by_role("searchbox", name="Search conversations")).to_have_value(word)


# --------------------------------------------------------------------------------------------
# Screenshots
# --------------------------------------------------------------------------------------------


def test_screenshots_of_the_chat_page_with_the_sidebar_in_light_and_dark(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:

    # A user of its own, so that the sidebar shows only these conversations.
    username, password = "sidebar-shots", f"shots-{secrets.token_urlsafe(8)}"
    create_user(live_app.env, username, password)
    light = new_context(color_scheme="light").new_page()
    sign_in_as(light, username, password)
    titles = [
        "Trip planning for Lisbon",
        "Quarterly report outline",
        "Sourdough starter troubleshooting",
        "Regex for ISO dates",
    ]
    for title in titles:
        new_chat(light)
        rename(light, title)
    conversation = new_chat(light)
    fake.set_config(text=ANSWER, deltas=40, interval=0.01)
    try:
        _, reply = send_with_enter(light, "How do I reverse a list in Python?")
        expect_complete(light, reply)
    finally:
        live_app.fake.restore()
    rename(light, "Reversing a list in Python")
    light.reload()
    expect(light.locator("#connection")).to_have_attribute("data-state", "open")
    expect(light.locator("#conversation-usage")).to_contain_text(re.compile(r"in · .* out · \$"))
    light.screenshot(path=str(SCREENSHOTS / "sidebar-light.png"))

    dark = new_context(color_scheme="dark").new_page()
    sign_in_as(dark, username, password)
    dark.goto(f"/conversations/{conversation}/")
    expect(dark.locator("#connection")).to_have_attribute("data-state", "open")
    dark.screenshot(path=str(SCREENSHOTS / "sidebar-dark.png"))
