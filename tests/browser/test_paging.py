"""A long conversation opens on its newest messages; "Show earlier messages" loads the rest
(in the browser; the server side is tests/test_paging.py).

The page renders the newest page of messages only (chat/selectors.PAGE_MESSAGES): rendering every
reply's Markdown on each load made a page of 1,000 messages take about half a second
(bench/page.py). In a real Chromium against daphne (fixtures in tests/browser/conftest.py): older
pages load in place without moving what the user is reading, the socket still works, and a page
that missed messages is caught up to the newest page with its control.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chat.data import selectors
from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import REPO_ROOT, LiveApp
from tests.browser.helpers import (
    body,
    db_message,
    expect_complete,
    relay_chat_sockets,
    send_with_enter,
    sign_in,
)
from tests.helpers import QUICK_REPLY

pytestmark = pytest.mark.browser

PAGE = selectors.PAGE_MESSAGES


# --------------------------------------------------------------------------------------------
# In the browser
# --------------------------------------------------------------------------------------------

_SEED = """
import json, sys
import django
django.setup()
from django.contrib.auth.models import User
from chat.models import Conversation, Message
user = User.objects.get(username=sys.argv[1])
conversation = (
    Conversation.objects.get(pk=sys.argv[2]) if sys.argv[2]
    else Conversation.objects.create(user=user, title="A long conversation")
)
start = conversation.messages.count()
def message(i):
    if i % 2 == 0:
        return Message(conversation=conversation, role="user", content=f"Question {i}")
    reply = f"Answer **{i}**:\\n\\n```python\\nprint({i})\\n```"
    return Message(conversation=conversation, role="assistant", content=reply)
from chat.testing.conversations import append
append(conversation, (message(i) for i in range(start, start + int(sys.argv[3]))))
ids = list(conversation.messages.order_by("id").values_list("id", flat=True))
print(json.dumps({"conversation": str(conversation.pk), "ids": ids}))
"""


def seed(app: LiveApp, count: int, conversation: str = "") -> tuple[str, list[int]]:
    """Add `count` messages to a conversation of the live app's user (a new one by default);
    its id and all its message ids, oldest first."""
    result = subprocess.run(
        [sys.executable, "-c", _SEED, app.username, conversation, str(count)],
        cwd=REPO_ROOT,
        env=app.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out["conversation"], out["ids"]


def shown_ids(page: Page) -> list[int]:
    ids = page.eval_on_selector_all("#messages > article", "els => els.map(e => e.id)")
    return [int(i.removeprefix("msg-")) for i in ids]


def top_of(page: Page, message_id: int) -> float:
    return float(page.locator(f"#msg-{message_id}").evaluate("e => e.getBoundingClientRect().top"))


def test_show_earlier_messages_loads_older_pages_in_place_and_the_chat_goes_on(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation, ids = seed(live_app, 2 * PAGE + 20)
    page.goto(f"/conversations/{conversation}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    assert shown_ids(page) == ids[-PAGE:]
    messages = page.locator("#messages")
    assert messages.evaluate("m => m.scrollHeight - m.scrollTop - m.clientHeight < 80")

    # The user scrolls up to the oldest shown and asks for more: what they were reading stays
    # where it was, the older messages come in above it, and the keyboard stays on the control.
    messages.evaluate("m => { m.scrollTop = 0; }")
    reading = ids[-PAGE]
    before = top_of(page, reading)
    page.locator("#show-earlier").click()
    expect(page.locator("#messages > article")).to_have_count(2 * PAGE)
    assert shown_ids(page) == ids[-2 * PAGE :]
    assert abs(top_of(page, reading) - before) < 2, "the list jumped"
    expect(page.locator("#show-earlier")).to_be_focused()
    expect(page.locator(f"#msg-{ids[-PAGE - 1]} pre")).to_have_count(1)  # rendered Markdown

    page.keyboard.press("Enter")  # the focused control again, from the keyboard
    expect(page.locator("#messages > article")).to_have_count(len(ids))
    assert shown_ids(page) == ids
    expect(page.locator("#show-earlier")).to_have_count(0)
    expect(page.locator("#composer-input")).to_be_focused()

    # The socket works as before: a new turn goes after the newest message and completes.
    user_id, reply = send_with_enter(page, f"{QUICK_REPLY} One more question. (paging)")
    assert shown_ids(page) == [*ids, user_id, reply]
    expect_complete(page, reply)
    assert body(page, reply) == db_message(live_app, reply)["content"] != ""


def test_a_page_that_missed_messages_is_caught_up_to_the_newest_page_with_its_control(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    routes = relay_chat_sockets(page, reconnect=True)
    sign_in(page, live_app)
    conversation, ids = seed(live_app, 2 * PAGE + 20)
    page.goto(f"/conversations/{conversation}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    page.locator("#show-earlier").click()
    expect(page.locator("#messages > article")).to_have_count(2 * PAGE)

    # The conversation goes on where this page does not hear of it (written straight to the
    # database), and then the page's socket drops and reconnects: it is caught up.
    _, ids = seed(live_app, 2, conversation)
    routes[0].close()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=15_000)
    assert len(routes) >= 2

    # Reconnected, it shows the newest page, new messages included, and can load the rest.
    expect(page.locator(f"#msg-{ids[-1]}")).to_have_count(1)
    assert shown_ids(page) == ids[-PAGE:]
    page.locator("#show-earlier").click()
    expect(page.locator("#messages > article")).to_have_count(2 * PAGE)
    assert shown_ids(page) == ids[-2 * PAGE :]
