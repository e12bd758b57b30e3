"""What a user does in the browser, and what the records say: the helpers of the browser tests
(their fixtures are in tests/browser/conftest.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import BrowserContext, Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl, RequestRecord
from chat.testing.live import REPO_ROOT, LiveApp

#: Where the tests write the screenshots the README shows.
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
#: Playwright's timeout for an expectation or an action.
WAIT_MS = 10_000

ContextFactory = Callable[..., BrowserContext]
"""``new_context(**options)``: a browser context on the live app (see the fixture)."""


def sign_in(page: Page, app: LiveApp) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(app.username)
    page.get_by_label("Password").fill(app.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"://[^/]+/$"))  # the composer at / (a page that opens ready)


def new_chat(page: Page) -> str:
    """An empty conversation's page (made as a script makes one, POST /conversations/new/:
    the page's own New chat goes to the composer at /, where the first message makes it);
    its id, once the page's socket is open."""
    page.evaluate(
        """() => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = "/conversations/new/";
            const token = document.createElement("input");
            token.type = "hidden";
            token.name = "csrfmiddlewaretoken";
            token.value = document.cookie.match(/csrftoken=([^;]+)/)[1];
            form.appendChild(token);
            document.body.appendChild(form);
            form.submit();
        }"""
    )
    page.wait_for_url(re.compile(r"/conversations/[0-9a-f-]{36}/$"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def article_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("#messages > article", "els => els.map(e => e.id)")


def send_with_enter(page: Page, text: str) -> tuple[int, int]:
    """Type a message and press Enter; the ids of the user and assistant bubbles it adds."""
    before = len(article_ids(page))
    box = page.locator("#composer-input")
    box.fill(text)
    box.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(before + 2)
    user_id, assistant_id = (int(i.removeprefix("msg-")) for i in article_ids(page)[-2:])
    expect(page.locator(f"#msg-{user_id}")).to_have_class(re.compile(r"\bmsg--user\b"))
    expect(page.locator(f"#msg-{assistant_id}")).to_have_class(re.compile(r"\bmsg--assistant\b"))
    return user_id, assistant_id


def body(page: Page, message_id: int) -> str:
    """The bubble's text exactly as on the page (no trimming, unlike inner_text): a streaming
    bubble's text, or the Markdown source a finished reply carries beside its rendering
    (whose own text must agree with it, whitespace aside)."""
    source = page.locator(f"#msg-{message_id} template.msg-source")
    if source.count():
        text = source.evaluate("t => t.content.textContent")
        rendered = page.locator(f"#msg-{message_id}-body").text_content() or ""
        assert " ".join(rendered.split()) == " ".join(text.split()) or "`" in text or "*" in text
        return text
    return page.locator(f"#msg-{message_id}-body").text_content() or ""


def watch_text_grow(page: Page, message_id: int, observations: int = 2) -> list[str]:
    """Poll the bubble until its text was seen non-empty and growing ``observations`` times.

    Each observation extends the previous one: the reply arrives in pieces, in order.
    """
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(seen) < observations:
        assert time.monotonic() < deadline, f"text did not grow in pieces: {seen!r}"
        text = body(page, message_id)
        if text and (not seen or text != seen[-1]):
            assert not seen or text.startswith(seen[-1]), "the text was rewritten, not extended"
            seen.append(text)
        page.wait_for_timeout(15)
    return seen


def wait_for_text(page: Page, message_id: int, min_chars: int) -> str:
    """Wait until the streaming bubble shows at least ``min_chars`` characters."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(text := body(page, message_id)) < min_chars:
        assert time.monotonic() < deadline, f"only {len(text)} characters arrived"
        page.wait_for_timeout(20)
    return text


def expect_streaming(page: Page, message_id: int) -> None:
    expect(page.locator(f"#msg-{message_id}")).to_have_class(re.compile(r"\bmsg--streaming\b"))
    expect(page.locator("#composer-actions")).to_have_attribute("data-streaming", "true")


def expect_interrupted(page: Page, message_id: int) -> None:
    bubble = page.locator(f"#msg-{message_id}")
    expect(bubble).to_have_class(re.compile(r"\bmsg--interrupted\b"))
    expect(bubble.locator(".marker")).to_have_text("[Interrupted]")
    expect(page.locator("#composer-actions")).to_have_attribute("data-streaming", "false")
    expect(page.locator("#stop-button")).to_have_count(0)
    expect(page.locator("#send-button")).to_have_text("Send")


def expect_complete(page: Page, message_id: int) -> None:
    expect(page.locator(f"#msg-{message_id}")).to_have_class(re.compile(r"\bmsg--complete\b"))
    expect(page.locator("#composer-actions")).to_have_attribute("data-streaming", "false")


def db_message(app: LiveApp, message_id: int) -> dict[str, Any]:
    rows = app.query(
        "SELECT id, role, status, stop_reason, content FROM chat_message WHERE id = ?",
        (message_id,),
    )
    assert rows, f"message {message_id} is not in the database"
    return rows[0]


def upstream_request(fake: FakeAnthropicControl, marker: str, **until: Any) -> RequestRecord:
    """The fake's record of the request whose last message contains ``marker``; ``until``
    waits for attributes to reach values, e.g. ``finished=True``."""
    return fake.request_for(marker, **until)


def assert_upstream_cut(fake: FakeAnthropicControl, marker: str, shown: str) -> RequestRecord:
    """The model's side saw the app hang up mid-reply, after sending at least what was shown."""
    record = upstream_request(fake, marker, finished=True)
    assert record.disconnected_at is not None, f"the app never hung up: {record.outcome}"
    assert not record.completed
    assert record.outcome == "client_disconnected"
    assert record.deltas_written < record.deltas_planned
    assert record.text_written.startswith(shown)
    return record


def relay_chat_sockets(page: Page, *, reconnect: bool) -> list[Any]:
    """Route the page's chat sockets through the test: the first is relayed to the server and
    closing its page side (``routes[0].close()``) leaves the server side open; later ones
    (htmx reconnecting) are relayed with ``reconnect``, else refused. The routes, in order."""
    routes: list[Any] = []

    def relay(ws: Any) -> None:
        if routes and not reconnect:
            ws.close()
            return
        ws.connect_to_server()
        if not routes:
            ws.on_close(lambda code, reason: None)  # keep the server side when the page's closes
        routes.append(ws)

    page.route_web_socket(re.compile(r"/ws/chat/"), relay)
    return routes
