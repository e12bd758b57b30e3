"""A reply belongs to its server process, not to the page: reloading mid-reply in a real Chromium.

The page that started a reply reloads while it streams. With a grace (CHAT_DISCONNECT_GRACE) the
reply goes on while the page is away; the reloaded page is sent the text so far with a notice,
follows the rest, and its Stop still stops it: the bubble is marked interrupted, the database
holds exactly what the page shows, and the fake model saw the app hang up.

Needs /usr/bin/chromium and Playwright: skipped without them, failed without them under CI=true.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import FakeProcess, LiveApp, start_live_app
from tests.browser.helpers import (
    SCREENSHOTS,
    assert_upstream_cut,
    body,
    db_message,
    expect_interrupted,
    expect_streaming,
    new_chat,
    send_with_enter,
    sign_in,
    upstream_request,
    wait_for_text,
    watch_text_grow,
)

pytestmark = pytest.mark.browser

#: Long enough for a reload (well under a second) on a busy machine.
GRACE = 5
PICKED_UP = "Still answering — picked up where you left off."
STORY = (
    "The lighthouse keeper climbed the stairs at dusk, as she had every evening for thirty "
    "years. The lamp needed oil, the glass needed wiping, and the logbook needed a line about "
    "the weather, which tonight was a long grey swell rolling in from the west. "
)


@pytest.fixture(scope="module")
def live_app(request: pytest.FixtureRequest, live_fake_anthropic: FakeProcess) -> Iterator[LiveApp]:
    """This module's own app, with a grace of GRACE s (the session's ``live_app`` has none: a
    page that closes stops its reply there). Overrides ``live_app`` for this module only, so
    that the folder's ``new_context``, ``page`` and ``fake`` fixtures use it. Its daphne log is
    printed if a test failed."""
    app = start_live_app(live_fake_anthropic, name="grace", CHAT_DISCONNECT_GRACE=str(GRACE))
    try:
        yield app
    finally:
        app.stop()
        if request.session.testsfailed:
            sys.stderr.write(f"\n--- daphne log (grace) ---\n{app.log_tail()}\n")
        app.remove_files()


def test_reloading_mid_reply_picks_the_reply_up_and_its_stop_still_works(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    # 1500 deltas of a word or two, 20 ms apart: 30 s unless stopped.
    fake.set_config(text=STORY * 40, deltas=1500, interval=0.02)
    marker = "a long story about a lighthouse"
    _, reply = send_with_enter(page, f"Tell me {marker}, please.")
    expect_streaming(page, reply)
    before = wait_for_text(page, reply, 200)

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    # The reloaded page is told it picked the reply up, and shows it as it stands.
    expect(page.locator("#notice")).to_have_text(PICKED_UP)
    expect_streaming(page, reply)
    expect(page.locator("#stop-button")).to_be_visible()
    grown = watch_text_grow(page, reply, observations=3)
    assert grown[0].startswith(before), "the reply's text before the reload was lost"
    assert len(grown[-1]) > len(grown[0]) > len(before)
    # The reply went on: one request upstream, not closed, and the message still streaming.
    record = upstream_request(fake, marker)
    assert record.disconnected_at is None and not record.finished
    assert db_message(live_app, reply)["status"] == "streaming"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "grace-resume.png"))

    page.locator("#stop-button").click()
    expect_interrupted(page, reply)
    meta = page.locator(f"#msg-{reply} .msg-meta")
    expect(meta).to_contain_text("stopped")
    expect(meta).not_to_contain_text("nobody was watching")
    saved = db_message(live_app, reply)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    assert saved["content"] == body(page, reply)
    assert saved["content"].startswith(grown[-1])
    assert_upstream_cut(fake, marker, saved["content"])
