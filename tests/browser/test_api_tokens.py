"""The API tokens page in Chromium: make a token, copy it, use it, revoke it (fixtures in
tests/browser/conftest.py); screenshot in docs/screenshots/api-tokens.png."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from chat.testing.live import LiveApp
from tests.browser.helpers import SCREENSHOTS, sign_in

pytestmark = pytest.mark.browser


def api_status(app: LiveApp, token: str) -> int:
    request = urllib.request.Request(
        app.url("/api/conversations/"), headers={"Authorization": f"Bearer {token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            json.loads(response.read())
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_make_copy_use_and_revoke_an_api_token(page: Page, live_app: LiveApp) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, live_app)
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    page.get_by_label("New token's name").fill("browser test")
    page.get_by_role("button", name="Create token").click()

    token = page.get_by_label("New API token").input_value()
    assert re.fullmatch(r"chat_[A-Za-z0-9_-]{43}", token)
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    row = page.get_by_role("row", name=re.compile("browser test"))
    expect(row).to_contain_text(token[:12])
    page.screenshot(path=str(SCREENSHOTS / "api-tokens.png"), full_page=True)
    assert api_status(live_app, token) == 200

    page.goto("/account/tokens/")  # shown once: not on the page again
    assert token not in page.content()
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("row", name=re.compile("browser test"))).to_have_count(0)
    assert api_status(live_app, token) == 401
