"""Composer commands over the real socket: /stop, /new, /help; other slash words are text. And
`make run`'s management command that prints where to sign in."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer
from chat.testing.live import REPO_ROOT
from tests.helpers import QUICK, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)


async def user_texts(conversation: Conversation) -> list[str]:
    return [m.content async for m in Message.objects.filter(conversation=conversation, role="user")]


@pytest.mark.parametrize("action", ["send", "stop_and_send"])
async def test_slash_stop_stops_the_reply_and_is_not_saved_as_a_message(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    action: str,
) -> None:
    sock = await chat_socket(conversation, user)
    reply = (await start_slow_reply(sock, fake_anthropic, "Write at length")).reply_id
    # Enter while a reply streams sends stop_and_send; the button on an idle page sends send.
    await sock.send(action, "  /STOP ")
    assert await sock.finished(reply) == "interrupted"
    await fake_anthropic.await_disconnect(fake_anthropic.requests[-1])
    saved = await Message.objects.aget(pk=reply)
    assert saved.stop_reason == "user_stop" and saved.content == sock.text_sent(reply)
    assert await user_texts(conversation) == ["Write at length"]
    # The composer was emptied: the command was done.
    assert any('id="composer-input"' in f and "hx-swap-oob" in f for f in sock.frames)


async def test_slash_new_opens_a_new_conversations_composer_and_saves_nothing(
    chat_socket: SocketFactory, conversation: Conversation, user: User
) -> None:
    sock = await chat_socket(conversation, user)
    await sock.send("send", "/new")
    # The composer at / makes the conversation with its first message: nothing is made yet.
    await sock.until(r'<a id="navigate" href="/">')
    assert await Conversation.objects.acount() == 1
    assert await user_texts(conversation) == []


async def test_slash_help_lists_the_commands(
    chat_socket: SocketFactory, conversation: Conversation, user: User
) -> None:
    sock = await chat_socket(conversation, user)
    await sock.send("send", "/help")
    frame = await sock.until("Commands:")
    text = frame.group(0) and sock.frames[-1]
    for command in ("/stop", "/new", "/help"):
        assert command in text
    assert await user_texts(conversation) == []


@pytest.mark.parametrize("text", ["/stopp", "/usr/bin/env", "/new chat please", "1/2 cup"])
async def test_other_slash_words_are_sent_as_ordinary_text(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    text: str,
) -> None:
    fake_anthropic.reset(QUICK)
    sock = await chat_socket(conversation, user)
    await sock.send("send", text)
    _, reply = await sock.turn_started()
    assert await sock.finished(reply) == "complete"
    assert await user_texts(conversation) == [text]
    assert re.search(r"Commands:", "".join(sock.frames)) is None


# --------------------------------------------------------------------------------------------
# `make run`'s sign-in line (manage.py ensure_demo_user): the address daphne listens on
# --------------------------------------------------------------------------------------------


def demo_sign_in(tmp_path: Path, settings: Any, *args: str) -> str:
    """Run ensure_demo_user with `args` (its password file in tmp_path); what it printed."""
    settings.BASE_DIR = tmp_path
    out = io.StringIO()
    call_command("ensure_demo_user", *args, stdout=out, no_color=True)
    return out.getvalue()


def make_run_commands(*args: str, env: dict[str, str] | None = None) -> dict[str, list[str]]:
    """What `make run` would run (make -n): the ensure_demo_user and daphne command lines."""
    base = {k: v for k, v in os.environ.items() if k not in {"HOST", "PORT", "MAKEFLAGS"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", *args],
        cwd=REPO_ROOT,
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if "ensure_demo_user" not in line and "/daphne " not in line:
            continue
        words = shlex.split(line)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # an environment assignment before the command (MALLOC_ARENA_MAX)
        if "ensure_demo_user" in words:
            found["ensure_demo_user"] = words[words.index("ensure_demo_user") + 1 :]
        elif words and words[0].endswith("/daphne"):
            found["daphne"] = words[1:]
    assert set(found) == {"ensure_demo_user", "daphne"}, result.stdout
    return found


def test_the_demo_sign_in_line_defaults_to_127_0_0_1_8000(tmp_path: Path, settings: Any) -> None:
    printed = demo_sign_in(tmp_path, settings)
    password = (tmp_path / ".demo-password").read_text().strip()
    assert f"Sign in at http://127.0.0.1:8000/ as  demo / {password}  (admin at /admin/)." in (
        printed
    )
    assert User.objects.get(username="demo").check_password(password)
    assert "ALLOWED_HOSTS" not in printed


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", "8799", "http://127.0.0.1:8799/"),
        ("localhost", "9000", "http://localhost:9000/"),
        ("0.0.0.0", "8001", "http://127.0.0.1:8001/"),  # every interface: loopback is one
        ("::", "8002", "http://[::1]:8002/"),
        ("::1", "8003", "http://[::1]:8003/"),
    ],
)
def test_the_demo_sign_in_line_names_the_host_and_port_given(
    tmp_path: Path, settings: Any, host: str, port: str, url: str
) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
    printed = demo_sign_in(tmp_path, settings, "--host", host, "--port", port)
    assert f"Sign in at {url} as  demo / " in printed
    assert "ALLOWED_HOSTS" not in printed


def test_a_host_django_would_refuse_is_pointed_out(tmp_path: Path, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    printed = demo_sign_in(tmp_path, settings, "--host", "192.168.1.20", "--port", "8000")
    assert "Sign in at http://192.168.1.20:8000/" in printed
    assert "192.168.1.20 is not in ALLOWED_HOSTS" in printed
    assert "DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost,192.168.1.20" in printed


@pytest.mark.parametrize(
    ("args", "env", "host", "port"),
    [
        ((), {}, "127.0.0.1", "8000"),
        (("PORT=8799",), {}, "127.0.0.1", "8799"),
        ((), {"PORT": "8798", "HOST": "0.0.0.0"}, "0.0.0.0", "8798"),  # from the environment
    ],
)
def test_make_run_prints_the_url_of_the_address_daphne_is_given(
    tmp_path: Path,
    settings: Any,
    args: tuple[str, ...],
    env: dict[str, str],
    host: str,
    port: str,
) -> None:
    commands = make_run_commands(*args, env=env)
    daphne = commands["daphne"]
    assert (daphne[daphne.index("-b") + 1], daphne[daphne.index("-p") + 1]) == (host, port)
    assert commands["ensure_demo_user"] == ["--host", host, "--port", port]
    # The command line make runs, run here: its URL is daphne's address.
    printed = demo_sign_in(tmp_path, settings, *commands["ensure_demo_user"])
    loopback = "127.0.0.1" if host == "0.0.0.0" else host
    assert f"Sign in at http://{loopback}:{port}/ as  demo / " in printed
