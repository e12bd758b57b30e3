"""Attachments in a real Chromium, against daphne and the fake Anthropic (fixtures in
tests/browser/conftest.py).

Why: a file reaches the composer three ways -- picked with the paperclip, dragged onto the page,
pasted (a screenshot) -- and each is uploaded at once and shown as a chip before it is sent. The
message carries the chips that were ready (text optional), Stop and Stop & Send work as without
files, the bubble shows image thumbnails and file chips that open the file, and a file the
server refuses says why and leaves nothing behind.

Files are made in Python (chat.testing.files) and handed to the page as base64; the page builds
``File`` objects from them and dispatches the very events a user's paste or drop fires
(``paste`` with a ``DataTransfer`` as its clipboard, ``dragenter``/``dragover``/``drop``).
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import FilePayload, Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.files import HTML_PAGE, image_bytes, pdf_bytes
from chat.testing.live import LiveApp
from tests.browser.helpers import (
    SCREENSHOTS,
    ContextFactory,
    article_ids,
    body,
    db_message,
    expect_complete,
    expect_interrupted,
    expect_streaming,
    new_chat,
    sign_in,
    upstream_request,
    wait_for_text,
    watch_text_grow,
)
from tests.helpers import QUICK_REPLY

pytestmark = pytest.mark.browser

#: A file for the page: (name, media type the browser gives it, bytes).
FileSpec = tuple[str, str, bytes]

#: Builds ``File`` objects from (name, type, base64) triples, in the page.
MAKE_FILES = """(specs) => specs.map(([name, type, data]) => {
  const raw = atob(data);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new File([bytes], name, { type });
})"""

#: A slow reply that reads as an answer in the screenshots.
ANSWER = (
    "The screenshot shows a settings dialog with the save button disabled, and the PDF is a "
    "two-page specification. Page one describes the form's fields; page two lists which of "
    "them are required. The button stays disabled until every required field is filled in. "
)


def dialog_png() -> bytes:
    """A screenshot-like PNG (a small dialog drawn on an image_bytes background; a plain
    rectangle would read as a placeholder in the screenshots), with EXIF metadata the stored
    copy must not keep."""
    image = Image.open(io.BytesIO(image_bytes(480, 300, color=(226, 232, 240))))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle(
        (60, 40, 420, 260), radius=14, fill=(255, 255, 255), outline=(148, 163, 184)
    )
    draw.rectangle((60, 40, 420, 80), fill=(58, 120, 196))
    for top in (105, 150, 195):
        draw.rounded_rectangle((90, top, 390, top + 28), radius=6, outline=(148, 163, 184), width=2)
    draw.rounded_rectangle((300, 226, 400, 250), radius=8, fill=(203, 213, 225))
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "taken at home"  # ImageDescription
    image.save(out, "PNG", exif=exif.tobytes())
    return out.getvalue()


def specs(files: list[FileSpec]) -> list[list[str]]:
    return [[name, kind, base64.b64encode(data).decode()] for name, kind, data in files]


def paste_files(page: Page, files: list[FileSpec], selector: str = "#composer-input") -> bool:
    """Paste ``files`` into the element, as a pasted screenshot arrives: a ``paste`` event whose
    clipboard holds them. Whether the page took the paste (cancelled its default)."""
    return page.evaluate(
        f"""([selector, specs]) => {{
            const files = ({MAKE_FILES})(specs);
            const clipboard = new DataTransfer();
            files.forEach((file) => clipboard.items.add(file));
            const paste = new ClipboardEvent("paste", {{
                clipboardData: clipboard, bubbles: true, cancelable: true,
            }});
            return !document.querySelector(selector).dispatchEvent(paste);
        }}""",
        [selector, specs(files)],
    )


def drag_files_over(page: Page, files: list[FileSpec]) -> None:
    """Start dragging ``files`` over the page (dragenter, dragover on the messages)."""
    page.evaluate(
        f"""(specs) => {{
            const files = ({MAKE_FILES})(specs);
            const drag = new DataTransfer();
            files.forEach((file) => drag.items.add(file));
            window.__drag = drag;
            const over = document.getElementById("messages");
            for (const type of ["dragenter", "dragover"]) {{
                over.dispatchEvent(new DragEvent(type, {{
                    dataTransfer: drag, bubbles: true, cancelable: true,
                }}));
            }}
        }}""",
        specs(files),
    )


def drop_dragged_files(page: Page) -> bool:
    """Drop what ``drag_files_over`` is dragging; whether the page took the drop."""
    return page.evaluate(
        """() => !document.getElementById("messages").dispatchEvent(new DragEvent("drop", {
            dataTransfer: window.__drag, bubbles: true, cancelable: true,
        }))"""
    )


def ready_chips(page: Page) -> Any:
    """The composer's chips of uploaded files (not the placeholders of uploads under way)."""
    return page.locator("#composer-files > .file-chip:not(.file-chip--uploading)")


