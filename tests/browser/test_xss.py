"""Hostile text from the model and from users, in a real Chromium: through the streaming frames,
the rendered Markdown, the titles (heading, sidebar, document title) and the admin. Nothing may
run. Each payload, if it ran, would set ``window.__xss`` or open a dialog; the page is checked
for both, and for any element carrying an event handler or a script URL."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp, create_user
from tests.browser.helpers import expect_complete, new_chat, send_with_enter, sign_in
from tests.helpers import QUICK_REPLY

pytestmark = pytest.mark.browser

CORPUS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=2">',
    "[click me](javascript:window.__xss=3)",
    '![pic](x" onerror="window.__xss=4)',
    '<a href="data:text/html,<script>window.__xss=5</script>">data link</a>',
    '<svg onload="window.__xss=6"><circle r=5></circle></svg>',
    '<div onclick="window.__xss=7" unclosed',
    "&lt;script&gt;window.__xss=8&lt;/script&gt; &amp; &#x3C;b&#x3E;",
    '<iframe srcdoc="<script>parent.__xss=9</script>"></iframe>',
    "[entity link](&#106;avascript:window.__xss=10)",
    '[titled](http://example.com "onmouseover=window.__xss=11")',
    "`<script>window.__xss=12</script>` and ```html\n<script>window.__xss=13</script>\n```",
    "<style>body { display: none }</style>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=14>",
    "A" * 5000,
]

# What would prove a payload got through: a flag, or a live element with a handler or script URL.
PROBE = """(scope) => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      const value = attr.value.trim().toLowerCase();
      if (attr.name.startsWith('on')) bad.push(el.tagName + ' ' + attr.name);
      if (['href', 'src', 'action', 'formaction', 'srcdoc'].includes(attr.name)
          && (value.startsWith('javascript:') || value.startsWith('data:text')
              || attr.name === 'srcdoc')) bad.push(el.tagName + ' ' + attr.name + '=' + value);
    }
  }
  for (const s of document.querySelectorAll('script')) {
    if (!s.src) bad.push('inline script: ' + s.textContent.slice(0, 40));
  }
  // Elements a payload could smuggle in, inside the content (the admin's own header has svg).
  for (const area of document.querySelectorAll(scope)) {
    const foreign = area.querySelector('iframe, object, embed, svg, math, style');
    if (foreign) bad.push('foreign element: ' + foreign.tagName);
  }
  return {xss: window.__xss === undefined ? null : window.__xss, bad};
}"""


def assert_nothing_ran(
    page: Page, dialogs: list[str], scope: str = "#messages, #chat-title, .sidebar, #content"
) -> None:
    result = page.evaluate(PROBE, scope)
    assert result == {"xss": None, "bad": []}, result
    assert dialogs == []


def test_hostile_model_output_user_text_and_titles_never_run(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, live_app)
    conversation = new_chat(page)
    for n, payload in enumerate(CORPUS):
        # The model answers with the payload; the user's message carries it too (and the first
        # one becomes the conversation's title, in the heading, the sidebar and <title>).
        fake.set_config(text=payload, deltas=min(12, len(payload)), interval=0.005)
        _, reply = send_with_enter(page, f"{payload} {QUICK_REPLY} #{n}")
        expect_complete(page, reply)
        source = page.locator(f"#msg-{reply} template.msg-source")
        assert source.evaluate("t => t.content.textContent") == payload
        assert_nothing_ran(page, dialogs)
    heading = page.locator("#chat-title").text_content() or ""
    assert heading.startswith(CORPUS[0])

    # A hostile rename, and a reload: every title and bubble rendered by the server.
    page.locator(".chat-rename summary").click()
    page.locator("#rename-title").fill('<img src=x onerror="window.__xss=99">')
    page.locator("#rename-title").press("Enter")
    expect(page.locator("#chat-title")).to_have_text('<img src=x onerror="window.__xss=99">')
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect(page.locator("#messages > article")).to_have_count(2 * len(CORPUS))
    assert page.title().startswith('<img src=x onerror="window.__xss=99">')
    # (The sidebar lists a conversation once it has messages: after the reload, it does.)
    hostile = '<img src=x onerror="window.__xss=99">'
    expect(page.locator(f"#conv-{conversation}-title")).to_have_text(hostile)
    assert_nothing_ran(page, dialogs)

    # A Markdown link to a script URL stays text, even when clicked.
    page.get_by_text("[click me](javascript:window.__xss=3)").first.click()
    assert_nothing_ran(page, dialogs)


def test_hostile_conversations_are_inert_in_the_admin(
    new_context: object, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:

    create_user(live_app.env, "xss-staff", "staff-password-123", staff=True)
    user_page: Page = new_context().new_page()  # type: ignore[operator]
    sign_in(user_page, live_app)
    new_chat(user_page)
    fake.set_config(text=CORPUS[1] + " " + CORPUS[4], deltas=4, interval=0.005)
    _, reply = send_with_enter(user_page, f"{CORPUS[0]} {CORPUS[5]} {QUICK_REPLY}")
    expect_complete(user_page, reply)

    admin: Page = new_context().new_page()  # type: ignore[operator]
    dialogs: list[str] = []
    admin.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    admin.goto("/admin/login/")
    admin.get_by_label("Username").fill("xss-staff")
    admin.get_by_label("Password").fill("staff-password-123")
    admin.get_by_role("button", name=re.compile("log in", re.IGNORECASE)).click()
    for path in ("/admin/chat/conversation/", "/admin/chat/message/"):
        admin.goto(path)
        expect(admin.locator("#result_list")).to_be_visible()
        assert_nothing_ran(admin, dialogs)
    admin.goto(f"/admin/chat/message/{reply}/change/")
    expect(admin.locator("body")).to_contain_text("window.__xss=2")  # shown, as text
    assert_nothing_ran(admin, dialogs)
