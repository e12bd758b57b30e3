"""Extended thinking in a real Chromium, against daphne and the fake Anthropic (fixtures in
tests/browser/conftest.py).

Why: thinking is a second stream inside the reply's bubble. The user turns it on in the
conversation's Settings, watches it arrive in its own open part above the answer, sees it fold
away when the answer is done, can open it again (after a reload too), and can stop the reply
while Claude is still thinking -- the Stop promise holds there as for the answer: the model's
stream is closed at once and what was shown is what is kept.

The fake's ``thinking=N`` directive streams N steps ("Thinking step i of N. ") before the answer;
its record's ``thinking_written`` is the thinking it sent, to compare with what the page shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp
from tests.browser.helpers import (
    SCREENSHOTS,
    WAIT_MS,
    ContextFactory,
    expect_complete,
    expect_interrupted,
    expect_streaming,
    new_chat,
    send_with_enter,
    sign_in,
    upstream_request,
)

pytestmark = pytest.mark.browser

#: The Settings' thinking levels used here: their labels and the budgets they save.
LIGHT, MEDIUM = "Light (2,048 tokens)", "Medium (8,192 tokens)"
BUDGETS = {LIGHT: "2048", MEDIUM: "8192"}
#: The question of the screenshots, and its answer in Markdown.
QUESTION = "Which is bigger, 9.11 or 9.9?"
ANSWER = (
    "**9.9** is bigger.\n\nCompare them digit by digit after the point:\n\n"
    "- 9.9 is 9.90, nine tenths\n- 9.11 is one tenth and one hundredth"
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def turn_thinking_on(page: Page, level: str = MEDIUM) -> None:
    """Choose a thinking level in the conversation's Settings and save (the page reloads)."""
    page.locator(".chat-settings summary").click()
    page.get_by_label("Thinking", exact=True).select_option(label=level)
    with page.expect_navigation():
        page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".chat-settings")).to_have_js_property("open", False)
    expect(page.get_by_label("Thinking", exact=True)).to_have_value(BUDGETS[level])
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")


def thinking_part(page: Page, message_id: int) -> Locator:
    """The ``<details>`` holding the reply's thinking."""
    return page.locator(f"#msg-{message_id}-thinking-part")


def thoughts(page: Page, message_id: int) -> str:
    """The reply's thinking text exactly as in the page (shown or folded away)."""
    return page.locator(f"#msg-{message_id}-thinking").text_content() or ""


def db_thinking(app: LiveApp, message_id: int) -> dict[str, Any]:
    rows = app.query(
        "SELECT thinking, thinking_ms, content, status, stop_reason FROM chat_message WHERE id = ?",
        (message_id,),
    )
    assert rows, f"message {message_id} is not in the database"
    return rows[0]


def watch_thinking_grow(
    page: Page, message_id: int, observations: int, *, until: Callable[[str], bool] = bool
) -> list[str]:
    """Poll the reply's thinking until it was seen growing ``observations`` times (each one
    extends the last: it arrives in pieces, in order) and ``until`` holds for the last one."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(seen) < observations or not until(seen[-1]):
        assert time.monotonic() < deadline, f"the thinking did not grow in pieces: {seen!r}"
        text = thoughts(page, message_id)
        if text and (not seen or text != seen[-1]):
            assert not seen or text.startswith(seen[-1]), "the thinking was rewritten"
            seen.append(text)
        page.wait_for_timeout(15)
    return seen


#: One look at a streaming reply, taken in the page at the moment its footer says "thinking".
LIVE_LOOK = """([id]) => {
  const status = document.querySelector(`#msg-${id} .live-status`);
  if (!status || !status.textContent.startsWith("thinking ·")) return false;
  const part = document.getElementById(`msg-${id}-thinking-part`);
  const thinking = document.getElementById(`msg-${id}-thinking`);
  const answer = document.getElementById(`msg-${id}-body`);
  return {
    status: status.textContent,
    open: part.open,
    summary: part.querySelector("summary").textContent,
    thinking: thinking.textContent,
    thinkingVisible: thinking.checkVisibility(),
    answer: answer.textContent,
    before: Boolean(part.compareDocumentPosition(answer) & Node.DOCUMENT_POSITION_FOLLOWING),
    above: part.getBoundingClientRect().bottom <= answer.getBoundingClientRect().top,
  };
}"""


def expect_folded(page: Page, message_id: int, text: str) -> None:
    """A finished reply's thinking: folded away under "Thought for N s", holding ``text``."""
    part = thinking_part(page, message_id)
    expect(part).to_be_visible()
    expect(part).to_have_js_property("open", False)
    expect(part.locator("summary")).to_have_text(re.compile(r"^Thought for \d+ s$"))
    expect(page.locator(f"#msg-{message_id}-thinking")).to_be_hidden()
    assert thoughts(page, message_id) == text


