"""Languages: German beside English, chosen from the browser's Accept-Language unless the
switch chose one (Django's set_language and its cookie), on pages and on the chat socket; and
the committed German catalogue (locale/de) is complete and compiled."""

from __future__ import annotations

import gettext
import json
import re
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Message
from chat.ws.consumer import language_of
from tests.helpers import session_cookie

pytestmark = pytest.mark.django_db

LOCALE = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES"
GERMAN = {"HTTP_ACCEPT_LANGUAGE": "de-DE,de;q=0.9,en;q=0.8"}


def page(client: Client, url: str, **headers: str) -> str:
    response = client.get(url, **headers)
    assert response.status_code == 200, url
    return response.content.decode()


def test_english_is_the_default(client: Client, user: User, conversation: Conversation) -> None:
    sign_in = page(client, reverse("login"))
    assert '<html lang="en">' in sign_in
    assert "<h1>Sign in</h1>" in sign_in
    client.force_login(user)
    chat = page(client, reverse("chat:conversation_detail", args=[conversation.pk]))
    assert '<html lang="en">' in chat
    assert ">Send</button>" in chat
    # A language nobody ships falls back to English too.
    assert ">Send</button>" in page(
        client,
        reverse("chat:conversation_detail", args=[conversation.pk]),
        HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9",
    )


def test_the_sign_in_page_is_german_for_a_german_browser_and_offers_the_switch(
    client: Client,
) -> None:
    html = page(client, reverse("login"), **GERMAN)
    assert '<html lang="de">' in html
    assert "<h1>Anmelden</h1>" in html
    assert '<label for="id_username">Benutzername</label>' in html
    assert "Konto erstellen" in html
    # The switch: a plain form to set_language (no script: the CSP allows none inline).
    assert f'action="{reverse("set_language")}"' in html
    assert '<option value="de" lang="de" selected>Deutsch</option>' in html
    assert '<option value="en" lang="en">English</option>' in html
    assert ">Ändern</button>" in html


def test_the_signed_in_pages_are_german(
    client: Client, user: User, conversation: Conversation
) -> None:
    Message.objects.create(conversation=conversation, role="user", content="Hallo")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Teilweise",
        status="interrupted",
        stop_reason="user_stop",
        input_tokens=12,
        output_tokens=3,
    )
    client.force_login(user)

    new_chat = page(client, reverse("chat:home"), **GERMAN)
    assert "Worüber wollen wir reden?" in new_chat
    assert ">Senden</button>" in new_chat
    assert ">Neuer Chat</a>" in new_chat

    chat = page(client, reverse("chat:conversation_detail", args=[conversation.pk]), **GERMAN)
    assert '<html lang="de">' in chat
    for german in [
        ">Senden</button>",
        'placeholder="Nachricht an Claude… (Enter sendet, Umschalt+Enter für neue Zeile)"',
        "<summary>Einstellungen</summary>",
        "<summary>Umbenennen</summary>",
        ">Neu generieren</button>",
        ">Löschen</a>",
        ">Speichern &amp; senden</button>",
        "<span>gestoppt</span>",
        "12 ein · 3 aus",
        ">Unterhaltungen</a>",
        ">Abmelden</button>",
        'aria-label="Dateien anhängen"',
    ]:
        assert german in chat, german
    # The marker is data (saved with the reply, sent to Claude), not a label: never translated.
    assert '<div class="marker">[Interrupted]</div>' in chat
    for english in [">Send</button>", ">Regenerate</button>", "<summary>Settings</summary>"]:
        assert english not in chat, english
    # The settings form's labels come from Python (gettext_lazy).
    assert ">Systemprompt</label>" in chat
    assert ">Nachdenken</label>" in chat

    listing = page(client, reverse("chat:conversation_list"), **GERMAN)
    assert "<h1>Unterhaltungen</h1>" in listing
    assert 'placeholder="Unterhaltungen suchen"' in listing

    account = page(client, reverse("chat:account"), **GERMAN)
    assert "<h1>Dein Konto</h1>" in account
    assert f"Angemeldet als {user.get_username()}." in account

    tokens = page(client, reverse("chat:api_tokens"), **GERMAN)
    assert "Du hast keine API-Tokens." in tokens


