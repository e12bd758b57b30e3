"""Accessibility in a real Chromium, against daphne and the fake Anthropic (fixtures in
tests/browser/conftest.py).

* An axe-core audit (axe-playwright-python, which bundles axe-core and loads nothing at run
  time) of the sign-in page, the new-chat page, a conversation with a finished exchange
  (Markdown, a code block, thinking, and ``< 2/2 >`` after a Regenerate), its Settings opened,
  the conversation list and the account page, each in light and dark: no violation whose impact
  is serious or critical. The moderate and minor ones are printed.
* The live region (#announcer): a screen reader hears that Claude is answering and how the reply
  ended, not every batch of tokens.
* Focus after a swap: a version switch re-renders the message list, and the keyboard stays on
  the arrow it pressed.
"""

from __future__ import annotations

import re
from typing import Literal

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp
from tests.browser.helpers import (
    ContextFactory,
    expect_complete,
    expect_interrupted,
    expect_streaming,
    wait_for_text,
)
from tests.helpers import QUICK_REPLY, SLOW_REPLY

pytestmark = pytest.mark.browser

#: A reply with the parts a reply can have: Markdown, a list, inline code and a code block.
MARKDOWN_REPLY = (
    "Here is **bold** text and `code`.\n\n- one\n- two\n\n"
    "```python\ndef answer():\n    return 42\n```\n\nA [link](https://example.com/)."
)
#: What makes a violation fail the audit (axe's impacts: minor, moderate, serious, critical).
BLOCKING = {"serious", "critical"}

AXE = Axe()


def audit(page: Page, where: str) -> list[str]:
    """Run axe on the page as it is: its serious and critical violations, a line for each
    element. The moderate and minor ones are printed (``pytest -s`` shows them)."""
    failing: list[str] = []
    for violation in AXE.run(page).response["violations"]:
        impact = violation.get("impact") or "minor"
        for node in violation["nodes"]:
            why = (node.get("failureSummary") or "").strip().splitlines()
            line = (
                f"{where}: {violation['id']} ({impact}) {', '.join(map(str, node['target']))}"
                f" {node.get('html', '')[:160]}: {why[-1].strip() if why else violation['help']}"
            )
            if impact in BLOCKING:
                failing.append(line)
            else:
                print("axe, not blocking:", line)
    return failing


