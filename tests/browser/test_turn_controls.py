"""Regenerate, edit and resend, continue, the keyboard, and a Stop button that moves nothing,
in a real Chromium against daphne and the fake Anthropic (fixtures in tests/browser/conftest.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl, RequestRecord
from chat.testing.live import LiveApp
from tests.browser.helpers import (
    SCREENSHOTS,
    body,
    db_message,
    expect_complete,
    expect_interrupted,
    expect_streaming,
    new_chat,
    send_with_enter,
    sign_in,
    upstream_request,
    wait_for_text,
)
from tests.helpers import QUICK_REPLY

pytestmark = pytest.mark.browser


def only_assistant_prefill(fake: FakeAnthropicControl, prefix: str) -> RequestRecord:
    """The request that continued a reply: its last message is the assistant's partial."""
    matches = [
        r
        for r in fake.requests()
        if r.body["messages"][-1]["role"] == "assistant"
        and r.body["messages"][-1]["content"] == prefix
    ]
    assert len(matches) == 1, f"{len(matches)} continuation requests"
    return matches[0]


def test_regenerate_and_edit_answer_again_in_place_keeping_versions(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    user, first = send_with_enter(page, f"{QUICK_REPLY} Name a colour (regenerate)")
    expect_complete(page, first)

    # Regenerate: only on the last reply; a new bubble takes the old one's place on the page
    # (the old reply is kept as version 1 of 2: tests/browser/test_versions.py).
    regenerate = page.locator(f"#msg-{first} .regenerate-btn")
    expect(regenerate).to_be_visible()
    regenerate.click()
    expect(page.locator(f"#msg-{first}")).to_have_count(0)
    expect(page.locator("#messages > article")).to_have_count(2)
    second = int(page.locator("#messages > article").last.get_attribute("id")[4:])  # type: ignore[index]
    assert second > first
    expect_complete(page, second)
    assert body(page, second) == db_message(live_app, second)["content"] != ""
    expect(page.locator(f"#msg-{second} .version-count")).to_have_text("2/2")

    # Edit: the last message opens in an editor; Esc cancels, Enter sends the new text.
    page.locator(f"#msg-{user} .edit-btn").click()
    editor = page.locator(f"#msg-{user} .edit-form textarea")
    expect(editor).to_be_focused()
    expect(editor).to_have_value(f"{QUICK_REPLY} Name a colour (regenerate)")
    editor.press("Escape")
    expect(page.locator(".edit-form")).to_have_count(0)
    expect(page.locator(f"#msg-{user} .msg-body")).to_have_text(
        f"{QUICK_REPLY} Name a colour (regenerate)"
    )

    page.locator(f"#msg-{user} .edit-btn").click()
    editor.fill(f"{QUICK_REPLY} Name a fruit (edited)")
    page.screenshot(path=str(SCREENSHOTS / "edit-message.png"))
    editor.press("Enter")
    # The edited text is a new version of the message, with its own reply, in the old one's
    # place; the old text and its replies are kept as version 1.
    expect(page.locator(f"#msg-{user}")).to_have_count(0)
    expect(page.locator(f"#msg-{second}")).to_have_count(0)
    expect(page.locator("#messages > article")).to_have_count(2)
    edited, third = (
        int(i.removeprefix("msg-"))
        for i in page.eval_on_selector_all("#messages > article", "els => els.map(e => e.id)")
    )
    assert edited > second and third > edited
    expect(page.locator(f"#msg-{edited} .msg-body")).to_have_text(
        f"{QUICK_REPLY} Name a fruit (edited)"
    )
    expect(page.locator(f"#msg-{edited} .version-count")).to_have_text("2/2")
    expect_complete(page, third)
    assert upstream_request(fake, "(edited)", finished=True).completed
    assert db_message(live_app, edited)["content"] == f"{QUICK_REPLY} Name a fruit (edited)"
    assert db_message(live_app, user)["content"] == f"{QUICK_REPLY} Name a colour (regenerate)"
    assert [(m["id"], m["role"], m["status"]) for m in live_app.messages(conversation)] == [
        (user, "user", "complete"),
        (first, "assistant", "complete"),
        (second, "assistant", "complete"),
        (edited, "user", "complete"),
        (third, "assistant", "complete"),
    ]
    # A complete reply was not cut off: there is nothing to continue.
    expect(page.locator(f"#msg-{third} .continue-btn")).to_have_count(0)


def test_continue_picks_up_a_stopped_reply_in_the_same_bubble(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    _, reply = send_with_enter(page, "Write at length (continue)")
    expect_streaming(page, reply)
    expect(page.locator(".msg-actions").first).to_be_hidden()  # no controls while streaming
    wait_for_text(page, reply, 40)
    page.locator("#stop-button").click()
    expect_interrupted(page, reply)
    shown = body(page, reply)
    assert db_message(live_app, reply)["content"] == shown
    page.screenshot(path=str(SCREENSHOTS / "reply-controls.png"))

    page.locator(f"#msg-{reply} .continue-btn").click()
    expect_streaming(page, reply)
    expect(page.locator(f"#msg-{reply} .marker")).to_have_count(0)
    wait_for_text(page, reply, len(shown) + 40)
    assert body(page, reply).startswith(shown.rstrip())
    # The keyboard is back in the composer: Esc stops the continuation.
    expect(page.locator("#composer-input")).to_be_focused()
    page.keyboard.press("Escape")
    expect_interrupted(page, reply)

    both = body(page, reply)
    saved = db_message(live_app, reply)
    assert saved["status"] == "interrupted" and saved["content"] == both
    assert both.startswith(shown.rstrip()) and len(both) > len(shown)
    record = only_assistant_prefill(fake, shown.rstrip())
    assert record.disconnected_at is not None and not record.completed
    assert [m["role"] for m in live_app.messages(conversation)] == ["user", "assistant"]
    # And it can be continued again.
    expect(page.locator(f"#msg-{reply} .continue-btn")).to_be_visible()


def _composer_boxes(page: Page) -> dict[str, Any]:
    return page.evaluate(
        """() => ({
            input: document.getElementById('composer-input').getBoundingClientRect().toJSON(),
            composer: document.getElementById('composer').getBoundingClientRect().toJSON(),
        })"""
    )


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "mobile"])
def test_the_stop_button_appearing_moves_nothing_in_the_composer(
    new_context: Any,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
    viewport: tuple[int, int],
) -> None:
    width, height = viewport
    page = new_context(viewport={"width": width, "height": height}).new_page()
    sign_in(page, live_app)
    new_chat(page)
    before = _composer_boxes(page)
    _, reply = send_with_enter(page, "A long answer please (layout)")
    expect_streaming(page, reply)
    during = _composer_boxes(page)
    assert during == before, f"the composer moved when Stop appeared: {before} -> {during}"
    page.locator("#stop-button").click()
    expect_interrupted(page, reply)
    assert _composer_boxes(page) == before


