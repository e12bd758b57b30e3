"""The German page, in a real Chromium whose locale is German (so it asks for
`Accept-Language: de-DE`), against daphne and the fake Anthropic: the labels are German, a reply
streams and Stop stops it, the socket's notices are German, and the switch in the top bar goes
back to English (and stays there). Screenshots: docs/screenshots/german-light.png and
german-dark.png."""

from __future__ import annotations

import re
from typing import Literal

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp
from tests.browser.helpers import (
    SCREENSHOTS,
    ContextFactory,
    body,
    db_message,
    new_chat,
    send_with_enter,
    watch_text_grow,
)

pytestmark = pytest.mark.browser


def sign_in_german(page: Page, app: LiveApp) -> None:
    page.goto("/accounts/login/")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    page.get_by_label("Benutzername").fill(app.username)
    page.get_by_label("Passwort").fill(app.password)
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_url(re.compile(r"://[^/]+/$"))
    expect(page.locator("#chat-title")).to_have_text("Worüber wollen wir reden?")


def test_a_german_browser_gets_the_german_chat_and_stop_works(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    page = new_context(locale="de-DE", color_scheme="light").new_page()
    sign_in_german(page, live_app)
    conversation = new_chat(page)
    expect(page.locator("#send-button")).to_have_text("Senden")
    expect(page.locator("#composer-input")).to_have_attribute(
        "placeholder", "Nachricht an Claude… (Enter sendet, Umschalt+Enter für neue Zeile)"
    )

    # A reply streams (the fake's slow start-up pace); its buttons are German; Stop stops it.
    _, reply = send_with_enter(page, "Zähl bitte langsam. (german-stop)")
    expect(page.locator("#stop-button")).to_have_text("Stopp")
    expect(page.locator("#send-button")).to_have_text("Stopp & Senden")
    pieces = watch_text_grow(page, reply, observations=2)
    page.locator("#stop-button").click()
    bubble = page.locator(f"#msg-{reply}")
    expect(bubble).to_have_class(re.compile(r"\bmsg--interrupted\b"))
    # The marker is data (saved, and sent to Claude as part of the history): not translated.
    expect(bubble.locator(".marker")).to_have_text("[Interrupted]")
    expect(bubble.locator(".msg-meta")).to_contain_text("gestoppt")
    expect(bubble.locator(".regenerate-btn")).to_have_text("Neu generieren")
    expect(page.locator("#stop-button")).to_have_count(0)
    expect(page.locator("#send-button")).to_have_text("Senden")
    shown = body(page, reply)
    assert shown.startswith(pieces[-1])
    assert db_message(live_app, reply)["content"] == shown

    # A notice from the socket, in German: an empty message is refused.
    page.locator("#composer-input").fill("   ")
    page.locator("#send-button").click()
    expect(page.locator("#notice")).to_have_text("Schreib zuerst eine Nachricht.")

    # A whole reply, for the screenshots.
    fake.set_config(
        text=(
            "Gern! Hier ist eine kurze Antwort auf Deutsch.\n\n"
            "- **Stopp** beendet die Antwort sofort.\n"
            "- **Stopp & Senden** stoppt sie und schickt deine neue Nachricht hinterher."
        ),
        deltas=4,
        interval=0.01,
    )
    _, second = send_with_enter(page, "Und jetzt eine kurze Antwort, bitte.")
    expect(page.locator(f"#msg-{second}")).to_have_class(re.compile(r"\bmsg--complete\b"))
    expect(page.locator(f"#msg-{second} .copy-msg")).to_have_text("Kopieren")
    assert [m["status"] for m in live_app.messages(conversation)] == [
        "complete",
        "interrupted",
        "complete",
        "complete",
    ]

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#composer-input").focus()
    schemes: list[tuple[str, Literal["light", "dark"]]] = [
        ("german-light.png", "light"),
        ("german-dark.png", "dark"),
    ]
    for name, scheme in schemes:
        page.emulate_media(color_scheme=scheme)
        path = SCREENSHOTS / name
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000, f"{name} looks empty"

    # The switch: English, on this page and after it.
    page.locator("#language-select").select_option("en")
    page.locator("#language-submit").click()
    page.wait_for_url(re.compile(rf"/conversations/{conversation}/$"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#send-button")).to_have_text("Send")
    expect(page.locator(f"#msg-{reply} .regenerate-btn")).to_have_text("Regenerate")
    expect(page.locator(f"#msg-{reply} .msg-meta")).to_contain_text("stopped")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    page.locator("#composer-input").fill("   ")
    page.locator("#send-button").click()
    expect(page.locator("#notice")).to_have_text("Type a message first.")
    page.goto("/")
    expect(page.locator("#chat-title")).to_have_text("What shall we talk about?")
    expect(page.locator("#language-select")).to_have_value("en")