def sign_in(page: Page, app: LiveApp) -> None:
    """Sign in from the sign-in page, which leads to the new-chat page."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(app.username)
    page.get_by_label("Password").fill(app.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator("#start-form")).to_be_visible()


def start_conversation(page: Page, text: str) -> None:
    """Send the first message from the new-chat page and wait for the conversation's page,
    its socket open."""
    box = page.locator("#composer-input")
    box.fill(text)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/conversations/[0-9a-f-]{36}/$"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")


def last_reply(page: Page) -> int:
    ids = page.eval_on_selector_all("#messages > article", "els => els.map(e => e.id)")
    return int(ids[-1].removeprefix("msg-"))


def send(page: Page, text: str) -> int:
    """Send a message from the conversation's composer; the id of its reply's bubble."""
    before = page.locator("#messages > article").count()
    box = page.locator("#composer-input")
    box.fill(text)
    box.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(before + 2)
    return last_reply(page)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_or_critical_violation_on_any_page(
    new_context: ContextFactory,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
    scheme: Literal["light", "dark"],
) -> None:
    page = new_context(color_scheme=scheme).new_page()
    failing: list[str] = []

    page.goto("/accounts/login/")
    failing += audit(page, f"sign-in ({scheme})")
    page.goto("/signup/")
    failing += audit(page, f"sign-up ({scheme})")

    sign_in(page, live_app)
    # The new-chat page, with a file attached (its chip and its remove button).
    page.locator("#file-input").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Some notes.\n"}]
    )
    expect(page.locator("#composer-files > .file-chip:not(.file-chip--uploading)")).to_have_count(1)
    expect(page.locator("#composer-files .file-remove")).to_have_accessible_name("Remove notes.txt")
    failing += audit(page, f"new chat ({scheme})")

    # A conversation: a reply in Markdown with a code block, then its Settings opened.
    directive = f"[[fake:text={MARKDOWN_REPLY},deltas=6,interval=0.01]]"
    start_conversation(page, f"{directive} Show me some code, and read my notes.")
    expect_complete(page, last_reply(page))
    page.locator(".chat-settings summary").click()
    expect(page.locator(".chat-settings")).to_have_js_property("open", True)
    failing += audit(page, f"settings ({scheme})")

    # Thinking on, then Regenerate: the new reply thinks, and the reply shows < 2/2 >.
    page.get_by_label("Thinking", exact=True).select_option(index=1)
    with page.expect_navigation():
        page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    page.locator(f"#msg-{last_reply(page)} .regenerate-btn").click()
    expect(page.locator("#messages > article .version-count")).to_have_text("2/2")
    reply = last_reply(page)
    expect_complete(page, reply)
    expect(page.locator(f"#msg-{reply}-thinking-part")).to_be_attached()
    expect(page.locator(f"#msg-{reply} .code-block")).to_be_visible()
    for name in ("Previous version", "Next version", "Copy the reply", "Copy the code"):
        expect(page.get_by_role("button", name=name, exact=True).first).to_be_attached()
    expect(page.get_by_role("button", name="Attach files")).to_be_visible()
    failing += audit(page, f"conversation ({scheme})")

    page.goto("/conversations/")
    failing += audit(page, f"conversation list ({scheme})")

    page.goto("/account/")
    failing += audit(page, f"account ({scheme})")

    assert not failing, "axe found serious or critical violations:\n" + "\n".join(failing)


# --------------------------------------------------------------------------------------------
# The live region
# --------------------------------------------------------------------------------------------

#: Every text the announcer took, in order (a MutationObserver in the page).
WATCH_ANNOUNCER = """() => {
  window.__announced = [];
  const el = document.getElementById("announcer");
  new MutationObserver(() => window.__announced.push(el.textContent))
    .observe(el, {childList: true, characterData: true, subtree: true});
}"""


def announced(page: Page) -> list[str]:
    return [text.strip() for text in page.evaluate("window.__announced")]


def test_the_announcer_says_when_a_reply_starts_and_how_it_ended_not_each_batch(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    start_conversation(page, f"{QUICK_REPLY} Hello.")
    expect_complete(page, last_reply(page))
    announcer = page.locator("#announcer")
    expect(announcer).to_have_attribute("aria-live", "polite")
    expect(announcer).to_have_attribute("role", "status")
    expect(page.locator("[aria-live]")).to_have_count(1)  # no bubble reads its tokens out
    page.evaluate(WATCH_ANNOUNCER)

    # A slow reply: "Claude is answering." once, however many batches arrive; Stop ends it.
    box = page.locator("#composer-input")
    reply = send(page, f"{SLOW_REPLY} Tell me a long story.")
    expect_streaming(page, reply)
    expect(announcer).to_have_text("Claude is answering.")
    wait_for_text(page, reply, 40)
    page.wait_for_timeout(300)  # more batches
    assert announced(page) == ["Claude is answering."]
    assert page.locator(f"#msg-{reply}-body").get_attribute("aria-live") is None
    page.locator("#stop-button").click()
    expect_interrupted(page, reply)
    expect(announcer).to_have_text("Reply stopped.")
    # Stop was swapped away with the reply: the keyboard is back in the composer.
    expect(box).to_be_focused()

    # A reply that ends by itself.
    expect_complete(page, send(page, f"{QUICK_REPLY} Again, briefly."))
    expect(announcer).to_have_text("Reply finished.")
    assert announced(page) == [
        "Claude is answering.",
        "Reply stopped.",
        "Claude is answering.",
        "Reply finished.",
    ]

    # A reply that fails part-way says so, with the reason the bubble gives.
    failed = send(page, "[[fake:error=error_midstream,error_after=2,deltas=6,interval=0.01]] Fail.")
    expect(page.locator(f"#msg-{failed}")).to_have_class(re.compile(r"\bmsg--error\b"))
    reason = (page.locator(f"#msg-{failed} .msg-error").text_content() or "").strip()
    expect(announcer).to_have_text(f"The reply failed: {reason}")
    assert announced(page)[-2:] == ["Claude is answering.", f"The reply failed: {reason}"]


# --------------------------------------------------------------------------------------------
# Focus after a swap
# --------------------------------------------------------------------------------------------


def test_a_version_switch_keeps_the_keyboard_on_the_arrow_it_pressed(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    start_conversation(page, f"{QUICK_REPLY} Hello.")
    first = last_reply(page)
    expect_complete(page, first)
    page.locator(f"#msg-{first} .regenerate-btn").click()
    expect(page.locator(f"#msg-{first}")).to_have_count(0)
    second = last_reply(page)
    expect_complete(page, second)
    expect(page.locator(f"#msg-{second} .version-count")).to_have_text("2/2")

    # < by keyboard: the list is re-rendered with the first reply, and the focus is on its <…
    previous = page.locator(f"#msg-{second} .version-prev")
    previous.focus()
    previous.press("Enter")
    expect(page.locator(f"#msg-{first} .version-count")).to_have_text("1/2")
    # …which is disabled at 1/2, so on > beside it, ready to go back.
    expect(page.locator(f"#msg-{first} .version-next")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(f"#msg-{second} .version-count")).to_have_text("2/2")
    expect(page.locator(f"#msg-{second} .version-prev")).to_be_focused()
    # The announcer said nothing of a switch.
    expect(page.locator("#announcer")).to_have_text("Reply finished.")


def test_cancelling_an_edit_gives_the_focus_back_to_its_edit_button(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    start_conversation(page, f"{QUICK_REPLY} Hello.")
    expect_complete(page, last_reply(page))
    edit = page.locator("#messages .edit-btn").last
    edit.focus()
    edit.press("Enter")
    expect(page.locator("#edit-input")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(".edit-form")).to_have_count(0)
    expect(edit).to_be_focused()
