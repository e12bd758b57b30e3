"""Import on the account page in Chromium (fixtures in tests/browser/conftest.py): a bad file
is refused there with its reason and saves nothing; a good export opens as a new conversation,
with its versions and its file, and its Export menu gives the same conversation back."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chat.testing.files import HTML_PAGE, image_bytes
from chat.testing.live import LiveApp
from tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser


def _export(title: str, image: bytes) -> dict[str, Any]:
    """An export as chat/data/export.py writes one: a question with an image, answered twice
    (the second answer shown)."""
    when = "2025-03-01T10:00:00+00:00"
    common = {"status": "complete", "created_at": when}
    return {
        "format": "stopchat.conversation",
        "version": 1,
        "conversation": {"title": title, "model": "", "system_prompt": "", "thinking_budget": 0},
        "messages": [
            {
                "id": 1,
                "parent": None,
                "active": True,
                "role": "user",
                "content": "What is in this picture?",
                **common,
                "attachments": [
                    {
                        "name": "square.png",
                        "kind": "image",
                        "media_type": "image/png",
                        "data": base64.b64encode(image).decode(),
                    }
                ],
            },
            {"id": 2, "parent": 1, "active": False, "role": "assistant",
             "content": "An orange square.", **common},
            {"id": 3, "parent": 1, "active": True, "role": "assistant",
             "content": "A square, **orange**.", "stop_reason": "end_turn", **common},
        ],
    }  # fmt: skip


def _choose(page: Page, name: str, data: bytes) -> None:
    page.locator("#import-file").set_input_files(
        files=[{"name": name, "mimeType": "application/json", "buffer": data}]
    )
    page.get_by_role("button", name="Import").click()


def _conversations(app: LiveApp, title: str) -> list[dict[str, Any]]:
    return app.query("SELECT id FROM chat_conversation WHERE title = ?", (title,))


def test_a_bad_file_is_refused_on_the_account_page_and_a_good_one_opens_as_a_conversation(
    page: Page, live_app: LiveApp, tmp_path: Path
) -> None:
    title = f"Imported square {tmp_path.name}"
    sign_in(page, live_app)
    page.goto("/account/")
    expect(page.get_by_role("heading", name="Your conversations")).to_be_visible()
    expect(page.get_by_role("link", name="Export all (.zip)")).to_be_visible()

    _choose(page, "notes.json", b"this is not JSON")
    page.wait_for_url(re.compile(r"/account/#data$"))
    error = page.get_by_role("alert")
    expect(error).to_have_text(re.compile(r"^Nothing was imported\. That file is not JSON\."))

    lying = _export(title, HTML_PAGE)
    _choose(page, "lying.json", json.dumps(lying).encode())
    expect(page.get_by_role("alert")).to_contain_text(
        "square.png says it is an image, but its content is not"
    )
    assert _conversations(live_app, title) == []
    assert live_app.query(
        "SELECT COUNT(*) AS n FROM chat_attachment WHERE name = 'square.png'"
    ) == [{"n": 0}]

    image = image_bytes(40, 40, color=(240, 140, 20))
    _choose(page, "good.json", json.dumps(_export(title, image)).encode())
    page.wait_for_url(re.compile(r"/conversations/[0-9a-f-]{36}/$"))
    expect(page.locator("#chat-title")).to_have_text(title)
    articles = page.locator("#messages > article")
    expect(articles).to_have_count(2)
    expect(articles.nth(0)).to_contain_text("What is in this picture?")
    expect(articles.nth(1).locator("strong")).to_have_text("orange")
    expect(articles.nth(1).locator(".version-count")).to_have_text("2/2")
    thumbnail = articles.nth(0).locator("img")
    expect(thumbnail).to_be_visible()
    assert thumbnail.evaluate("img => img.complete && img.naturalWidth > 0")
    assert len(_conversations(live_app, title)) == 1

    # The Export menu gives the same conversation back.
    page.get_by_text("Export", exact=True).click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="JSON (.json)").click()
    download = download_info.value
    assert re.fullmatch(r"imported-square-.*\.json", download.suggested_filename)
    exported = json.loads(Path(download.path()).read_text())
    assert [(m["id"], m["parent"], m["active"], m["content"]) for m in exported["messages"]] == [
        (1, None, True, "What is in this picture?"),
        (2, 1, False, "An orange square."),
        (3, 1, True, "A square, **orange**."),
    ]
    files = exported["messages"][0]["attachments"]
    assert [(f["name"], base64.b64decode(f["data"])[:8]) for f in files] == [
        ("square.png", b"\x89PNG\r\n\x1a\n")
    ]