def open_thinking(page: Page, message_id: int, text: str) -> None:
    """Click the summary: the part opens and shows the whole thinking."""
    part = thinking_part(page, message_id)
    part.locator("summary").click()
    expect(part).to_have_js_property("open", True)
    shown = page.locator(f"#msg-{message_id}-thinking")
    expect(shown).to_be_visible()
    expect(shown).to_have_text(text)
    assert shown.text_content() == text
    # Not cut short by its scroll box: the whole thought fits in this one.
    assert shown.evaluate("e => e.scrollHeight <= e.clientHeight + 1")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_thinking_turned_on_in_settings_streams_above_the_answer_then_folds_away(
    page: Page,
    new_context: ContextFactory,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    turn_thinking_on(page)

    # Set on the fake rather than in a directive: the page in the screenshots reads as a chat.
    fake.set_config(thinking=30, interval=0.03, deltas=8, text=ANSWER)
    _, reply = send_with_enter(page, QUESTION)
    expect_streaming(page, reply)

    # While only thinking has arrived: its part is open, above the (empty) answer, and the
    # footer says so.
    look = page.wait_for_function(LIVE_LOOK, arg=[reply], timeout=WAIT_MS).json_value()
    assert re.fullmatch(r"thinking · \d+\.\d s", look["status"]), look
    assert look["open"] and look["thinkingVisible"], look
    assert look["summary"] == "Thinking", look
    assert look["thinking"].startswith("Thinking step 1 of 30."), look
    assert look["answer"] == "", look
    assert look["before"] and look["above"], look
    pieces = watch_thinking_grow(page, reply, observations=2)
    assert pieces[-1].startswith(look["thinking"]) and len(pieces[-1]) > len(look["thinking"])
    expect(thinking_part(page, reply)).to_have_js_property("open", True)

    expect_complete(page, reply)
    record = upstream_request(fake, QUESTION, finished=True)
    assert record.completed and record.outcome == "completed"
    # The app asked for thinking as the Settings say (the default model thinks adaptively).
    assert record.body["thinking"]["type"] == "adaptive", record.body["thinking"]
    assert record.body["output_config"] == {"effort": "medium"}
    thought = record.thinking_written
    assert thought.startswith("Thinking step 1 of 30.") and "step 30 of 30." in thought

    expect_folded(page, reply, thought)
    expect(page.locator(f"#msg-{reply} .msg-meta .thought")).to_have_text(
        re.compile(r"^thought for \d+ s$")
    )
    answer = page.locator(f"#msg-{reply}-body")
    expect(answer.locator("strong")).to_have_text("9.9")
    expect(answer.locator("li")).to_have_text(
        ["9.9 is 9.90, nine tenths", "9.11 is one tenth and one hundredth"]
    )
    saved = db_thinking(live_app, reply)
    assert (saved["status"], saved["thinking"], saved["content"]) == ("complete", thought, ANSWER)
    assert saved["thinking_ms"] > 0
    page.screenshot(path=str(SCREENSHOTS / "thinking-collapsed-light.png"))

    open_thinking(page, reply, thought)
    page.screenshot(path=str(SCREENSHOTS / "thinking-open-light.png"))

    # The same conversation in the dark.
    dark = new_context(storage_state=page.context.storage_state(), color_scheme="dark")
    view = dark.new_page()
    view.goto(f"/conversations/{conversation}/")
    expect(view.locator("#connection")).to_have_attribute("data-state", "open")
    expect_folded(view, reply, thought)
    view.screenshot(path=str(SCREENSHOTS / "thinking-collapsed-dark.png"))
    open_thinking(view, reply, thought)
    view.screenshot(path=str(SCREENSHOTS / "thinking-open-dark.png"))


def test_escape_while_thinking_stops_the_reply_with_the_thinking_so_far(
    page: Page,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    turn_thinking_on(page)
    directive = "[[fake:thinking=400,interval=0.03]]"
    _, reply = send_with_enter(page, f"{directive} Think it all through. (stop thinking)")
    expect_streaming(page, reply)
    pieces = watch_thinking_grow(page, reply, observations=2, until=lambda t: "step 4 " in t)
    assert page.locator(f"#msg-{reply}-body").text_content() == ""
    # A thought longer than its box scrolls, and the box follows the newest thinking.
    body_id = f"msg-{reply}-thinking"
    page.wait_for_function(
        "(id) => { const b = document.getElementById(id); "
        "return b.scrollHeight > b.clientHeight + 60; }",
        arg=body_id,
    )
    page.wait_for_function(  # (after the next batch)
        "(id) => { const b = document.getElementById(id); "
        "return b.scrollTop > 0 && b.scrollHeight - b.scrollTop - b.clientHeight < 24; }",
        arg=body_id,
    )
    pieces.append(thoughts(page, reply))

    pressed_at = time.monotonic()
    page.keyboard.press("Escape")
    expect_interrupted(page, reply)
    expect(page.locator("#send-button")).to_be_enabled()
    expect(page.locator("#composer-input")).to_be_editable()

    record = upstream_request(fake, "(stop thinking)", finished=True)
    assert record.disconnected_at is not None, f"the app never hung up: {record.outcome}"
    closed_ms = (record.disconnected_at - pressed_at) * 1000
    assert record.outcome == "client_disconnected" and not record.completed
    assert closed_ms < 100, f"the model's stream was closed {closed_ms:.0f} ms after Esc"
    assert record.deltas_written == 0 and record.text_written == ""

    # The bubble keeps the thinking shown so far, open (there is no answer to show instead)
    # under "Stopped while thinking", no answer, and says it was interrupted; the database has
    # exactly that.
    kept = thoughts(page, reply)
    assert kept.startswith(pieces[-1])
    assert record.thinking_written.startswith(kept)
    assert "step 400 of 400" not in kept
    part = thinking_part(page, reply)
    expect(part).to_be_visible()
    expect(part).to_have_js_property("open", True)
    expect(part.locator("summary")).to_have_text(re.compile(r"^Stopped while thinking \(\d+ s\)$"))
    expect(page.locator(f"#msg-{reply}-thinking")).to_have_text(kept)
    expect(page.locator(f"#msg-{reply}-body")).to_have_text("")
    saved = db_thinking(live_app, reply)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    assert (saved["thinking"], saved["content"]) == (kept, "")


def test_after_a_reload_the_thinking_is_still_there_folded_with_the_same_text(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    turn_thinking_on(page, LIGHT)
    directive = "[[fake:thinking=6,interval=0.01,deltas=4]]"
    _, reply = send_with_enter(page, f"{directive} A quick thought, please. (reload)")
    expect_complete(page, reply)
    record = upstream_request(fake, "(reload)", finished=True)
    assert record.body["output_config"] == {"effort": "low"}  # Light
    thought = record.thinking_written
    assert thought.count("Thinking step") == 6
    expect_folded(page, reply, thought)

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect_folded(page, reply, thought)
    expect(page.locator(f"#msg-{reply} .msg-meta .thought")).to_have_text(
        re.compile(r"^thought for \d+ s$")
    )
    open_thinking(page, reply, thought)
    assert db_thinking(live_app, reply)["thinking"] == thought