def test_plurals_follow_the_count_in_german(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    url = reverse("chat:conversation_delete", args=[conversation.pk])
    Message.objects.create(conversation=conversation, role="user", content="Eins")
    assert "und ihre 1 Nachricht löschen?" in page(client, url, **GERMAN)
    assert "and its 1 message? This cannot be undone." in page(client, url)
    Message.objects.create(conversation=conversation, role="assistant", content="Zwei")
    assert "und ihre 2 Nachrichten löschen?" in page(client, url, **GERMAN)
    assert "and its 2 messages? This cannot be undone." in page(client, url)


def test_the_switch_sets_the_language_and_it_sticks(client: Client, user: User) -> None:
    client.force_login(user)
    home = reverse("chat:home")
    response = client.post(reverse("set_language"), {"language": "de", "next": home})
    assert response.status_code == 302
    assert response["Location"] == home
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "de"
    # Chosen beats the browser: German now, whatever the browser asks for.
    assert "Worüber wollen wir reden?" in page(client, home)
    assert "Worüber wollen wir reden?" in page(client, home, HTTP_ACCEPT_LANGUAGE="en-US")
    # And back: English for a German browser once English is chosen.
    client.post(reverse("set_language"), {"language": "en", "next": home})
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert "What shall we talk about?" in page(client, home, **GERMAN)


def test_python_messages_are_translated_too(client: Client, user: User) -> None:
    client.force_login(user)
    response = client.post(reverse("chat:api_tokens"), {"name": ""}, **GERMAN)
    assert response.status_code == 400
    assert "Gib dem Token einen Namen mit 1 bis 100 Zeichen (wofür es ist)." in (
        response.content.decode()
    )
    response = client.post(reverse("chat:api_tokens"), {"name": ""})
    assert "Give the token a name of 1 to 100 characters (what it is for)." in (
        response.content.decode()
    )


def test_a_sockets_language_is_its_pages() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {"headers": list(headers)}

    assert language_of(scope()) == "en"
    assert language_of(scope((b"accept-language", b"de-DE,de;q=0.9,en;q=0.5"))) == "de"
    assert language_of(scope((b"accept-language", b"fr-FR, en;q=0.5, de;q=0.4"))) == "en"
    assert language_of(scope((b"accept-language", b"fr-FR, de;q=0.4"))) == "de"
    assert language_of(scope((b"accept-language", b"*"))) == "en"
    # The switch's cookie beats the browser, as on the pages; a bad cookie is ignored.
    both = (b"accept-language", b"de"), (b"cookie", b"sessionid=x; django_language=en")
    assert language_of(scope(*both)) == "en"
    bad = (b"accept-language", b"de"), (b"cookie", b"django_language=xx")
    assert language_of(scope(*bad)) == "de"


async def _socket(conversation: Conversation, user: User, *extra: tuple[bytes, bytes]) -> str:
    """Open the chat socket with `extra` headers, send an empty message; the notice it gets."""
    from chatsite.asgi import application

    cookie = (await session_cookie(user)).encode()
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]
    for name, value in extra:
        if name == b"cookie":
            cookie += b"; " + value
        else:
            headers.append((name, value))
    headers.append((b"cookie", cookie))
    comm = WebsocketCommunicator(application, f"/ws/chat/{conversation.pk}/", headers=headers)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    try:
        frame = {"action": "send", "message": "   ", "HEADERS": {"HX-Request": "true"}}
        await comm.send_to(text_data=json.dumps(frame))
        while True:
            received = await comm.receive_from(timeout=5)
            match = re.search(r'<div id="notice"[^>]*>(.*?)</div>', received)
            if match and match.group(1):
                return match.group(1)
    finally:
        await comm.disconnect(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_socket_notices_are_in_the_pages_language(
    user: User, conversation: Conversation
) -> None:
    assert await _socket(conversation, user) == "Type a message first."
    german = await _socket(conversation, user, (b"accept-language", b"de-DE,de;q=0.9"))
    assert german == "Schreib zuerst eine Nachricht."
    chosen = await _socket(conversation, user, (b"cookie", b"django_language=de"))
    assert chosen == "Schreib zuerst eine Nachricht."
    english = await _socket(
        conversation, user, (b"accept-language", b"de"), (b"cookie", b"django_language=en")
    )
    assert english == "Type a message first."


# --- the catalogue -------------------------------------------------------------------------


def _unquote(text: str) -> str:
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), "\\" + m.group(1)), text)