def test_the_page_works_from_the_keyboard_with_a_visible_focus(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    box = page.locator("#composer-input")
    expect(box).to_be_focused()  # the page opens ready to type
    box.type(f"{QUICK_REPLY} Hello from the keyboard")
    page.keyboard.press("Tab")
    send = page.locator("#send-button")
    expect(send).to_be_focused()
    outline = send.evaluate(
        "el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth"
    )
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
    page.keyboard.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(2)
    reply = int(page.locator("#messages > article").last.get_attribute("id")[4:])  # type: ignore[index]
    expect_complete(page, reply)

    # Shift+Tab from the composer reaches the last reply's controls (its Delete link, then
    # Regenerate); Enter regenerates.
    box.focus()
    page.keyboard.press("Shift+Tab")
    focused = page.evaluate("() => document.activeElement.className")
    assert re.search(r"\bdelete-msg\b", focused), focused
    page.keyboard.press("Shift+Tab")
    focused = page.evaluate("() => document.activeElement.className")
    assert re.search(r"\bregenerate-btn\b", focused), focused
    page.keyboard.press("Enter")
    expect(page.locator(f"#msg-{reply}")).to_have_count(0)
    expect(page.locator("#messages > article")).to_have_count(2)


def test_composer_commands_stop_the_reply_and_open_a_new_conversation(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    first = new_chat(page)
    _, reply = send_with_enter(page, "Talk for a long while (slash-stop)")
    expect_streaming(page, reply)
    wait_for_text(page, reply, 30)
    box = page.locator("#composer-input")
    box.fill("/stop")
    box.press("Enter")
    expect_interrupted(page, reply)
    expect(box).to_have_value("")
    assert db_message(live_app, reply)["content"] == body(page, reply)
    assert [m["role"] for m in live_app.messages(first)] == ["user", "assistant"]

    box.fill("/help")
    box.press("Enter")
    expect(page.locator("#notice")).to_contain_text("/new: start a new conversation")

    box.fill("/new")
    box.press("Enter")
    # A new conversation's composer at /: nothing is made until its first message.
    page.wait_for_url(lambda url: first not in url and url.endswith("/"))
    assert re.search(r"://[^/]+/$", page.url)
    expect(page.locator("#composer-input")).to_be_focused()
    expect(page.locator("#messages > article")).to_have_count(0)