def chip_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        "#composer-files > .file-chip[data-attachment]", "els => els.map(e => e.dataset.attachment)"
    )


def attachment_rows(app: LiveApp, **where: Any) -> list[dict[str, Any]]:
    """Attachments by id (``id=``) or by message (``message_id=``), in their order."""
    ((column, value),) = where.items()
    if column == "id":
        value = value.replace("-", "")
    return app.query(
        "SELECT id, name, kind, media_type, size, message_id, position FROM chat_attachment "
        f"WHERE {column} = ? ORDER BY position",
        (value,),
    )


def last_pair(page: Page) -> tuple[int, int]:
    user, reply = (int(i.removeprefix("msg-")) for i in article_ids(page)[-2:])
    return user, reply


def expect_thumbnail_loaded(page: Page, user_message: int) -> None:
    """The bubble's image thumbnail is there and its picture loaded (not a broken image)."""
    image = page.locator(f"#msg-{user_message} .msg-files .msg-file--image img")
    expect(image).to_have_count(1)
    expect(image).to_be_visible()
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    box = image.bounding_box()
    assert box is not None and 110 <= box["height"] <= 130, box  # about 120 px tall


def blocks(record_body: dict[str, Any], index: int = -1) -> list[dict[str, Any]]:
    content = record_body["messages"][index]["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_paste_an_image_drop_a_pdf_send_stop_reload_and_see_them_in_the_bubble(
    page: Page,
    new_context: ContextFactory,
    live_app: LiveApp,
    fake: FakeAnthropicControl,
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    png = dialog_png()
    pdf = pdf_bytes(2)

    # A pasted screenshot: the page takes the paste and the file uploads at once.
    assert paste_files(page, [("screenshot.png", "image/png", png)])
    expect(ready_chips(page)).to_have_count(1)
    image_chip = ready_chips(page).first
    expect(image_chip.locator(".file-name")).to_have_text("screenshot.png")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0",
        arg=image_chip.locator("img.file-thumb").element_handle(),
    )

    # A PDF dragged over the page: the overlay says where it goes; dropped, it uploads.
    overlay = page.locator("#drop-overlay")
    expect(overlay).to_be_hidden()
    drag_files_over(page, [("spec.pdf", "application/pdf", pdf)])
    expect(overlay).to_be_visible()
    expect(overlay).to_have_text("Drop files to attach")
    assert drop_dragged_files(page)
    expect(overlay).to_be_hidden()
    expect(ready_chips(page)).to_have_count(2)
    pdf_chip = ready_chips(page).nth(1)
    expect(pdf_chip.locator(".file-icon")).to_have_text("PDF")
    expect(pdf_chip.locator(".file-name")).to_have_text("spec.pdf")
    expect(pdf_chip.get_by_role("button", name="Remove spec.pdf")).to_be_visible()
    ids = chip_ids(page)
    assert len(ids) == 2
    # Uploaded, not sent: the server has them waiting, bound to no message.
    for attachment_id in ids:
        (row,) = attachment_rows(live_app, id=attachment_id)
        assert row["message_id"] is None

    # Text too, then Enter: both go with the message; the chips leave the composer.
    fake.set_config(text=ANSWER * 3, deltas=300, interval=0.02)
    box = page.locator("#composer-input")
    box.fill("What is wrong with this dialog? (files-stop)")
    box.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(2)
    user, reply = last_pair(page)
    expect(page.locator("#composer-files > li")).to_have_count(0)
    expect(box).to_have_value("")
    expect(page.locator(f"#msg-{user} .msg-files > li")).to_have_count(2)

    # The reply streams; Stop cuts it.
    expect_streaming(page, reply)
    watch_text_grow(page, reply, observations=2)
    wait_for_text(page, reply, min_chars=160)
    page.locator("#stop-button").click()
    expect_interrupted(page, reply)
    saved = db_message(live_app, reply)
    assert (saved["status"], saved["stop_reason"]) == ("interrupted", "user_stop")
    assert saved["content"] == body(page, reply) != ""

    # Claude was sent an image block (the re-encoded picture, metadata gone) and a document
    # block (the PDF's own bytes), then the text.
    record = upstream_request(fake, "(files-stop)", finished=True)
    sent = blocks(record.body)
    assert [b["type"] for b in sent] == ["image", "document", "text"], sent
    assert sent[0]["source"]["media_type"] == "image/png"
    picture = Image.open(io.BytesIO(base64.b64decode(sent[0]["source"]["data"])))
    assert picture.size == (480, 300) and not picture.getexif()
    assert sent[1]["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(sent[1]["source"]["data"]) == pdf
    assert "What is wrong with this dialog?" in sent[2]["text"]
    rows = attachment_rows(live_app, message_id=user)
    assert [(r["name"], r["kind"]) for r in rows] == [
        ("screenshot.png", "image"),
        ("spec.pdf", "document"),
    ]

    # After a reload the bubble shows the thumbnail (loaded) and the PDF's chip; both open the
    # file in a new tab, and the files are there.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect_interrupted(page, reply)
    expect_thumbnail_loaded(page, user)
    image_link = page.locator(f"#msg-{user} .msg-file--image")
    expect(image_link).to_have_attribute("target", "_blank")
    expect(image_link.locator("img")).to_have_attribute("alt", "screenshot.png")
    document = page.locator(f"#msg-{user} .msg-file.file-chip--document")
    expect(document).to_have_attribute("target", "_blank")
    expect(document.locator(".file-icon")).to_have_text("PDF")
    expect(document.locator(".file-name")).to_have_text("spec.pdf")
    expect(document.locator(".file-size")).to_contain_text("2 pages")
    opened = page.request.get(document.get_attribute("href") or "")
    assert opened.status == 200 and opened.headers["content-type"] == "application/pdf"
    assert opened.body() == pdf
    opened = page.request.get(image_link.get_attribute("href") or "")
    assert opened.status == 200 and opened.headers["content-type"] == "image/png"
    expect(page.locator(f"#msg-{user}-body")).to_have_text(
        "What is wrong with this dialog? (files-stop)"
    )

    # Screenshots, light and dark: the conversation after the reload, with a file waiting in
    # the composer too (a chip as it looks before sending; the dark page, opened afterwards,
    # shows the same file still waiting).
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    state = page.context.storage_state()
    for name, options in {
        "attachments-light.png": {},
        "attachments-dark.png": {"color_scheme": "dark"},
    }.items():
        view = page if not options else new_context(storage_state=state, **options).new_page()
        if view is page:
            assert paste_files(
                view, [("notes.md", "text/markdown", b"# Notes\n\nThe dialog, again.\n")]
            )
        else:
            # The same page opened again: the file waiting unsent is in its composer still.
            view.goto(f"/conversations/{conversation}/")
            expect(view.locator("#connection")).to_have_attribute("data-state", "open")
            expect_thumbnail_loaded(view, user)
        expect(view.locator("#composer-files > li")).to_have_count(1)
        expect(ready_chips(view).locator(".file-name")).to_have_text(["notes.md"])
        assert view.evaluate("document.documentElement.scrollWidth") <= 1280
        path = SCREENSHOTS / name
        view.screenshot(path=str(path))
        assert path.stat().st_size > 10_000, f"{name} looks empty"


def test_stop_and_send_carries_a_pasted_image_with_the_new_message(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    box = page.locator("#composer-input")
    box.fill("Tell me everything. (first, with-file)")
    box.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(2)
    first_user, first_reply = last_pair(page)
    expect_streaming(page, first_reply)
    watch_text_grow(page, first_reply, observations=1)

    # While it streams: type, paste a picture, Stop & Send.
    box.press_sequentially(f"{QUICK_REPLY} And this one? (second, with-file)")
    assert paste_files(page, [("chart.png", "image/png", image_bytes(200, 120))])
    expect(ready_chips(page)).to_have_count(1)
    (attachment_id,) = chip_ids(page)
    expect(page.locator("#send-button")).to_have_text("Stop & Send")
    page.locator("#send-button").click()

    expect(page.locator("#messages > article")).to_have_count(4)
    expect_interrupted(page, first_reply)
    second_user, second_reply = (int(i.removeprefix("msg-")) for i in article_ids(page)[2:])
    expect_complete(page, second_reply)
    expect(page.locator("#composer-files > li")).to_have_count(0)
    expect(box).to_have_value("")
    expect_thumbnail_loaded(page, second_user)
    expect(page.locator(f"#msg-{first_user} .msg-files")).to_have_count(0)

    rows = live_app.messages(conversation)
    assert [(m["id"], m["role"], m["status"]) for m in rows] == [
        (first_user, "user", "complete"),
        (first_reply, "assistant", "interrupted"),
        (second_user, "user", "complete"),
        (second_reply, "assistant", "complete"),
    ]
    assert rows[1]["stop_reason"] == "user_stop"
    assert rows[1]["content"] == body(page, first_reply) != ""
    (row,) = attachment_rows(live_app, id=attachment_id)
    assert (row["message_id"], row["name"]) == (second_user, "chart.png")

    # The new message's request: the stopped reply as it was kept, then the picture and text.
    record = upstream_request(fake, "(second, with-file)", finished=True)
    messages = record.body["messages"]
    assert messages[-2]["role"] == "assistant"
    assert blocks(record.body, -2)[0]["text"].startswith(rows[1]["content"])
    assert [b["type"] for b in blocks(record.body)] == ["image", "text"]


def test_a_send_waits_for_a_file_still_uploading(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    page.route(re.compile(r"/attachments/$"), hold)

    assert paste_files(page, [("slow.png", "image/png", image_bytes(100, 100))])
    uploading = page.locator("#composer-files > .file-chip--uploading")
    expect(uploading).to_have_count(1)
    expect(uploading).to_contain_text("slow.png")
    expect(uploading).to_contain_text("uploading…")
    page.wait_for_timeout(100)  # (the held request reaches the route)
    assert len(held) == 1

    # Enter with the file on its way: nothing is sent, and the page says why.
    box = page.locator("#composer-input")
    box.fill(f"{QUICK_REPLY} Here it is. (waited)")
    box.press("Enter")
    notice = page.locator("#notice")
    expect(notice).to_have_text("A file is still uploading: send again when its chip is ready.")
    page.wait_for_timeout(300)
    expect(page.locator("#messages > article")).to_have_count(0)
    assert live_app.messages(conversation) == []

    # The upload finishes: the chip is ready, the notice goes, and Enter sends both.
    held[0].continue_()
    expect(ready_chips(page)).to_have_count(1)
    expect(notice).to_be_hidden()
    box.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(2)
    user, reply = last_pair(page)
    expect_complete(page, reply)
    expect_thumbnail_loaded(page, user)
    expect(box).to_have_value("")
    expect(page.locator("#composer-files > li")).to_have_count(0)


def test_files_alone_make_a_message_and_a_chip_attached_meanwhile_stays(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    fake.set_config(deltas=4, interval=0.01)
    notes = b"id,name\n1,first (files-alone)\n2,second\n"
    assert paste_files(page, [("table.csv", "text/csv", notes)])
    expect(ready_chips(page)).to_have_count(1)
    expect(ready_chips(page).locator(".file-icon")).to_have_text("TXT")

    # No text, only the file: Enter sends it; the bubble shows the file's chip, no text.
    page.locator("#composer-input").press("Enter")
    expect(page.locator("#messages > article")).to_have_count(2)
    user, reply = last_pair(page)
    expect_complete(page, reply)
    chip = page.locator(f"#msg-{user} .msg-file.file-chip--text")
    expect(chip.locator(".file-name")).to_have_text("table.csv")
    expect(page.locator(f"#msg-{user}-body")).to_have_text("")
    # The file went as text (the message had none of its own).
    record = upstream_request(fake, "(files-alone)", finished=True)
    sent = blocks(record.body)
    assert [b["type"] for b in sent] == ["text"] and notes.decode() in sent[0]["text"], sent

    # A chip's remove button takes it back out, on the page and on the server.
    assert paste_files(page, [("a.txt", "text/plain", b"a"), ("b.txt", "text/plain", b"b")])
    expect(ready_chips(page)).to_have_count(2)
    first, second = chip_ids(page)
    page.get_by_role("button", name="Remove a.txt").click()
    expect(ready_chips(page)).to_have_count(1)
    assert chip_ids(page) == [second]
    expect(page.locator("#composer-input")).to_be_focused()
    deadline = 50
    while attachment_rows(live_app, id=first) and deadline:
        page.wait_for_timeout(50)
        deadline -= 1
    assert attachment_rows(live_app, id=first) == []
    assert attachment_rows(live_app, id=second)[0]["message_id"] is None


def test_a_refused_file_shows_the_servers_reason_and_leaves_no_chip(
    refusing_page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    page = refusing_page
    sign_in(page, live_app)
    new_chat(page)
    notice = page.locator("#notice")

    # An HTML page called x.png, picked with the paperclip: the server reads its bytes and
    # refuses it; the page says what the server said, as an alert, and keeps no chip.
    attach = page.get_by_role("button", name="Attach files")
    with page.expect_file_chooser() as chooser:
        attach.click()
    assert chooser.value.is_multiple()
    with page.expect_response(re.compile(r"/attachments/$")) as answer:
        lie: FilePayload = {"name": "x.png", "mimeType": "image/png", "buffer": HTML_PAGE}
        chooser.value.set_files(files=[lie])
    assert answer.value.status == 400
    message = answer.value.json()["error"]["message"]
    assert message.startswith("x.png says it is an image, but its content is not"), message
    expect(notice).to_have_text(message)
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_have_class(re.compile(r"\bnotice--error\b"))
    expect(page.locator("#composer-files > li")).to_have_count(0)
    expect(page.locator("#composer-input")).to_be_focused()

    # Too large: said at once, without uploading it.
    uploads: list[str] = []
    page.on("request", lambda r: uploads.append(r.url) if "/attachments/" in r.url else None)
    page.evaluate(
        """() => {
            const big = new File([new Uint8Array(10 * 1024 * 1024 + 1)], "huge.pdf",
                                 { type: "application/pdf" });
            const clipboard = new DataTransfer();
            clipboard.items.add(big);
            document.getElementById("composer-input").dispatchEvent(new ClipboardEvent(
                "paste", { clipboardData: clipboard, bubbles: true, cancelable: true }));
        }"""
    )
    expect(notice).to_have_text("huge.pdf is 10.0 MB; files can be at most 10.0 MB.")
    expect(notice).to_have_attribute("role", "alert")
    expect(page.locator("#composer-files > li")).to_have_count(0)

    # Too many: five are attached, the sixth is not, and the page says so.
    six = [(f"part-{i}.txt", "text/plain", f"part {i}".encode()) for i in range(6)]
    assert paste_files(page, six)
    expect(ready_chips(page)).to_have_count(5)
    expect(notice).to_have_text("A message can carry at most 5 files: 1 more was not attached.")
    assert len(uploads) == 5
    expect(ready_chips(page).locator(".file-name")).to_have_text(
        [f"part-{i}.txt" for i in range(5)]
    )


def test_what_was_typed_and_attached_but_not_sent_is_back_after_a_reload(
    page: Page, live_app: LiveApp
) -> None:
    """A reload (or a crash, or a tab closed by mistake) loses nothing of a message being
    written: its text is kept in the browser, its files wait on the server in the composer they
    were attached in; a sent message takes both along, and signing out forgets the text."""
    sign_in(page, live_app)
    box = page.locator("#composer-input")
    plan = ("plan.txt", "text/plain", b"step one\nstep two\n")

    # A new chat's composer.
    box.fill(f"{QUICK_REPLY} With the plan (drafts)")
    assert paste_files(page, [plan])
    expect(ready_chips(page)).to_have_count(1)
    page.reload()
    expect(box).to_have_value(f"{QUICK_REPLY} With the plan (drafts)")
    expect(ready_chips(page).locator(".file-name")).to_have_text(["plan.txt"])

    # A conversation's composer has its own draft: the new chat's is not there.
    new_chat(page)
    expect(box).to_have_value("")
    expect(page.locator("#composer-files > li")).to_have_count(0)
    box.fill(f"{QUICK_REPLY} Half a thought (drafts)")
    assert paste_files(page, [("shot.png", "image/png", image_bytes())])
    expect(ready_chips(page)).to_have_count(1)
    waiting = chip_ids(page)
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect(box).to_have_value(f"{QUICK_REPLY} Half a thought (drafts)")
    expect(ready_chips(page)).to_have_count(1)
    assert chip_ids(page) == waiting
    expect(ready_chips(page).locator("img.file-thumb")).to_have_count(1)

    # Sent, the text and the file leave the composer, and a reload keeps it empty.
    box.press("Enter")
    expect(page.locator("#messages > article")).to_have_count(2)
    user, reply = last_pair(page)
    expect_complete(page, reply)
    expect(page.locator(f"#msg-{user} .msg-files .msg-file--image")).to_have_count(1)
    expect(box).to_have_value("")
    expect(page.locator("#composer-files > li")).to_have_count(0)
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect(box).to_have_value("")
    expect(page.locator("#composer-files > li")).to_have_count(0)

    # Signing out forgets the text typed; the file still waits in the new chat's composer.
    page.goto("/")
    expect(box).to_have_value(f"{QUICK_REPLY} With the plan (drafts)")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))
    assert page.evaluate("() => Object.keys(localStorage)") == []
    sign_in(page, live_app)
    expect(box).to_have_value("")
    expect(ready_chips(page).locator(".file-name")).to_have_text(["plan.txt"])

    # The new chat's first message takes it along.
    box.fill(f"{QUICK_REPLY} With the plan after all (drafts)")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/conversations/[0-9a-f-]{36}/$"))
    expect(page.locator("#messages > article")).to_have_count(2)
    user, reply = last_pair(page)
    expect_complete(page, reply)
    expect(page.locator(f"#msg-{user} .msg-files .file-name")).to_have_text(["plan.txt"])
    page.goto("/")
    expect(box).to_have_value("")
    expect(page.locator("#composer-files > li")).to_have_count(0)
