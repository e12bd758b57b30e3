"""Share links (chat/data/shares.py, chat/web/shares.py): made by the owner, a frozen copy of the
shown branch, public and read-only, never indexed, revoked to a 404.

Through Django's test client and the real services; a real Chromium opens a link signed out in
tests/browser/test_shares.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.data import services, shares
from chat.files import store
from chat.models import Conversation, Message, ShareLink
from chat.testing.files import image_bytes
from tests.helpers import assert_strict, directives

pytestmark = pytest.mark.django_db

JSON = {"Accept": "application/json"}
HTMX = {"HX-Request": "true"}


def exchange(
    conversation: Conversation,
    text: str,
    reply: str,
    *,
    attachments: Sequence[Any] = (),
    **finish: Any,
) -> tuple[Message, Message]:
    """A message and its finished reply, saved as a turn saves them."""
    asked, answer = services.turn_create(
        conversation=conversation, text=text, model="demo", attachments=attachments
    )
    finish.setdefault("status", "complete")
    finish.setdefault("stop_reason", "end_turn")
    answer = services.message_finalize(message_id=answer.pk, content=reply, **finish)
    return asked, answer


def share(client: Client, conversation: Conversation) -> str:
    """Share the conversation as a script does; the link's URL."""
    response = client.post(reverse("chat:conversation_share", args=[conversation.pk]), headers=JSON)
    assert response.status_code == 201, response.content
    url: str = response.json()["url"]
    return url


def path_of(url: str) -> str:
    return url.removeprefix("http://testserver")


def public_page(url: str) -> str:
    """The page a link opens, for someone signed out."""
    response = Client().get(path_of(url))
    assert response.status_code == 200
    return response.content.decode()