def read_po(path: Path) -> list[dict[str, object]]:
    """The entries of a .po file as makemessages writes it: their fields and flags (the
    obsolete `#~` ones left out)."""
    entries: list[dict[str, object]] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        entry: dict[str, object] = {"flags": set()}
        field = None
        for line in block.strip().splitlines():
            if line.startswith("#~"):
                break
            if line.startswith("#,"):
                entry["flags"] = {flag.strip() for flag in line[2:].split(",")}
                continue
            if line.startswith("#"):
                continue
            match = re.match(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d\])?) "(.*)"$', line)
            if match:
                field = match.group(1)
                entry[field] = _unquote(match.group(2))
            elif line.startswith('"') and field:
                entry[field] = str(entry[field]) + _unquote(line[1:-1])
        if "msgid" in entry:
            entries.append(entry)
    return entries


@pytest.mark.parametrize(("domain", "least"), [("django", 250), ("djangojs", 20)])
def test_every_german_msgid_is_translated_and_none_is_fuzzy(domain: str, least: int) -> None:
    """django: the templates and Python; djangojs: static/chat/chat.js's words."""
    entries = [e for e in read_po(LOCALE / f"{domain}.po") if e["msgid"]]
    assert len(entries) > least
    for entry in entries:
        assert "fuzzy" not in entry["flags"], entry["msgid"]
        translations = [v for k, v in entry.items() if str(k).startswith("msgstr")]
        assert translations and all(translations), f"untranslated: {entry['msgid']!r}"
        # Placeholders survive translation (a singular may leave its count out).
        wanted = set(re.findall(r"%\(\w+\)[sd]", str(entry.get("msgid_plural", entry["msgid"]))))
        assert set(re.findall(r"%\(\w+\)[sd]", str(translations[-1]))) == wanted, entry["msgid"]


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_the_committed_mo_is_the_compiled_po(domain: str) -> None:
    """users' machines may have no gettext: the .mo files are committed, and must be current."""
    with (LOCALE / f"{domain}.mo").open("rb") as mo:
        catalog = gettext.GNUTranslations(mo)._catalog  # type: ignore[attr-defined]
    expected: dict[object, str] = {}
    for entry in read_po(LOCALE / f"{domain}.po"):
        msgid = str(entry["msgid"])
        if "msgctxt" in entry:
            msgid = f"{entry['msgctxt']}\x04{msgid}"
        if "msgid_plural" in entry:
            for key, value in entry.items():
                if match := re.fullmatch(r"msgstr\[(\d)\]", str(key)):
                    expected[(msgid, int(match.group(1)))] = str(value)
        else:
            expected[msgid] = str(entry["msgstr"])
    header = expected.pop("")
    assert "Plural-Forms: nplurals=2; plural=(n != 1);" in header
    catalog.pop("", None)
    assert catalog == expected, f"locale/de/LC_MESSAGES/{domain}.mo is stale: compilemessages"


def test_the_scripts_words_come_from_the_javascript_catalog_in_the_pages_language(
    client: Client,
) -> None:
    """static/chat/chat.js reads its words from /jsi18n/ (linked before it on every page)."""
    german = client.get(reverse("javascript-catalog"), headers={"Accept-Language": "de"})
    script = german.content.decode()
    assert german.status_code == 200 and "javascript" in german["Content-Type"]
    assert '"connected": "verbunden"' in script
    assert '"Copied": "Kopiert"' in script
    english = client.get(reverse("javascript-catalog"), headers={"Accept-Language": "en"})
    assert "verbunden" not in english.content.decode()
    page = client.get(reverse("login")).content.decode()
    catalog = page.index(f'src="{reverse("javascript-catalog")}"')
    assert catalog < page.index("chat/chat.js")
