"""Share links in a real Chromium against daphne and the fake Anthropic (fixtures in
tests/browser/conftest.py): the owner shares from the conversation page, someone signed out
opens the link in a browser context of their own and reads the conversation with no controls
and no socket, and after the owner stops sharing the link is a 404. Screenshots of the public
page: docs/screenshots/share-light.png and share-dark.png.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp
from tests.browser.helpers import (
    SCREENSHOTS,
    ContextFactory,
    expect_complete,
    new_chat,
    send_with_enter,
    sign_in,
)

pytestmark = pytest.mark.browser

QUICK = {"deltas": 4, "interval": 0.01}
ANSWER = (
    "Three things stand out in your notes:\n\n"
    "1. **The deadline** is fixed: the report is due on *Friday*.\n"
    "2. Two sections still need an owner.\n"
    "3. The budget table is missing its totals.\n\n"
    "A quick way to total a column:\n\n"
    "```python\nprint(sum(row['cost'] for row in rows))\n```"
)
NOTES = b"# Project notes\n\nReport due Friday. Budget totals to do.\n"


def share_url_pattern(app: LiveApp) -> re.Pattern[str]:
    return re.compile(re.escape(app.url("/share/")) + r"[A-Za-z0-9_-]{32}/$")


def shared_conversation(page: Page, app: LiveApp, fake: FakeAnthropicControl) -> str:
    """Sign in and hold a short conversation, a file and Markdown included; its title."""
    sign_in(page, app)
    new_chat(page)
    page.locator("#file-input").set_input_files(
        files=[{"name": "notes.md", "mimeType": "text/markdown", "buffer": NOTES}]
    )
    expect(page.locator("#composer-files > .file-chip:not(.file-chip--uploading)")).to_have_count(1)
    fake.set_config(text=ANSWER, **QUICK)
    _, reply = send_with_enter(page, "What should I look at first in these notes?")
    expect_complete(page, reply)
    fake.set_config(text="Start with the budget totals: the rest depends on them.")
    _, reply = send_with_enter(page, "Which one first?")
    expect_complete(page, reply)
    return page.locator("#chat-title").inner_text()


def share_from_the_page(page: Page, app: LiveApp) -> str:
    """Open Share, create a link, copy it; the link."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("#chat-share > summary").click()
    page.get_by_role("button", name="Create link").click()
    field = page.locator("#share-url")
    expect(field).to_have_value(share_url_pattern(app))
    expect(field).to_be_focused()
    url = field.input_value()
    page.locator("#chat-share").get_by_role("button", name="Copy").click()
    expect(page.locator("#chat-share").get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    return url


def not_found_is_expected(url: str) -> Any:
    """Chromium logs a page answered 404 as a console error: forgive exactly that one."""

    def forgive(msg: Any) -> bool:
        return bool(msg.location.get("url", "") == url and "status of 404" in msg.text)

    return forgive


def expect_read_only(page: Page) -> None:
    """No composer, no form or field, no control but the code blocks' Copy, no htmx."""
    for selector in (
        "form",
        "textarea",
        "input",
        "select",
        "[hx-ext]",
        "[ws-connect]",
        "#composer",
    ):
        expect(page.locator(selector)).to_have_count(0)
    for name in ("Edit", "Regenerate", "Continue", "Delete", "Stop", "Send"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    buttons = page.locator("button")
    expect(buttons).to_have_count(page.locator(".code-block .copy-btn").count())
    assert page.evaluate("typeof window.htmx") == "undefined"


def test_a_link_shared_from_the_page_opens_signed_out_read_only_until_unshared(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    owner = new_context().new_page()
    title = shared_conversation(owner, live_app, fake)
    url = share_from_the_page(owner, live_app)

    # Someone else, signed out, in a browser context of their own.
    reader = new_context(forgive=not_found_is_expected(url)).new_page()
    sockets: list[str] = []
    reader.on("websocket", lambda ws: sockets.append(ws.url))
    response = reader.goto(url)
    assert response is not None and response.status == 200
    assert response.headers["x-robots-tag"] == "noindex"
    expect(reader.locator('meta[name="robots"]')).to_have_attribute("content", "noindex")
    expect(reader.get_by_role("heading", level=1)).to_have_text(title)
    expect(reader.locator(".share-meta")).to_contain_text(
        re.compile(r"^Shared on \d+ \w+ \d{4} · Stopchat$")
    )
    expect(reader.locator("article.msg")).to_have_count(4)
    expect(reader.locator("article.msg--user").first).to_contain_text("What should I look at first")
    expect(reader.locator("article.msg--assistant").first.locator("strong")).to_have_text(
        "The deadline"
    )
    expect(reader.locator("article.msg--assistant").first.locator("ol > li")).to_have_count(3)
    expect(reader.locator(".code-block code")).to_contain_text("print(sum(")
    file_chip = reader.locator("article.msg--user .file-chip")
    expect(file_chip).to_contain_text("notes.md")
    expect(reader.locator("a[href*='/attachments/'], img")).to_have_count(0)
    expect_read_only(reader)
    expect(reader.get_by_role("link", name="Sign out")).to_have_count(0)
    reader.wait_for_timeout(300)
    assert sockets == []

    # Later messages stay out of the link.
    fake.set_config(text="A later answer.")
    _, reply = send_with_enter(owner, "A later question")
    expect_complete(owner, reply)
    reader.reload()
    expect(reader.locator("article.msg")).to_have_count(4)
    expect(reader.get_by_text("A later question")).to_have_count(0)

    # Stop sharing: the panel says so, and the link is gone.
    owner.get_by_role("button", name="Stop sharing").click()
    expect(owner.locator("#share-revoked")).to_have_text(
        re.compile(r"^Sharing stopped: 1 link revoked")
    )
    gone = reader.goto(url)
    assert gone is not None and gone.status == 404
    expect(reader.get_by_text("A later answer.")).to_have_count(0)


def test_the_account_page_lists_a_link_and_revokes_it(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    owner = new_context().new_page()
    title = shared_conversation(owner, live_app, fake)
    url = share_from_the_page(owner, live_app)
    owner.locator("#chat-share").get_by_role("link", name="Your share links").click()
    owner.wait_for_url(re.compile(r"/account/#shares$"))
    item = owner.locator(".share-item").filter(has=owner.locator(f'input[value="{url}"]'))
    expect(item).to_contain_text(title)
    expect(item).to_contain_text("4 messages")

    reader = new_context(forgive=not_found_is_expected(url)).new_page()
    first = reader.goto(url)
    assert first is not None and first.status == 200
    item.get_by_role("button", name="Revoke").click()
    owner.wait_for_url(re.compile(r"/account/#shares$"))
    expect(owner.locator(f'input[value="{url}"]')).to_have_count(0)
    gone = reader.goto(url)
    assert gone is not None and gone.status == 404


def test_screenshots_of_the_shared_page_in_light_and_dark(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    owner = new_context().new_page()
    shared_conversation(owner, live_app, fake)
    url = share_from_the_page(owner, live_app)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, scheme in (("share-light.png", "light"), ("share-dark.png", "dark")):
        reader = new_context(color_scheme=scheme).new_page()
        reader.goto(url)
        expect(reader.locator("article.msg")).to_have_count(4)
        path = SCREENSHOTS / name
        reader.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{name} looks empty"