class Elements(HTMLParser):
    """Every element of a page: its tag and attributes, as a browser's parser reads them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def bubbles(html: str) -> list[str]:
    return re.findall(r'<article class="msg msg--(\w+) msg--\w+">', html)


# --- Making a link ---------------------------------------------------------------------------


def test_sharing_answers_json_with_the_links_absolute_url(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "What is the capital of France?", "**Paris**.")
    client.force_login(user)
    url = share(client, conversation)
    link = ShareLink.objects.get()
    assert url == f"http://testserver/share/{link.token}/"
    assert len(link.token) == 32 and re.fullmatch(r"[A-Za-z0-9_-]+", link.token)
    html = public_page(url)
    assert "What is the capital of France?" in html and "<strong>Paris</strong>" in html
    assert bubbles(html) == ["user", "assistant"]
    assert "Test chat" in html and "Shared on" in html and "· Stopchat" in html


def test_each_share_is_a_new_link_with_its_own_token(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    first, second = share(client, conversation), share(client, conversation)
    assert first != second
    assert len({link.token for link in ShareLink.objects.all()}) == 2


def test_a_plain_form_goes_to_the_account_page_at_the_new_link(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    response = client.post(reverse("chat:conversation_share", args=[conversation.pk]))
    link = ShareLink.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/account/#share-{link.pk}"
    page = client.get("/account/").content.decode()
    assert f'id="share-{link.pk}"' in page
    assert f'value="http://testserver/share/{link.token}/"' in page
    assert f'action="/share/{link.token}/revoke/"' in page


def test_htmx_gets_the_share_panel_with_the_url_and_a_copy_button(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    response = client.post(reverse("chat:conversation_share", args=[conversation.pk]), headers=HTMX)
    link = ShareLink.objects.get()
    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith('<details class="chat-share" id="chat-share" open>')
    assert (
        f'id="share-url" class="token-value" value="http://testserver/share/{link.token}/"' in html
    )
    assert 'data-copy-target="share-url"' in html
    assert reverse("chat:conversation_unshare", args=[conversation.pk]) in html


def test_the_conversation_page_offers_share_beside_delete(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    html = client.get(reverse("chat:conversation_detail", args=[conversation.pk])).content.decode()
    tools = html[html.index('<div class="chat-tools">') : html.index('<div class="messages"')]
    assert tools.index('id="chat-share"') < tools.index('class="chat-delete"')
    assert f'hx-post="/conversations/{conversation.pk}/share/"' in tools
    assert '<details class="chat-share" id="chat-share">' in tools  # closed at first


def test_sharing_is_refused_while_a_reply_streams_and_nothing_is_saved(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    services.turn_create(conversation=conversation, text="two", model="demo")
    client.force_login(user)
    url = reverse("chat:conversation_share", args=[conversation.pk])

    response = client.post(url, headers=JSON)
    assert response.status_code == 409
    assert response.json() == {
        "error": "A reply is streaming: share the conversation once it has finished (or stop it)."
    }
    htmx = client.post(url, headers=HTMX)
    assert htmx.status_code == 200  # htmx swaps only a 2xx: the panel says why
    assert 'role="alert" id="share-error">A reply is streaming' in htmx.content.decode()
    plain = client.post(url)
    assert plain.status_code == 409 and "A reply is streaming" in plain.content.decode()
    assert not ShareLink.objects.exists()


def test_an_empty_conversation_has_nothing_to_share(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    response = client.post(reverse("chat:conversation_share", args=[conversation.pk]), headers=JSON)
    assert response.status_code == 409
    assert response.json()["error"] == "There is nothing to share yet: send a message first."
    assert not ShareLink.objects.exists()


def test_a_user_has_at_most_the_limit_of_links(
    client: Client, user: User, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shares, "MAX_LINKS_PER_USER", 2)
    exchange(conversation, "one", "1")
    client.force_login(user)
    share(client, conversation)
    share(client, conversation)
    url = reverse("chat:conversation_share", args=[conversation.pk])
    response = client.post(url, headers=JSON)
    assert response.status_code == 409
    assert "revoke some on your account page" in response.json()["error"]
    assert ShareLink.objects.count() == 2


# --- The copy is frozen ------------------------------------------------------------------------


def test_the_link_shows_the_conversation_as_shared_whatever_happens_after(
    client: Client, user: User, conversation: Conversation
) -> None:
    first, _ = exchange(conversation, "Name a planet.", "Mars.")
    _, reply = exchange(conversation, "Another?", "Venus.")
    client.force_login(user)
    url = share(client, conversation)
    before = public_page(url)
    assert "Mars." in before and "Venus." in before

    exchange(conversation, "And a third?", "Jupiter.")  # a later message
    services.conversation_rename(conversation=conversation, title="Renamed")
    _, _, regenerated = services.turn_regenerate(
        conversation=conversation, model="demo", max_tokens=None
    )
    services.message_finalize(
        message_id=regenerated.pk, status="complete", stop_reason="end_turn", content="Saturn."
    )
    _, _, edited = services.turn_edit(
        conversation=conversation, text="A moon?", model="demo", max_tokens=None
    )
    services.message_finalize(
        message_id=edited.pk, status="complete", stop_reason="end_turn", content="Io."
    )
    Message.objects.filter(pk=reply.pk).update(content="rewritten behind its back")
    assert public_page(url) == before

    services.message_delete(conversation=conversation, message_id=first.pk)  # everything
    assert not conversation.messages.exists()
    assert public_page(url) == before
    for later in ("Jupiter", "Saturn", "Io.", "Renamed", "rewritten", "A moon?"):
        assert later not in before


def test_the_copy_is_the_shown_branch_with_each_messages_state(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(
        conversation,
        "First question",
        "An answer cut off",
        status="interrupted",
        stop_reason="user_stop",
    )
    exchange(
        conversation,
        "Second",
        "Half",
        stop_reason="max_tokens",
        thinking="Let me count.",
        thinking_ms=2400,
    )
    exchange(
        conversation,
        "Third",
        "",
        status="error",
        stop_reason="error",
        error="Anthropic is overloaded.",
    )
    _, _, newer = services.turn_regenerate(conversation=conversation, model="demo", max_tokens=None)
    services.message_finalize(
        message_id=newer.pk, status="complete", stop_reason="refusal", content="No."
    )
    client.force_login(user)
    html = public_page(share(client, conversation))

    assert bubbles(html) == ["user", "assistant"] * 3
    assert "Anthropic is overloaded." not in html  # the version no longer shown
    assert '<div class="marker">[Interrupted]</div>' in html
    assert "Cut off at the length limit." in html
    assert "Claude declined to answer this." in html
    assert "Thought for 2 s" in html and "Let me count." in html
    snapshot = ShareLink.objects.get().snapshot
    assert snapshot["version"] == 1
    assert [m["status"] for m in snapshot["messages"]] == ["complete", "interrupted"] + [
        "complete"
    ] * 4
    assert snapshot["messages"][3]["stop_note"] == "Cut off at the length limit."
    assert snapshot["messages"][3]["thinking_ms"] == 2400
    assert set(snapshot["messages"][0]) == {
        *("role", "content", "status", "stop_reason", "stop_note", "error"),
        *("thinking", "thinking_ms", "created_at", "files"),
    }


# --- Revoking ----------------------------------------------------------------------------------


def test_unsharing_revokes_every_link_to_the_conversation(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    urls = [share(client, conversation), share(client, conversation)]
    response = client.post(
        reverse("chat:conversation_unshare", args=[conversation.pk]), headers=JSON
    )
    assert response.status_code == 200 and response.json() == {"revoked": 2}
    for url in urls:
        assert Client().get(path_of(url)).status_code == 404
    assert not ShareLink.objects.exists()
    assert conversation.messages.count() == 2  # the conversation itself is untouched


def test_unsharing_from_the_panel_says_how_many_links_went(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    share(client, conversation)
    url = reverse("chat:conversation_unshare", args=[conversation.pk])
    html = client.post(url, headers=HTMX).content.decode()
    assert "Sharing stopped: 1 link revoked" in html
    assert (
        "This conversation had no share links." in client.post(url, headers=HTMX).content.decode()
    )
    plain = client.post(url)
    assert plain.status_code == 302 and plain["Location"] == "/account/#shares"


def test_revoking_one_link_leaves_the_others(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    kept, revoked = share(client, conversation), share(client, conversation)
    token = revoked.rstrip("/").rsplit("/", 1)[-1]
    response = client.post(reverse("chat:share_revoke", args=[token]))
    assert response.status_code == 302 and response["Location"] == "/account/#shares"
    assert Client().get(path_of(revoked)).status_code == 404
    assert Client().get(path_of(kept)).status_code == 200
    assert client.post(reverse("chat:share_revoke", args=[token])).status_code == 404


def test_deleting_the_conversation_deletes_its_links(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    url = share(client, conversation)
    client.post(reverse("chat:conversation_delete", args=[conversation.pk]))
    assert Client().get(path_of(url)).status_code == 404
    assert not ShareLink.objects.exists()


def test_an_unknown_or_malformed_token_is_a_404(client: Client) -> None:
    assert client.get("/share/" + "A" * 32 + "/").status_code == 404
    assert client.get("/share/" + "A" * 65 + "/").status_code == 404
    assert client.get("/share/not.a.token/").status_code == 404


# --- Owner only ----------------------------------------------------------------------------------


def test_only_the_owner_may_share_unshare_or_revoke(
    client: Client, user: User, other_user: User, conversation: Conversation
) -> None:
    exchange(conversation, "private words", "1")
    client.force_login(user)
    url = share(client, conversation)
    token = url.rstrip("/").rsplit("/", 1)[-1]
    client.force_login(other_user)
    for name, args in (
        ("chat:conversation_share", [conversation.pk]),
        ("chat:conversation_unshare", [conversation.pk]),
        ("chat:share_revoke", [token]),
    ):
        for headers in ({}, JSON, HTMX):
            response = client.post(reverse(name, args=args), headers=headers)
            assert response.status_code == 404, (name, headers)
            assert b"private words" not in response.content
    assert ShareLink.objects.count() == 1
    assert "private words" in public_page(url)
    # The other user's account page lists none of it.
    page = client.get("/account/").content.decode()
    assert token not in page and "You have not shared any conversation." in page


def test_signed_out_visitors_are_sent_to_sign_in_to_share(conversation: Conversation) -> None:
    client = Client()
    for url in (
        reverse("chat:conversation_share", args=[conversation.pk]),
        reverse("chat:conversation_unshare", args=[conversation.pk]),
        reverse("chat:share_revoke", args=["A" * 32]),
    ):
        response = client.post(url, headers=JSON)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- The public page ------------------------------------------------------------------------------

HOSTILE = [
    "<script>alert('user')</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(2))",
    '<iframe src="https://evil.example"></iframe>',
    "<style>body{display:none}</style>",
    '<a href="https://evil.example" onclick="alert(3)">x</a>',
]


def test_hostile_markdown_and_html_stays_sanitised_on_the_public_page(
    client: Client, user: User, conversation: Conversation
) -> None:
    hostile = "\n\n".join(HOSTILE)
    exchange(
        conversation,
        hostile,
        hostile + "\n\n[fine](https://example.com)",
        thinking="<script>alert('thought')</script>",
    )
    exchange(
        conversation,
        "again",
        "",
        status="error",
        stop_reason="error",
        error="<b onmouseover=alert(4)>x</b>",
    )
    services.conversation_rename(conversation=conversation, title="<script>alert('title')</script>")
    client.force_login(user)
    html = public_page(share(client, conversation))

    elements = Elements(html).found
    tags = {tag for tag, _ in elements}
    assert not tags & {"iframe", "img", "style", "b", "object", "embed"}, tags
    assert [attrs for tag, attrs in elements if tag == "script"] == [
        {"src": "/static/chat/chat.js", "defer": None}
    ]
    handlers = [(tag, name) for tag, attrs in elements for name in attrs if name.startswith("on")]
    assert handlers == []
    assert all("style" not in attrs for _, attrs in elements)
    hrefs = [attrs["href"] for tag, attrs in elements if tag == "a"]
    assert "https://example.com" in hrefs
    assert all(not (h or "").lower().startswith("javascript") for h in hrefs)
    assert 'href="https://example.com" rel="noopener noreferrer nofollow"' in html
    # The hostile text is shown, as text.
    assert "&lt;script&gt;alert(&#x27;user&#x27;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#x27;thought&#x27;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in html
    assert "&lt;b onmouseover=alert(4)&gt;x&lt;/b&gt;" in html


def test_the_public_page_asks_not_to_be_indexed_or_cached(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    url = share(client, conversation)
    response = Client().get(path_of(url))
    assert response["X-Robots-Tag"] == "noindex"
    assert '<meta name="robots" content="noindex">' in response.content.decode()
    assert "no-store" in response["Cache-Control"]  # a revoked link must not live on in a cache


def test_the_public_page_has_no_socket_no_composer_and_no_controls(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "Show me code.", "```python\nprint('hi')\n```")
    exchange(conversation, "Thanks", "You're welcome.")
    services.turn_regenerate(conversation=conversation, model="demo", max_tokens=None)
    newest = conversation.messages.order_by("-id").first()
    assert newest is not None
    services.message_finalize(
        message_id=newest.pk, status="complete", stop_reason="end_turn", content="Welcome!"
    )
    client.force_login(user)
    html = public_page(share(client, conversation))

    for absent in (
        "ws-connect", "hx-ext", "hx-post", "ws-send", "htmx", "<form", "<textarea", "<input",
        "composer", "Regenerate", "Continue", "Edit", "Delete", "version", "Sign out",
        "/conversations/", "csrf",
    ):  # fmt: skip
        assert absent not in html, absent
    # The only buttons are the code blocks' Copy (they change nothing and need no server).
    elements = Elements(html).found
    assert [attrs.get("class") for tag, attrs in elements if tag == "button"] == ["copy-btn"]
    assert not {"form", "input", "textarea", "select"} & {tag for tag, _ in elements}
    assert "Welcome!" in html and "You&#x27;re welcome." not in html


def test_attachments_are_named_without_links_to_the_files(
    client: Client, user: User, conversation: Conversation
) -> None:
    picture = store.attach(user=user, name="holiday.png", data=image_bytes())
    notes = store.attach(user=user, name="notes.md", data=b"# Notes\n")
    exchange(conversation, "Look", "Nice.", attachments=[picture.pk, notes.pk])
    client.force_login(user)
    html = public_page(share(client, conversation))

    assert '<span class="file-name">holiday.png</span>' in html
    assert '<span class="file-name">notes.md</span>' in html
    assert "/attachments/" not in html and str(picture.pk) not in html and "<img" not in html
    files = ShareLink.objects.get().snapshot["messages"][0]["files"]
    assert files == [
        {"name": "holiday.png", "kind": "image", "size": picture.size},
        {"name": "notes.md", "kind": "text", "size": 8},
    ]


def test_the_public_page_has_the_strict_policy(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "| a | b |\n|:-|-:|\n| 1 | 2 |")
    client.force_login(user)
    response = Client().get(path_of(share(client, conversation)))
    policy = directives(response["Content-Security-Policy"])
    assert_strict(policy)
    assert "'unsafe-inline'" not in policy["style-src"]
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert "<style" not in html and " style=" not in html


# --- The account page and the admin ------------------------------------------------------------


def test_the_account_page_lists_the_users_links_newest_first(
    client: Client, user: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    other = Conversation.objects.create(user=user, title="Second chat")
    exchange(other, "two", "2")
    client.force_login(user)
    share(client, conversation)
    services.conversation_rename(conversation=conversation, title="Now renamed")
    share(client, other)
    page = client.get("/account/").content.decode()
    section = page[page.index('id="shares"') :]
    assert section.index("Second chat") < section.index("Now renamed")
    assert "then titled “Test chat”" in section
    assert section.count('class="btn btn-stop"') == 2
    assert section.count("data-copy-target=") == 2


def test_the_admin_lists_share_links_read_only(
    client: Client, user: User, staff: User, conversation: Conversation
) -> None:
    exchange(conversation, "one", "1")
    client.force_login(user)
    share(client, conversation)
    link = ShareLink.objects.get()
    client.force_login(staff)
    page = client.get(reverse("admin:chat_sharelink_changelist")).content.decode()
    assert "Test chat" in page and 'class="field-owner">alice<' in page
    assert 'class="field-message_count">2<' in page
    assert client.get(reverse("admin:chat_sharelink_add")).status_code == 403
    change = client.get(reverse("admin:chat_sharelink_change", args=[link.pk])).content.decode()
    assert 'name="title"' not in change  # read-only: shown, not editable
