"""Export and import: a conversation as a Markdown transcript (the branch on the page, markers,
thinking collapsed, files named, no HTML a model could slip in) and as JSON that imports back as
an equal tree (every version, the shown choices, the files' bytes); every conversation as a zip;
owner-only; and every refused import saves nothing, neither rows nor files."""

from __future__ import annotations

import base64
import copy
import dataclasses
import io
import json
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError
from django.test import Client
from django.urls import reverse
from markdown_it import MarkdownIt

from chat.data import export, imports, services
from chat.files import store
from chat.models import Attachment, Conversation, Message
from chat.testing.conversations import add
from chat.testing.files import HTML_PAGE, image_bytes, pdf_bytes
from tests.helpers import files_in

# The views read the database in database_sync_to_async: a real transaction per test. The
# JSON and the zip are streamed from an async iterator, which the test client reads whole.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous"),
]

HOSTILE = (
    "Here you go </details><script>alert(1)</script>\n\n"
    '<img src=x onerror="alert(2)">\n\n'
    "<!-- a comment that never ends\n\n"
    "Inline <b onclick=alert(3)>bold</b> and `List<String>` in code.\n\n"
    "```python\nprint('<kept in code>')\n"  # a fence never closed
)


def _bind(message: Message, *attachments: Attachment) -> None:
    for position, attachment in enumerate(attachments):
        Attachment.objects.filter(pk=attachment.pk).update(message=message, position=position)


def build_conversation(user: User) -> dict[str, Message]:
    """A conversation with files, a regenerated reply (two versions, the second shown),
    thinking, a stop note, an interrupted reply, an edited message (its files shared), an
    error, and a hostile reply."""
    conversation = services.conversation_create(
        user=user,
        title="Trip <plans> & *notes*",
        model="claude-sonnet-4-5",
        system_prompt="Be brief.",
        thinking_budget=2048,
    )
    question = add(conversation, "user", "Plan a trip to Rome")
    _bind(
        question,
        store.attach(user=user, name="map.png", data=image_bytes(), declared_type="image/png"),
        store.attach(user=user, name="notes.md", data=b"# Notes\n- Colosseum\n"),
        store.attach(user=user, name="tickets.pdf", data=pdf_bytes(2)),
    )
    first = add(conversation, "assistant", "First answer", stop_reason="end_turn")
    Message.objects.filter(pk=first.pk).update(active=False)
    second = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="Second answer, **cut**",
        thinking="Rome has ~~~ and ``` and </details> in its thoughts",
        thinking_signature="sig-123",
        thinking_ms=3200,
        stop_reason="max_tokens",
        input_tokens=12,
        output_tokens=340,
        cache_read_input_tokens=4800,
        cache_creation_input_tokens=300,
        time_to_first_token_ms=410,
        model="claude-sonnet-4-5",
        max_tokens=4096,
        thinking_budget=2048,
    )
    follow = add(conversation, "user", "And Florence?")
    stopped = add(
        conversation,
        "assistant",
        "Florence is",
        status="interrupted",
        stop_reason="disconnect",
        output_tokens=3,
        tokens_estimated=True,
    )
    # An edited message: the first version keeps its reply; the second shares its file.
    edited_from = add(conversation, "user", "Venice, with this")
    _bind(edited_from, store.attach(user=user, name="venice.png", data=image_bytes(8, 8)))
    add(conversation, "assistant", "Venice reply")
    Message.objects.filter(pk=edited_from.pk).update(active=False)
    edited = Message.objects.create(
        conversation=conversation, parent=stopped, role="user", content="Venice, edited"
    )
    for attachment in edited_from.attachments.all():
        Attachment.objects.create(
            user=user,
            message=edited,
            name=attachment.name,
            kind=attachment.kind,
            media_type=attachment.media_type,
            size=attachment.size,
            file=attachment.file.name,
            thumbnail=attachment.thumbnail.name,
        )
    hostile = add(conversation, "assistant", HOSTILE)
    add(conversation, "user", "Once more")
    failed = add(
        conversation,
        "assistant",
        "",
        status="error",
        stop_reason="error",
        error="Anthropic rejected the request: <b>bad</b> [link](javascript:x)",
    )
    return {
        "first": first,
        "second": second,
        "follow": follow,
        "stopped": stopped,
        "edited": edited,
        "hostile": hostile,
        "failed": failed,
    }


