"""The composer keeps what was typed while a sent message was on its way.

A message leaves the composer when the server accepts its turn (the turn-started frame), not
when Enter is pressed, so a refused send keeps its text. Under load that frame can take
seconds, and the user goes on typing: the frame must take out only the text that was sent and
keep the rest, caret included. Here the page's chat socket runs through the test, which holds
the server's frames back for as long as it takes to type, then lets them through in order. In a
real Chromium against daphne and the fake Anthropic (fixtures in tests/browser/conftest.py).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp
from tests.browser.helpers import (
    SCREENSHOTS,
    WAIT_MS,
    body,
    db_message,
    expect_complete,
    expect_interrupted,
    expect_streaming,
    new_chat,
    send_with_enter,
    sign_in,
)
from tests.helpers import QUICK_REPLY

pytestmark = pytest.mark.browser

TURN_STARTED = 'id="messages" hx-swap-oob="beforeend"'
"""What the turn-started frame of a new message has (its bubbles appended to the list)."""
REFUSED = 'class="notice notice--error"'
"""What an error notice has (a send that was refused)."""


class HeldFrames:
    """The page's chat socket relayed through the test, which can hold the server's frames
    back (as a busy server or a slow network does) and then let them through, in order."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.holding = False
        self.held: list[str] = []
        self.seen: list[str] = []  # every frame the server sent this page
        self._deliver: Any = None
        page.route_web_socket(re.compile(r"/ws/chat/"), self._relay)

    def _relay(self, ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def from_server(message: str | bytes) -> None:
            text = message if isinstance(message, str) else message.decode()
            self.seen.append(text)
            if self.holding:
                self.held.append(text)
            else:
                ws.send(message)

        server.on_message(from_server)
        self._deliver = ws.send

    def hold(self) -> None:
        self.holding = True

    def wait_for(self, *needles: str) -> list[str]:
        """Wait until held frames contain each of ``needles``; the held frames."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while not all(any(n in f for f in self.held) for n in needles):
            assert time.monotonic() < deadline, f"no held frame has {needles!r}"
            self.page.wait_for_timeout(20)
        return list(self.held)

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for text in held:
            self._deliver(text)


def composer_state(page: Page) -> dict[str, Any]:
    """The composer's text, caret, focus, and whether it is still the element it was when
    ``mark_composer`` ran (a frame that swapped it would have replaced it)."""
    return page.evaluate(
        """() => {
            const box = document.getElementById('composer-input');
            return {
                value: box.value,
                caret: [box.selectionStart, box.selectionEnd],
                focused: document.activeElement === box,
                same: box.__marked === true,
            };
        }"""
    )


def mark_composer(page: Page) -> None:
    page.evaluate("() => { document.getElementById('composer-input').__marked = true; }")


def last_bubbles(page: Page) -> tuple[int, int]:
    ids = page.eval_on_selector_all("#messages > article", "els => els.map(e => e.id)")
    user, reply = (int(i.removeprefix("msg-")) for i in ids[-2:])
    return user, reply


# Quotes, markup and an ampersand: the sent text goes back to the page in an attribute.
SENT = """Tom & "Jerry" <b>not bold</b>, it's fine"""


def test_text_typed_while_the_message_is_on_its_way_survives_the_turn_start(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    frames = HeldFrames(page)
    sign_in(page, live_app)
    conversation = new_chat(page)
    box = page.locator("#composer-input")
    mark_composer(page)

    # Enter; the turn-started frame is late, and the user goes on typing (text that starts
    # with what was sent), then moves the caret back into what they typed.
    box.fill(SENT)
    frames.hold()
    box.press("Enter")
    typed = SENT + " (typed since)"
    page.keyboard.type(typed)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    held = frames.wait_for(TURN_STARTED)
    # The window is real: the page has not heard of the turn yet.
    assert composer_state(page)["value"] == SENT + typed
    expect(page.locator("#messages > article")).to_have_count(0)
    frames.release()

    user, reply = last_bubbles(page)
    expect(page.locator(f"#msg-{user}-body")).to_have_text(SENT)
    expect(box).to_have_value(typed)
    state = composer_state(page)
    caret = len(typed) - 2
    assert state == {"value": typed, "caret": [caret, caret], "focused": True, "same": True}
    expect_streaming(page, reply)
    expect(page.locator("#send-button")).to_have_text("Stop & Send")
    page.screenshot(path=str(SCREENSHOTS / "composer-keeps-typed-text.png"))
    # The frame said what was accepted (escaped), and carried no composer to swap in.
    started = next(f for f in held if TURN_STARTED in f)
    assert "<textarea" not in started
    assert 'data-sent="Tom &amp; &quot;Jerry&quot; &lt;b&gt;not bold&lt;/b&gt;' in started

    # Typing goes on at the caret.
    page.keyboard.type("!")
    expect(box).to_have_value(typed[:-2] + "!" + typed[-2:])

    # Stop & Send with the button while the reply streams; the user clicks back into the box
    # (caret at the end) and types on before the frame arrives.
    second = box.input_value()
    frames.hold()
    page.locator("#send-button").click()
    box.focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" and one more thing")
    frames.wait_for(TURN_STARTED)
    frames.release()

    expect(page.locator("#messages > article")).to_have_count(4)
    second_user, second_reply = last_bubbles(page)
    expect(page.locator(f"#msg-{second_user}-body")).to_have_text(second)
    expect(box).to_have_value(" and one more thing")
    assert composer_state(page)["same"]
    expect(page.locator(f"#msg-{reply}")).to_have_class(re.compile(r"\bmsg--interrupted\b"))
    assert [m["content"] for m in live_app.messages(conversation) if m["role"] == "user"] == [
        SENT,
        second,
    ]
    page.locator("#stop-button").click()
    expect_interrupted(page, second_reply)
    expect(box).to_have_value(" and one more thing")


def test_a_refused_send_keeps_its_text_and_another_tabs_turn_leaves_the_draft_alone(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    frames = HeldFrames(page)
    sign_in(page, live_app)
    new_chat(page)
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("#connection")).to_have_attribute("data-state", "open")
    box = page.locator("#composer-input")
    mark_composer(page)

    # This tab has not heard yet that the other tab's reply started: it shows Send, and the
    # server refuses the message (a reply is already streaming).
    frames.hold()
    _, other_reply = send_with_enter(other, "Tell me a long story. (other tab)")
    expect(other.locator("#composer-input")).to_have_value("")  # its own text was accepted
    draft = f"{QUICK_REPLY} My own draft, refused"
    box.fill(draft)
    box.press("Enter")
    page.keyboard.type(" and then some")
    held = frames.wait_for(TURN_STARTED, REFUSED)
    # Another tab's turn does not say anything to this tab's composer.
    assert not any("composer-input" in f for f in held)
    frames.release()

    expect(page.locator("#notice")).to_contain_text("A reply is already streaming")
    expect(page.locator(f"#msg-{other_reply}")).to_have_count(1)
    expect(box).to_have_value(draft + " and then some")
    state = composer_state(page)
    assert state["same"] and state["focused"]
    expect_streaming(page, other_reply)

    # Now Stop & Send goes through; the other tab's composer, holding its own draft, is not
    # touched by this tab's turn.
    other.locator("#composer-input").fill("The other tab's draft")
    page.keyboard.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(4)
    expect(box).to_have_value("")
    user, reply = last_bubbles(page)
    expect(page.locator(f"#msg-{user}-body")).to_have_text(draft + " and then some")
    expect(other.locator(f"#msg-{user}-body")).to_have_text(draft + " and then some")
    expect(other.locator("#composer-input")).to_have_value("The other tab's draft")
    expect_complete(page, reply)
    expect(other.locator("#composer-input")).to_have_value("The other tab's draft")


def test_a_second_enter_before_the_first_is_accepted_leaves_only_the_new_text(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    frames = HeldFrames(page)
    sign_in(page, live_app)
    conversation = new_chat(page)
    box = page.locator("#composer-input")

    # Enter twice before the first frame arrives: the second send (the whole box, the first
    # text included) is refused, as a reply is streaming by then; the first is accepted.
    box.fill("  First thought")
    frames.hold()
    box.press("Enter")
    page.keyboard.type(" second thought")
    page.keyboard.press("Enter")
    frames.wait_for(TURN_STARTED, REFUSED)
    frames.release()

    expect(page.locator("#notice")).to_contain_text(
        re.compile("A reply is (still|already) streaming")
    )
    first_user, first_reply = last_bubbles(page)
    expect(page.locator(f"#msg-{first_user}-body")).to_have_text("First thought")
    expect(box).to_have_value(" second thought")

    # Enter again (Stop & Send now): the rest goes, and the box is empty.
    expect(page.locator("#send-button")).to_have_text("Stop & Send")
    box.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(4)
    expect(box).to_have_value("")
    expect(page.locator(f"#msg-{first_reply}")).to_have_class(re.compile(r"\bmsg--interrupted\b"))
    second_user, second_reply = last_bubbles(page)
    expect(page.locator(f"#msg-{second_user}-body")).to_have_text("second thought")
    assert [m["content"] for m in live_app.messages(conversation) if m["role"] == "user"] == [
        "First thought",
        "second thought",
    ]
    page.locator("#stop-button").click()
    expect_interrupted(page, second_reply)


def test_text_typed_before_the_sent_text_stays_and_a_reworked_one_is_left_alone(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    frames = HeldFrames(page)
    sign_in(page, live_app)
    new_chat(page)
    box = page.locator("#composer-input")

    # After Enter the user goes back to the start of the box and types there.
    box.fill("Send me")
    frames.hold()
    box.press("Enter")
    page.keyboard.press("Control+Home")
    page.keyboard.type("Before: ")
    frames.wait_for(TURN_STARTED)
    frames.release()
    user, reply = last_bubbles(page)
    expect(page.locator(f"#msg-{user}-body")).to_have_text("Send me")
    expect(box).to_have_value("Before: ")
    assert composer_state(page)["caret"] == [8, 8]
    expect_streaming(page, reply)

    # Stop & Send, then the user deletes into what was sent (reworking it) before the frame
    # arrives: the box is theirs, and nothing is taken out of it.
    page.keyboard.type("again")
    frames.hold()
    box.press("Enter")
    page.keyboard.press("Backspace")
    frames.wait_for(TURN_STARTED)
    frames.release()
    expect(page.locator("#messages > article")).to_have_count(4)
    second_user, second_reply = last_bubbles(page)
    expect(page.locator(f"#msg-{second_user}-body")).to_have_text("Before: again")
    expect(box).to_have_value("Before: agai")
    page.locator("#stop-button").click()
    expect_interrupted(page, second_reply)


def test_a_quick_reply_and_the_next_message_typed_during_it(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    """The ordinary path still ends with an empty, focused composer and Send."""
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, f"{QUICK_REPLY} Hello (plain)")
    expect_complete(page, reply)
    box = page.locator("#composer-input")
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    expect(page.locator("#send-button")).to_have_text("Send")
    assert body(page, reply) == db_message(live_app, reply)["content"] != ""
