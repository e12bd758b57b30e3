"""The chat page in a real Chromium, against the app served by daphne and a fake Anthropic.

Why: Stop is a promise made across four parties -- keyboard and buttons, htmx's WebSocket
extension, the consumer, and the model's HTTP stream. These tests press the real keys in a real
browser and then check the two records that must agree with what the user saw: the app's
database (``chat_message``) and the fake model's own log of when the app hung up on it.

Needs /usr/bin/chromium and Playwright: skipped without them, failed without them under CI=true.
No test here uses pytest-django's database; the live server's SQLite file is read directly.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp, create_user
from tests.browser.helpers import (
    SCREENSHOTS,
    ContextFactory,
    article_ids,
    assert_upstream_cut,
    body,
    db_message,
    expect_complete,
    expect_interrupted,
    expect_streaming,
    new_chat,
    relay_chat_sockets,
    send_with_enter,
    sign_in,
    upstream_request,
    wait_for_text,
    watch_text_grow,
)
from tests.helpers import QUICK_REPLY

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_stop_button_cuts_the_streaming_reply_and_saves_exactly_what_was_shown(
    page: Page,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)

    _, reply = send_with_enter(page, "Count slowly for me, please. (stop-button)")
    expect_streaming(page, reply)
    expect(page.locator("#stop-button")).to_have_text("Stop")
    expect(page.locator("#send-button")).to_have_text("Stop & Send")
    pieces = watch_text_grow(page, reply, observations=2)
    assert len(pieces[0]) < len(pieces[1])

    page.locator("#stop-button").click()
    expect_interrupted(page, reply)
    shown = body(page, reply)
    assert shown.startswith(pieces[-1])

    saved = db_message(live_app, reply)
    assert (saved["role"], saved["status"], saved["stop_reason"]) == (
        "assistant",
        "interrupted",
        "user_stop",
    )
    assert saved["content"] == shown
    assert_upstream_cut(fake, "(stop-button)", shown)

    # The conversation goes on: the next message gets a whole reply.
    _, second = send_with_enter(page, f"{QUICK_REPLY} And now a short one.")
    expect_complete(page, second)
    assert db_message(live_app, second)["status"] == "complete"
    assert body(page, second) == db_message(live_app, second)["content"] != ""
    assert upstream_request(fake, "And now a short one.", finished=True).completed
    assert [m["status"] for m in live_app.messages(conversation)] == [
        "complete",
        "interrupted",
        "complete",
        "complete",
    ]


def _stop_and_send(page: Page, app: LiveApp, fake: FakeAnthropicControl, *, how: str) -> None:
    """Type while a reply streams, then Stop & Send (with Enter or the button)."""
    sign_in(page, app)
    conversation = new_chat(page)
    first_user, first_reply = send_with_enter(page, f"Tell me everything. (first, {how})")
    expect_streaming(page, first_reply)
    watch_text_grow(page, first_reply, observations=1)

    box = page.locator("#composer-input")
    box.press_sequentially(f"{QUICK_REPLY} Actually, just a summary. (second, {how})")
    expect(page.locator("#send-button")).to_have_text("Stop & Send")
    if how == "enter":
        box.press("Enter")
    else:
        page.locator("#send-button").click()

    expect(page.locator("#messages > article")).to_have_count(4)
    expect_interrupted(page, first_reply)
    ids = [int(i.removeprefix("msg-")) for i in article_ids(page)]
    assert ids[:2] == [first_user, first_reply]
    second_user, second_reply = ids[2:]
    expect(page.locator(f"#msg-{second_user}")).to_have_class(re.compile(r"\bmsg--user\b"))
    expect(page.locator(f"#msg-{second_user}-body")).to_contain_text("Actually, just a summary.")
    expect_complete(page, second_reply)
    expect(box).to_have_value("")

    rows = app.messages(conversation)
    assert [m["id"] for m in rows] == ids
    assert [(m["role"], m["status"]) for m in rows] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert rows[1]["stop_reason"] == "user_stop"
    assert rows[1]["content"] == body(page, first_reply)
    assert_upstream_cut(fake, f"(first, {how})", rows[1]["content"])
    assert upstream_request(fake, f"(second, {how})", finished=True).completed


def test_enter_while_streaming_stops_the_reply_and_sends_the_new_message_after_it(
    page: Page,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    _stop_and_send(page, live_app, fake, how="enter")


def test_stop_and_send_button_stops_the_reply_and_sends_the_new_message_after_it(
    page: Page,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    _stop_and_send(page, live_app, fake, how="button")


def test_escape_stops_the_streaming_reply(
    page: Page,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, "Go on and on. (escape)")
    expect_streaming(page, reply)
    watch_text_grow(page, reply, observations=1)

    page.keyboard.press("Escape")
    expect_interrupted(page, reply)
    saved = db_message(live_app, reply)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    assert saved["content"] == body(page, reply) != ""
    assert_upstream_cut(fake, "(escape)", saved["content"])


def test_stop_before_the_first_token_leaves_an_empty_interrupted_reply(
    page: Page,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, "[[fake:first_delay=5]] Think hard first. (before-first)")
    expect_streaming(page, reply)
    # The model has the request and is "thinking": nothing has been streamed yet.
    record = upstream_request(fake, "(before-first)")
    assert record.deltas_written == 0

    page.locator("#stop-button").click()
    expect_interrupted(page, reply)
    assert body(page, reply) == ""
    saved = db_message(live_app, reply)
    assert (saved["status"], saved["stop_reason"], saved["content"]) == (
        "interrupted",
        "user_stop",
        "",
    )
    record = assert_upstream_cut(fake, "(before-first)", "")
    assert record.deltas_written == 0
    # Well before the 5 s the model would have taken to say anything.
    assert record.disconnected_at - record.started_at < 4


def test_hostile_model_output_is_shown_as_literal_text_and_never_runs(
    page: Page,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    fake.set_config(text=HOSTILE, deltas=10, interval=0.01)
    sign_in(page, live_app)
    new_chat(page)
    user, reply = send_with_enter(page, HOSTILE)
    expect_complete(page, reply)

    assert body(page, reply) == HOSTILE
    assert body(page, user) == HOSTILE
    assert db_message(live_app, reply)["content"] == HOSTILE
    assert page.locator("#messages img, #messages script").count() == 0
    # An injected <img src=x> would fail to load and run onerror within a few milliseconds.
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_conversation_screenshots_in_light_dark_and_mobile(
    page: Page,
    new_context: ContextFactory,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    """Not a pixel test: it renders docs/screenshots/ for people to look at, and checks the
    layout basics a screenshot would show broken (no sideways scroll, buttons on screen)."""
    sign_in(page, live_app)
    conversation = new_chat(page)

    fake.set_config(
        text="How about Miso? It is short, warm, and easy to call across a room.",
        deltas=12,
        interval=0.01,
    )
    _, reply = send_with_enter(page, "What is a good name for a grey cat?")
    expect_complete(page, reply)

    fake.set_config(
        text=(
            "Once upon a time, a small boat left a harbour at dawn. The sea was glassy and the "
            "gulls were loud. The fisherman who sailed it had one rule: never argue with the "
            "tide. By noon the wind had turned, the clouds had gathered in the west, and he "
            "began to wonder whether the rule had ever been enough."
        ),
        deltas=300,
        interval=0.02,
    )
    _, reply = send_with_enter(page, "Tell me a long story about the sea.")
    wait_for_text(page, reply, min_chars=120)
    page.locator("#stop-button").click()
    expect_interrupted(page, reply)

    fake.set_config(
        text="The sea was calm, the boat was small, and Miso the cat was not impressed.",
        deltas=12,
        interval=0.01,
    )
    _, reply = send_with_enter(page, "Shorter, please.")
    expect_complete(page, reply)
    statuses = [m["status"] for m in live_app.messages(conversation)]
    assert statuses == ["complete"] * 3 + ["interrupted"] + ["complete"] * 2

    state = page.context.storage_state()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {
        "conversation-light.png": {"viewport": {"width": 1280, "height": 800}},
        "conversation-dark.png": {
            "viewport": {"width": 1280, "height": 800},
            "color_scheme": "dark",
        },
        "conversation-mobile.png": {
            "viewport": {"width": 390, "height": 844},
            "device_scale_factor": 2,
            "is_mobile": True,
            "has_touch": True,
        },
    }
    views: dict[str, Page] = {}
    for name, options in shots.items():
        view = views[name] = new_context(storage_state=state, **options).new_page()
        view.goto(f"/conversations/{conversation}/")
        expect(view.locator("#connection")).to_have_attribute("data-state", "open")
        expect(view.locator("#messages > article")).to_have_count(6)
        expect(view.locator("#messages .marker")).to_have_text("[Interrupted]")
        width = options["viewport"]["width"]
        assert view.evaluate("document.documentElement.scrollWidth") <= width, name
        for button in ("#send-button", "#composer-input"):
            box = view.locator(button).bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (name, button)
        path = SCREENSHOTS / name
        view.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{name} looks empty"

    # The same views while a reply streams: the Stop buttons are what this app is about.
    fake.set_config(
        text="Waves fold over each other, grey on grey, and the horizon keeps its distance. " * 4,
        deltas=300,
        interval=0.02,
    )
    for name, view in views.items():
        _, reply = send_with_enter(view, "And what happened next?")
        expect_streaming(view, reply)
        wait_for_text(view, reply, min_chars=60)
        width = shots[name]["viewport"]["width"]
        for button in ("#stop-button", "#send-button"):
            box = view.locator(button).bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (name, button)
        path = SCREENSHOTS / name.replace(".png", "-streaming.png")
        view.screenshot(path=str(path), full_page=True)
        view.keyboard.press("Escape")
        expect_interrupted(view, reply)


def test_reloading_during_a_reply_shows_its_saved_outcome_not_a_stuck_stream(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, "Keep going. (reload)")
    watch_text_grow(page, reply, observations=1)

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    # Closing the old page's socket stops the reply; the database says so at once.
    upstream_request(fake, "(reload)", finished=True)
    saved = db_message(live_app, reply)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "disconnect")
    # The reloaded page must come to agree with the database instead of streaming forever.
    expect(page.locator(f"#msg-{reply}")).to_have_class(
        re.compile(r"\bmsg--interrupted\b"), timeout=3000
    )
    expect(page.locator("#composer-actions")).to_have_attribute(
        "data-streaming", "false", timeout=1000
    )
    assert body(page, reply) == saved["content"]


# --------------------------------------------------------------------------------------------
# Several tabs, and a Stop with the socket down
# --------------------------------------------------------------------------------------------


def test_a_second_tab_follows_the_reply_shows_stop_and_its_stop_works(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    context = new_context()
    first, second = context.new_page(), context.new_page()
    sign_in(first, live_app)
    conversation = new_chat(first)
    second.goto(f"/conversations/{conversation}/")
    expect(second.locator("#connection")).to_have_attribute("data-state", "open")
    second.wait_for_timeout(300)  # its hello reaches the first tab's socket

    _, reply = send_with_enter(first, "Tell me a long story. (two tabs)")
    expect_streaming(second, reply)
    watch_text_grow(second, reply, observations=2)
    expect(second.locator("#stop-button")).to_be_visible()

    second.locator("#stop-button").click()

    for page in (first, second):
        expect_interrupted(page, reply)
    saved = db_message(live_app, reply)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    assert body(first, reply) == body(second, reply) == saved["content"]
    assert_upstream_cut(fake, "(two tabs)", saved["content"])
    # Both composers are ready: the next message from the second tab gets a whole reply.
    _, nxt = send_with_enter(second, f"{QUICK_REPLY} Shorter, please. (two tabs, next)")
    for page in (first, second):
        expect_complete(page, nxt)


def test_a_tab_opened_mid_reply_shows_the_text_so_far_and_follows_the_rest(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    context = new_context()
    first = context.new_page()
    sign_in(first, live_app)
    conversation = new_chat(first)
    _, reply = send_with_enter(first, "Keep counting. (late tab)")
    early = wait_for_text(first, reply, 60)

    late = context.new_page()
    late.goto(f"/conversations/{conversation}/")
    expect(late.locator("#connection")).to_have_attribute("data-state", "open")
    expect_streaming(late, reply)
    expect(late.locator(f"#msg-{reply}-body")).to_contain_text(early[:60])
    watch_text_grow(late, reply, observations=2)

    late.keyboard.press("Escape")
    for page in (first, late):
        expect_interrupted(page, reply)
    saved = db_message(live_app, reply)
    assert body(first, reply) == body(late, reply) == saved["content"]
    assert_upstream_cut(fake, "(late tab)", saved["content"])


def test_stop_works_through_http_when_the_socket_is_down(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    routes = relay_chat_sockets(page, reconnect=False)
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, "Stream for a while. (socket down)")
    watch_text_grow(page, reply, observations=1)

    # The browser's side of the socket drops; the server's side (the reply's owner) lives on.
    routes[0].close()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "open")
    page.locator("#stop-button").click()

    expect(page.locator("#notice")).to_contain_text("Stopped.")
    saved = db_message(live_app, reply)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    record = assert_upstream_cut(fake, "(socket down)", "")
    assert record.text_written.startswith(saved["content"])


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

MARKDOWN_REPLY = (
    "Here is **bold** text.\n\n```python\nprint(42)\n```\n\n[evil](javascript:window.__xss=3)"
)


def test_a_finished_reply_renders_markdown_highlights_code_and_copies_it(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    context = new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_in(page, live_app)
    new_chat(page)
    directive = f"[[fake:text={MARKDOWN_REPLY},deltas=6,interval=0.01]]"
    _, reply = send_with_enter(page, f"{directive} Show me some code. (markdown)")
    expect_complete(page, reply)

    bubble = page.locator(f"#msg-{reply}-body")
    expect(bubble.locator("strong")).to_have_text("bold")
    expect(bubble.locator(".code-block .code-lang")).to_have_text("python")
    expect(bubble.locator(".code-block code .nb")).to_have_text("print")  # highlighted
    # The hostile link is plain text, and clicking around runs nothing.
    assert bubble.locator("a").count() == 0
    expect(bubble).to_contain_text("[evil](javascript:window.__xss=3)")
    assert page.evaluate("window.__xss") is None

    bubble.locator(".code-block .copy-btn").click()
    expect(bubble.locator(".code-block .copy-btn")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "print(42)\n"
    page.locator(f"#msg-{reply} .copy-msg").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == db_message(live_app, reply)["content"]
    assert copied.startswith("Here is **bold** text.")
    page.locator(f"#msg-{reply}").screenshot(path=str(SCREENSHOTS / "reply-markdown.png"))


# --------------------------------------------------------------------------------------------
# While a reply streams
# --------------------------------------------------------------------------------------------


def test_the_streaming_bubble_shows_its_status_elapsed_time_and_characters_then_usage(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, "[[fake:first_delay=1.2,deltas=60]] Slow start. (status)")
    status = page.locator(f"#msg-{reply} .live-status")
    expect(status).to_contain_text("connecting…")
    expect(status).to_contain_text(re.compile(r"streaming · \d+\.\d s · [\d,]+ characters"))
    first = status.text_content() or ""
    page.wait_for_timeout(400)
    later = status.text_content() or ""
    chars = [int(re.sub(r"\D", "", t.rsplit("·", 1)[1])) for t in (first, later)]
    assert chars[1] > chars[0], (first, later)
    expect_complete(page, reply)
    meta = page.locator(f"#msg-{reply} .msg-meta")
    expect(meta).to_contain_text(re.compile(r"first token (1[2-9]\d\d|[2-9]\d\d\d) ms"))
    expect(meta).to_contain_text(re.compile(r"\d+ in · 60 out"))


def test_auto_scroll_follows_the_reply_unless_the_user_scrolled_up(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    page.set_viewport_size({"width": 900, "height": 500})
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, "A long one, please. (scroll)")
    messages = page.locator("#messages")
    wait_for_text(page, reply, 800)  # taller than the list: the list scrolls
    at_bottom = "m => m.scrollHeight - m.scrollTop - m.clientHeight < 80"
    assert messages.evaluate(at_bottom), "the list did not follow the reply"
    jump = page.locator("#jump-latest")
    expect(jump).to_be_hidden()

    messages.evaluate("m => { m.scrollTop = 0; }")
    page.wait_for_timeout(300)
    assert messages.evaluate("m => m.scrollTop") == 0, "the list jumped back down while reading"
    expect(jump).to_be_visible()
    jump.click()
    assert messages.evaluate(at_bottom)
    expect(jump).to_be_hidden()
    page.keyboard.press("Escape")
    expect_interrupted(page, reply)


def test_after_the_socket_drops_the_page_reconnects_and_shows_the_true_state(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    # The first socket will be dropped on the page's side only (the server's side, which owns
    # the reply, lives on and finishes it); the page's reconnection goes through.
    routes = relay_chat_sockets(page, reconnect=True)
    sign_in(page, live_app)
    new_chat(page)
    _, reply = send_with_enter(page, "[[fake:deltas=80]] Finish while I am away. (reconnect)")
    watch_text_grow(page, reply, observations=1)

    routes[0].close()
    expect(page.locator("#connection")).to_contain_text("reconnecting")
    # Meanwhile the reply finishes on the server; the page missed its end.
    upstream_request(fake, "(reconnect)", finished=True)
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=15_000)
    assert len(routes) >= 2

    expect_complete(page, reply)
    assert body(page, reply) == db_message(live_app, reply)["content"] != ""
    expect(page.locator("#send-button")).to_have_text("Send")


# --------------------------------------------------------------------------------------------
# Signing up and in
# --------------------------------------------------------------------------------------------


def test_a_newcomer_signs_up_with_clear_errors_and_lands_ready_to_chat(
    page: Page, live_app: LiveApp
) -> None:
    page.goto("/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    expect(page.locator(".help-text").first).to_be_visible()  # the rules, before any mistake

    name = f"newcomer{int(time.time() * 1000)}"
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill("a-long-passphrase-42")
    page.get_by_label("Password confirmation").fill("a-different-one-42")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("match")
    page.screenshot(path=str(SCREENSHOTS / "signup-error.png"), full_page=True)

    page.get_by_label("Password", exact=True).fill("a-long-passphrase-42")
    page.get_by_label("Password confirmation").fill("a-long-passphrase-42")
    page.get_by_role("button", name="Create account").click()
    # Ready to chat: the composer at /, focused; the first message makes the conversation.
    page.wait_for_url(re.compile(r"://[^/]+/$"))
    expect(page.locator(".whoami")).to_have_text(name)
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)  # not staff
    expect(page.locator("#composer-input")).to_be_focused()
    page.keyboard.type("Hello [[fake:deltas=4,interval=0.01]]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/conversations/[0-9a-f-]{36}/$"))
    expect(page.locator("article.msg--user")).to_contain_text("Hello")
    expect(page.locator("article.msg--assistant.msg--complete")).to_have_count(1)
    expect(page.locator(".sidebar-list")).to_contain_text("Hello")

    # Signed out, a wrong password gets a clear message and keeps the username.
    page.get_by_role("button", name="Sign out").click()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    expect(page.get_by_label("Username")).to_have_value(name)


def test_staff_reach_the_admin_from_the_page(page: Page, live_app: LiveApp) -> None:
    create_user(live_app.env, "staffer", "staff-password-123", staff=True)
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("staffer")
    page.get_by_label("Password").fill("staff-password-123")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"://[^/]+/$"))  # the composer at /
    page.get_by_role("link", name="Admin").click()
    expect(page).to_have_title(re.compile("administration", re.IGNORECASE))
    expect(page.get_by_role("link", name="Reply metrics")).to_be_visible()


def test_conversation_settings_choose_the_model_and_system_prompt_of_the_next_reply(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    page.locator(".chat-settings summary").click()
    page.get_by_label("Model").select_option("claude-haiku-5-5")
    page.get_by_label("System prompt").fill("Answer in one short sentence.")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".model-name")).to_contain_text("claude-haiku-5-5")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")

    _, reply = send_with_enter(page, f"{QUICK_REPLY} Hello there. (settings)")
    expect_complete(page, reply)
    expect(page.locator("#empty-hint")).to_be_hidden()
    # The heading takes the title the first message gave the conversation, without a reload.
    expect(page.locator("#chat-title")).to_contain_text("Hello there.")
    record = upstream_request(fake, "(settings)", finished=True)
    assert record.body["model"] == "claude-haiku-5-5"
    assert "Answer in one short sentence." in str(record.body.get("system"))
    page.locator(".chat-settings summary").click()
    page.screenshot(path=str(SCREENSHOTS / "conversation-settings.png"))