@pytest.fixture
def owner(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def _conversation(user: User) -> Conversation:
    return Conversation.objects.get(user=user)


def _get_md(client: Client, conversation: Conversation) -> str:
    response = client.get(
        reverse("chat:conversation_export_md", kwargs={"conversation_id": conversation.pk})
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    return response.content.decode()


def _get_json(client: Client, conversation: Conversation) -> dict[str, Any]:
    response = client.get(
        reverse("chat:conversation_export_json", kwargs={"conversation_id": conversation.pk})
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = b"".join(response)
    assert int(response["Content-Length"]) == len(data)
    return json.loads(data)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(name for name, _ in attrs)


def _rendered(text: str) -> tuple[str, _Tags]:
    """The transcript as a Markdown viewer shows it (CommonMark with raw HTML on)."""
    html = MarkdownIt("commonmark").render(text)
    tags = _Tags()
    tags.feed(html)
    return html, tags


# --- Markdown ---------------------------------------------------------------------------------


def test_markdown_is_the_shown_branch_with_roles_times_markers_and_files(
    owner: Client, user: User
) -> None:
    built = build_conversation(user)
    conversation = _conversation(user)
    response = owner.get(
        reverse("chat:conversation_export_md", kwargs={"conversation_id": conversation.pk})
    )
    assert response["Content-Disposition"] == 'attachment; filename="trip-plans-notes.md"'
    text = response.content.decode()
    html, _ = _rendered(text)

    assert text.startswith("# Trip \\<plans\\> \\& \\*notes\\*\n")
    assert "<h1>Trip &lt;plans&gt; &amp; *notes*</h1>" in html
    assert "- Model: claude-sonnet-4-5" in text and "- Created: " in text
    assert "Messages: 8 shown (11 with every version)" in text
    # The branch on the page: the second reply, the edited message; not the versions behind.
    assert "Second answer, **cut**" in text and "Venice, edited" in text
    assert "First answer" not in text and "Venice reply" not in text
    assert text.count("### User · ") == 4 and text.count("### Claude · ") == 4
    created = built["second"].created_at.strftime("%Y-%m-%d %H:%M UTC")
    assert f"### Claude · {created}" in text
    # Versions, thinking collapsed (fenced), the stop note, [Interrupted], the error.
    assert text.count("*Version 2 of 2 (every version is in the JSON export).*") == 2
    assert "<details><summary>Thinking (3 s)</summary>\n\n~~~~text\nRome has ~~~" in text
    assert "<details><summary>Thinking (3 s)</summary>" in html
    assert "</details> in its thoughts" in html.replace("&lt;/details&gt;", "</details>")
    assert "> Cut off at the length limit." in text
    assert "**\\[Interrupted\\]** (stopped: nobody was watching)" in text
    assert "<strong>[Interrupted]</strong> (stopped: nobody was watching)" in html
    assert "> **Error:** Anthropic rejected the request: \\<b\\>bad\\</b\\>" in text
    # Files named, with type and size, on the message they came with (and its edit).
    assert "- map.png (image/png, " in text and "- notes.md (text/markdown, 20 bytes)" in text
    assert "- tickets.pdf (application/pdf, " in text
    assert text.count("- venice.png (image/png, ") == 1
    assert "System prompt:\n\n~~~text\nBe brief.\n~~~" in text


@pytest.mark.parametrize(
    ("title", "disposition"),
    [
        ("Café ☕ notes", "attachment; filename*=utf-8''caf%C3%A9-notes.md"),
        ("../../etc/passwd", 'attachment; filename="etcpasswd.md"'),
        ('a"b\r\nX-Evil: 1', 'attachment; filename="ab-x-evil-1.md"'),
        ("", 'attachment; filename="conversation.md"'),
    ],
)
def test_the_file_name_comes_from_the_title_cleaned(
    owner: Client, user: User, title: str, disposition: str
) -> None:
    conversation = services.conversation_create(user=user, title=title)
    response = owner.get(
        reverse("chat:conversation_export_md", kwargs={"conversation_id": conversation.pk})
    )
    assert response["Content-Disposition"] == disposition


def test_hostile_model_text_cannot_put_html_into_the_markdown_or_break_out_of_its_message(
    owner: Client, user: User
) -> None:
    build_conversation(user)
    text = _get_md(owner, _conversation(user))
    html, tags = _rendered(text)
    # The only HTML a viewer finds is the transcript's own: one collapsed thinking.
    assert set(tags.tags) <= {"h1", "h3", "ul", "li", "p", "hr", "pre", "code", "em", "strong",
                              "details", "summary", "blockquote"}  # fmt: skip
    assert tags.tags.count("details") == 1
    assert set(tags.attrs) <= {"class"}  # (a code block's language)
    assert "<script" not in html and "<img" not in html and "<b " not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Code keeps its own text, unescaped: a line with no HTML on it is left as it was.
    assert "print('<kept in code>')" in text
    assert "print('&lt;kept in code&gt;')" in html  # (as a code block shows `<`)
    assert "`List&lt;String>`" in text  # (that line had a tag: escaped whole, and still safe)
    # The fence the reply left open is closed: the next message is still a heading.
    assert "<h3>User · " in html.rsplit("print(", 1)[1]
    assert "<p>Once more</p>" in html


def test_without_html_leaves_markdown_and_code_alone_and_escapes_every_tag() -> None:
    plain = "# Title\n\nSome *text*, `a < b`, and\n\n```html\n<div>code</div>\n```\n"
    assert export.without_html(plain) == plain
    sneaky = "<!-- x -->\n    <script>alert(1)</script>\n"
    cleaned = export.without_html(sneaky)
    assert "<" not in cleaned.split("```")[0]
    _, tags = _rendered(cleaned)
    assert tags.tags in ([], ["p"], ["pre", "code"], ["p", "pre", "code"])


# --- JSON: export, import, the same tree ------------------------------------------------------


def _import(client: Client, data: bytes, name: str = "export.json") -> Any:
    upload = SimpleUploadedFile(name, data, content_type="application/json")
    return client.post(reverse("chat:import"), {"file": upload})


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    """An export without what an import makes new: the export's time, the last change."""
    document = copy.deepcopy(document)
    document.pop("exported_at")
    document["conversation"].pop("updated_at")
    return document


def test_json_has_every_version_with_local_ids_parents_active_and_the_files_bytes(
    owner: Client, user: User
) -> None:
    built = build_conversation(user)
    document = _get_json(owner, _conversation(user))
    assert (document["format"], document["version"]) == ("stopchat.conversation", 1)
    assert document["conversation"] | {"created_at": "", "updated_at": ""} == {
        "title": "Trip <plans> & *notes*",
        "model": "claude-sonnet-4-5",
        "system_prompt": "Be brief.",
        "thinking_budget": 2048,
        "created_at": "",
        "updated_at": "",
    }
    messages = document["messages"]
    assert [m["id"] for m in messages] == list(range(1, 12))
    assert [m["parent"] for m in messages] == [None, 1, 1, 3, 4, 5, 6, 5, 8, 9, 10]
    assert [m["id"] for m in messages if not m["active"]] == [2, 6]
    second = next(m for m in messages if m["content"] == "Second answer, **cut**")
    assert second | {"created_at": None} == {
        "id": 3,
        "parent": 1,
        "active": True,
        "role": "assistant",
        "content": "Second answer, **cut**",
        "status": "complete",
        "stop_reason": "max_tokens",
        "error": "",
        "thinking": "Rome has ~~~ and ``` and </details> in its thoughts",
        "thinking_signature": "sig-123",
        "thinking_ms": 3200,
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "thinking_budget": 2048,
        "input_tokens": 12,
        "output_tokens": 340,
        "cache_read_input_tokens": 4800,
        "cache_creation_input_tokens": 300,
        "tokens_estimated": False,
        "time_to_first_token_ms": 410,
        "created_at": None,
        "finished_at": None,
        "attachments": [],
    }
    assert second["created_at"] == built["second"].created_at.isoformat()
    files = messages[0]["attachments"]
    assert [(f["name"], f["kind"], f["media_type"]) for f in files] == [
        ("map.png", "image", "image/png"),
        ("notes.md", "text", "text/markdown"),
        ("tickets.pdf", "document", "application/pdf"),
    ]
    stored = list(Attachment.objects.filter(message__role="user").order_by("created_at"))
    assert base64.b64decode(files[1]["data"]) == b"# Notes\n- Colosseum\n"
    assert base64.b64decode(files[0]["data"]) == store.read(stored[0])
    assert [f["size"] for f in files] == [len(base64.b64decode(f["data"])) for f in files]


def test_a_json_export_imports_back_as_an_equal_tree_with_the_same_files(
    owner: Client, user: User, attachments_dir: Path
) -> None:
    build_conversation(user)
    original = _conversation(user)
    exported = _get_json(owner, original)
    response = _import(owner, json.dumps(exported).encode())
    assert response.status_code == 302
    imported = Conversation.objects.exclude(pk=original.pk).get(user=user)
    assert response["Location"] == reverse(
        "chat:conversation_detail", kwargs={"conversation_id": imported.pk}
    )
    # Export the import: the same document (texts, versions, active choices, times, files).
    again = _get_json(owner, imported)
    assert _comparable(again) == _comparable(exported)
    assert imported.updated_at > original.updated_at  # (first in the sidebar)
    # Its files are its own (stored anew, under the user's id); the edit's copy shares its file.
    rows = list(Attachment.objects.filter(message__conversation=imported))
    assert len(rows) == 5 and all(a.user_id == user.pk for a in rows)
    names = {a.file.name for a in rows}
    assert len(names) == 4 and not names & {
        a.file.name for a in Attachment.objects.filter(message__conversation=original)
    }
    assert all(a.thumbnail.name for a in rows if a.kind == "image")
    # The page shows the same branch.
    page = owner.get(response["Location"]).content.decode()
    assert "Second answer" in page and "Venice, edited" in page and "First answer" not in page


def test_a_streaming_reply_is_exported_as_it_stands_as_interrupted(
    owner: Client, user: User, conversation: Conversation
) -> None:
    add(conversation, "user", "Tell me a story")
    add(conversation, "assistant", "Once upon", status="streaming", thinking_budget=0)
    document = _get_json(owner, conversation)
    assert [(m["content"], m["status"]) for m in document["messages"]] == [
        ("Tell me a story", "complete"),
        ("Once upon", "interrupted"),
    ]
    assert "still streaming when exported" in _get_md(owner, conversation)
    assert _import(owner, json.dumps(document).encode()).status_code == 302
    imported = Conversation.objects.exclude(pk=conversation.pk).get(user=user)
    assert list(imported.messages.values_list("status", flat=True)) == ["complete", "interrupted"]


def test_a_json_export_of_a_file_gone_from_the_storage_leaves_it_out(
    owner: Client, user: User, conversation: Conversation, attachments_dir: Path
) -> None:
    message = add(conversation, "user", "see")
    attachment = store.attach(user=user, name="a.txt", data=b"hello")
    _bind(message, attachment)
    (attachments_dir / attachment.file.name).unlink()
    document = _get_json(owner, conversation)
    assert document["messages"][0]["attachments"] == []
    assert "- a.txt (text/plain, 5 bytes)" in _get_md(owner, conversation)


# --- Export all -------------------------------------------------------------------------------


def test_export_all_is_a_zip_of_each_of_the_users_conversations_as_json_and_markdown(
    owner: Client, user: User, other_user: User
) -> None:
    build_conversation(user)
    same_title = services.conversation_create(user=user, title="Trip <plans> & *notes*")
    add(same_title, "user", "A second one")
    services.conversation_create(user=other_user, title="Mallory's secret")
    response = owner.get(reverse("chat:export_all"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert re.fullmatch(
        r'attachment; filename="stopchat-\d{4}-\d\d-\d\d\.zip"', response["Content-Disposition"]
    )
    data = b"".join(response)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = sorted(archive.namelist())
        assert len(names) == 4 and len({n.rsplit(".", 1)[0] for n in names}) == 2
        documents = [json.loads(archive.read(n)) for n in names if n.endswith(".json")]
        texts = [archive.read(n).decode() for n in names if n.endswith(".md")]
    assert all(re.fullmatch(r"conversations/trip-plans-notes-[0-9a-f]{8}\.(json|md)", n)
               for n in names)  # fmt: skip
    assert sorted(len(d["messages"]) for d in documents) == [1, 11]
    assert all(t.startswith("# Trip") for t in texts)
    assert b"Mallory" not in data
    for conversation in Conversation.objects.filter(user=user):
        assert _comparable(_get_json(owner, conversation)) in [_comparable(d) for d in documents]


def test_export_all_with_no_conversations_is_an_empty_zip(owner: Client) -> None:
    response = owner.get(reverse("chat:export_all"))
    data = b"".join(response)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == []


# --- Owner only ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chat:conversation_export_md", "chat:conversation_export_json"])
def test_an_export_is_for_its_owner_only(
    client: Client, user: User, other_user: User, name: str
) -> None:
    build_conversation(user)
    url = reverse(name, kwargs={"conversation_id": _conversation(user).pk})
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client.force_login(other_user)
    response = client.get(url)
    assert response.status_code == 404 and b"Rome" not in response.content


def test_the_conversation_page_offers_the_exports_and_the_account_page_export_all_and_import(
    owner: Client, user: User, conversation: Conversation
) -> None:
    page = owner.get(
        reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
    ).content.decode()
    for name in ("chat:conversation_export_md", "chat:conversation_export_json"):
        assert f'href="{reverse(name, kwargs={"conversation_id": conversation.pk})}"' in page
    account = owner.get(reverse("chat:account")).content.decode()
    assert f'href="{reverse("chat:export_all")}"' in account
    assert f'action="{reverse("chat:import")}" enctype="multipart/form-data"' in account
    assert 'name="csrfmiddlewaretoken"' in account
    assert f"Up to {imports.MAX_IMPORT_BYTES // (1024 * 1024)} MB." in account


# --- Import refusals: a clear reason, and nothing saved -------------------------------------


def _export_of(user: User) -> dict[str, Any]:
    """A small valid export: a question with a file, and a reply in two versions."""
    conversation = services.conversation_create(user=user, title="Small")
    question = add(conversation, "user", "Hi")
    _bind(question, store.attach(user=user, name="dot.png", data=image_bytes(4, 4)))
    old = add(conversation, "assistant", "Hello")
    Message.objects.filter(pk=old.pk).update(active=False)
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="Hello again"
    )
    client = Client()
    client.force_login(user)
    document = _get_json(client, conversation)
    conversation.delete()
    return document


def _broken(document: dict[str, Any], change: str) -> bytes:
    doc = copy.deepcopy(document)
    messages = doc["messages"]
    if change == "not json":
        return b"{not json"
    if change == "not an object":
        return b"[1, 2, 3]"
    if change == "wrong format":
        doc["format"] = "chatgpt.conversations"
    elif change == "wrong version":
        doc["version"] = 2
    elif change == "missing parent":
        messages[1]["parent"] = 99
    elif change == "cycle":
        messages[0]["parent"] = 3  # 1 → 3 → 1
    elif change == "own parent":
        messages[1]["parent"] = 2
    elif change == "duplicate id":
        messages[2]["id"] = 2
    elif change == "bad role":
        messages[1]["role"] = "system"
    elif change == "streaming":
        messages[2]["status"] = "streaming"
    elif change == "user not complete":
        messages[0]["status"] = "error"
    elif change == "bad type":
        messages[1]["content"] = ["not", "text"]
    elif change == "bad count":
        messages[1]["output_tokens"] = -5
    elif change == "bad time":
        messages[1]["created_at"] = "yesterday"
    elif change == "two shown":
        messages[1]["active"] = True
    elif change == "lying attachment":
        messages[0]["attachments"].append(
            {
                "name": "cat.png",
                "kind": "image",
                "media_type": "image/png",
                "data": base64.b64encode(HTML_PAGE).decode(),
            }
        )
    elif change == "kind lie":
        messages[0]["attachments"][0]["kind"] = "document"
    elif change == "not base64":
        messages[0]["attachments"][0]["data"] = "!!!not base64!!!"
    elif change == "size lie":
        messages[0]["attachments"][0]["size"] = 1
    elif change == "file on a reply":
        messages[1]["attachments"] = messages[0]["attachments"]
    elif change == "no messages":
        doc["messages"] = []
    elif change == "too many files":
        messages[0]["attachments"] = messages[0]["attachments"] * 2001
    elif change == "NUL":
        messages[1]["content"] = "a\x00b"
    return json.dumps(doc).encode()


REFUSALS = [
    ("not json", "That file is not JSON."),
    ("not an object", "not an exported conversation"),
    ("wrong format", 'its "format" is not "stopchat.conversation"'),
    ("wrong version", "version 2 of the format; this app reads version 1"),
    ("missing parent", "follows the message 99, which is not in the file"),
    ("cycle", "parents form a loop"),
    ("own parent", "parents form a loop"),
    ("duplicate id", "has the id 2, as an earlier one does"),
    ("bad role", 'has the role "system"; a message is "user" or "assistant"'),
    ("streaming", 'never "streaming"'),
    ("user not complete", 'a user\'s message is always "complete"'),
    ("bad type", '"content" should be text'),
    ("bad count", '"output_tokens" should be a whole number'),
    ("bad time", '"created_at" should be a date and time'),
    ("two shown", "Two versions of one message are both marked shown"),
    ("lying attachment", "cat.png says it is an image, but its content is not"),
    ("kind lie", "dot.png is listed as a PDF, but its content is an image"),
    ("not base64", '"data" is not base64'),
    ("size lie", '"size" says 1, but its data holds'),
    ("file on a reply", "only the user's messages have files"),
    ("NUL", '"content" contains a NUL character'),
    ("no messages", "The export has no messages"),
    ("too many files", "an import can have at most 2,000"),
]


def _nothing_saved(user: User, attachments_dir: Path) -> None:
    assert not Conversation.objects.exists()
    assert not Message.objects.exists() and not Attachment.objects.exists()
    assert files_in(attachments_dir) == []


def _refusal_shown(client: Client, response: Any) -> str:
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:account") + "#data"
    page = client.get(response["Location"]).content.decode()
    match = re.search(r'<div class="form-error" role="alert" id="import-error">(.*?)</div>', page)
    assert match is not None, page
    assert match.group(1).startswith("<strong>Nothing was imported.</strong> ")
    return match.group(1)


@pytest.mark.parametrize(("change", "says"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_bad_import_is_refused_with_its_reason_and_saves_nothing(
    owner: Client, user: User, attachments_dir: Path, change: str, says: str
) -> None:
    document = _export_of(user)
    _nothing_saved(user, attachments_dir)
    assert _import(owner, json.dumps(document).encode()).status_code == 302  # (it is good)
    Conversation.objects.all().delete()
    _nothing_saved(user, attachments_dir)

    response = _import(owner, _broken(document, change))
    error = _refusal_shown(owner, response)
    assert says in error.replace("&quot;", '"').replace("&#x27;", "'"), error
    _nothing_saved(user, attachments_dir)
    # Said once: a reload shows the form afresh.
    assert 'id="import-error"' not in owner.get(reverse("chat:account")).content.decode()


def test_an_import_over_the_limit_is_refused_by_its_size(
    owner: Client, user: User, attachments_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = json.dumps(_export_of(user)).encode()
    # Said by its length before the body is read …
    response = owner.post(
        reverse("chat:import"),
        {"file": SimpleUploadedFile("huge.json", b"{}")},
        CONTENT_LENGTH=str(200 * 1024 * 1024),
    )
    assert "That file is too large: an import can be at most 100.0 MB." in _refusal_shown(
        owner, response
    )
    # … and by the file's own size.
    monkeypatch.setattr(imports, "MAX_IMPORT_BYTES", len(document) - 1)
    error = _refusal_shown(owner, _import(owner, document, name="big.json"))
    assert re.search(r"big\.json is [\d.]+ KB; an import can be at most [\d.]+ KB\.", error)
    _nothing_saved(user, attachments_dir)


def test_an_import_with_no_file_says_to_choose_one(owner: Client) -> None:
    response = owner.post(reverse("chat:import"), {})
    assert "Choose a file to import" in _refusal_shown(owner, response)


def test_an_import_that_fails_in_the_database_deletes_the_files_it_stored(
    user: User, attachments_dir: Path
) -> None:
    document = _export_of(user)
    _nothing_saved(user, attachments_dir)
    plan = imports.parse(json.dumps(document).encode())
    assert len(plan.files) == 1
    # A user's message that is not complete breaks a database constraint, after the files
    # were stored (parse would have refused it).
    broken = dataclasses.replace(
        plan,
        messages=(
            dataclasses.replace(
                plan.messages[0], fields=plan.messages[0].fields | {"status": "error"}
            ),
            *plan.messages[1:],
        ),
    )
    with pytest.raises(IntegrityError):
        imports.conversation_import(user=user, plan=broken)
    _nothing_saved(user, attachments_dir)
    conversation = imports.conversation_import(user=user, plan=plan)
    assert conversation.messages.count() == 3 and len(files_in(attachments_dir)) == 2
