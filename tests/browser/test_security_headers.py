"""A real Chromium uses the app under the Content-Security-Policy -- chat, stream, Stop, admin --
and must report no violation, while an injected inline script, inline style and eval are refused.
(The policy itself: tests/test_security_headers.py.)"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp, create_user
from tests.browser.helpers import (
    WAIT_MS,
    expect_complete,
    expect_interrupted,
    expect_streaming,
    new_chat,
    send_with_enter,
    sign_in,
    watch_text_grow,
)
from tests.helpers import POLICY, QUICK_REPLY, assert_strict, directives

pytestmark = pytest.mark.browser

# --------------------------------------------------------------------------------------------
# A real Chromium under the policy
# --------------------------------------------------------------------------------------------

#: Reports every CSP violation of every document to Python (an init script runs outside the
#: page's policy: it is not an inline script).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(
    `${location.pathname}: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.sourceFile}:${e.lineNumber} ${e.sample}`
  );
});
"""


def test_chat_stop_and_admin_work_in_chromium_with_no_policy_violation(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    violations: list[str] = []

    def report(text: str) -> None:
        violations.append(text)

    page.expose_function("reportCspViolation", report)
    page.add_init_script(REPORT_VIOLATIONS)
    documents: list[tuple[str, str | None]] = []

    def on_response(response: Any) -> None:
        if response.request.resource_type == "document" and response.status == 200:
            documents.append((response.url, response.headers.get("content-security-policy")))

    page.on("response", on_response)

    # Chat: sign in, a reply streams over the socket (connect-src 'self') and completes.
    sign_in(page, live_app)
    conversation = new_chat(page)
    # The composer resized, as its resize handle does (an inline style set through the CSSOM,
    # which the policy allows): the frames that swap the composer must not copy it over.
    page.locator("#composer-input").evaluate("box => { box.style.height = '7em'; }")
    _, reply = send_with_enter(page, f"{QUICK_REPLY} Hello under the policy. (csp)")
    expect_complete(page, reply)
    # A long one, stopped with the button.
    _, long_reply = send_with_enter(page, "Take your time. (csp-stop)")
    expect_streaming(page, long_reply)
    watch_text_grow(page, long_reply, observations=2)
    page.locator("#stop-button").click()
    expect_interrupted(page, long_reply)
    # Reloaded: the finished replies are now rendered by the server, not by a frame.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect(page.locator(f"#msg-{long_reply} .marker")).to_have_text("[Interrupted]")

    # The admin, as staff: its login, index, the conversation's change page, the metrics.
    password = f"staff-{secrets.token_urlsafe(9)}"
    create_user(live_app.env, "csp-staff", password, staff=True)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    page.goto("/admin/")
    page.get_by_label("Username").fill("csp-staff")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_title(re.compile("administration", re.IGNORECASE))
    page.goto(f"/admin/chat/conversation/{conversation}/change/")
    expect(page.locator("#content")).to_contain_text("Hello under the policy.")
    page.goto("/admin/chat/metrics/")
    # The page's own <style nonce> applied: its row headings are 16em wide.
    heading = page.locator("#reply-metrics th[scope=row]").first
    width, font_size = heading.evaluate(
        "th => [getComputedStyle(th).width, getComputedStyle(th).fontSize].map(parseFloat)"
    )
    assert abs(width - 16 * font_size) < 1, (width, font_size)

    page.wait_for_timeout(200)  # a violation event is dispatched asynchronously
    assert not violations, "CSP violations:\n" + "\n".join(violations)
    paths = [re.sub(r"^https?://[^/]+", "", url) for url, _ in documents]
    assert any(p.startswith("/conversations/") for p in paths), paths
    assert any(p.startswith("/admin/chat/conversation/") for p in paths), paths
    for url, header in documents:
        assert header, f"no Content-Security-Policy on {url}"
        policy = directives(header)
        assert_strict(policy)
        assert {k: v for k, v in policy.items() if k != "style-src"} == {
            k: v for k, v in POLICY.items() if k != "style-src"
        }, url


def test_chromium_enforces_the_policy_injected_script_style_and_eval_are_refused(
    chromium: Browser, live_app: LiveApp
) -> None:
    # Its own context: the violations below are the point, so they must not fail the test the
    # way new_context fails any console error.
    context = chromium.new_context(base_url=live_app.base_url)
    try:
        page = context.new_page()
        page.add_init_script(
            "window.__violations = [];"
            "document.addEventListener('securitypolicyviolation',"
            " (e) => window.__violations.push(e.effectiveDirective));"
        )
        page.goto("/accounts/login/")
        result = page.evaluate(
            """() => {
              const script = document.createElement("script");
              script.textContent = "window.__inlineRan = true";
              document.body.append(script);
              const box = document.createElement("div");
              box.setAttribute("style", "color: rgb(255, 0, 0)");
              document.body.append(box);
              return {
                inlineRan: window.__inlineRan === true,
                color: getComputedStyle(box).color,
                htmxAllowEval: window.htmx.config.allowEval,
                styleElements: document.querySelectorAll("style").length,
              };
            }"""
        )
        assert result["inlineRan"] is False
        assert result["color"] != "rgb(255, 0, 0)"
        # eval from the page's own code (a timer callback; Playwright's evaluate itself may eval).
        page.evaluate(
            """() => setTimeout(() => {
              try { window.__evaluated = eval("'eval ran'"); }
              catch (e) { window.__evaluated = e.name; }
            }, 0)"""
        )
        page.wait_for_function("window.__evaluated !== undefined")
        assert page.evaluate("window.__evaluated") == "EvalError"
        assert result["htmxAllowEval"] is False
        assert result["styleElements"] == 0  # htmx injected no indicator <style>
        deadline = time.monotonic() + WAIT_MS / 1000
        while len(page.evaluate("window.__violations")) < 3 and time.monotonic() < deadline:
            page.wait_for_timeout(20)
        assert sorted(page.evaluate("window.__violations")) == [
            "script-src",
            "script-src-elem",
            "style-src-attr",
        ]
    finally:
        context.close()
