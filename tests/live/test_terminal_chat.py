"""The terminal chat (`manage.py chat`, chat/terminal.py) driven through a pseudo-terminal.

The real command runs in its own process on a temp SQLite database, against the fake Anthropic
API as its own process: Ctrl+C is a real SIGINT from the terminal, and "Ctrl+C stops the model"
is checked on the model's side of the wire (the fake saw the client hang up), on the shared
``time.monotonic()`` clock. What the terminal printed is compared with what was saved.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.testing.fake_anthropic import RequestRecord
from chat.testing.live import REDIS_URL, REPO_ROOT
from tests.live.helpers import TerminalDb

pexpect = pytest.importorskip("pexpect", reason="the terminal chat is tested through pexpect")

#: Ctrl+C → the fake sees the client hang up. Generous: a loaded CI machine, and a pty between.
CTRL_C_BUDGET = 1.0
#: How long a step may take before the test gives up: a deadline for a hung chat, not a speed
#: check (Django starting on a loaded 2-core CI machine took over 15 s once).
TIMEOUT = 60

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONVERSATION_PATH = re.compile(r"/conversations/([0-9a-f-]{36})/")


class Terminal:
    """`manage.py chat` in a pseudo-terminal, with everything it printed kept."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.output = io.StringIO()
        self.child = pexpect.spawn(
            sys.executable,
            ["manage.py", "chat", *args],
            cwd=str(REPO_ROOT),
            env=env,
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(40, 200),
        )
        self.child.logfile_read = self.output

    def expect(self, pattern: str) -> re.Match[str]:
        self.child.expect(pattern)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def prompt(self) -> None:
        self.expect(r"you> ")

    def say(self, text: str) -> None:
        self.child.sendline(text)

    def text(self) -> str:
        """The output so far as a person reads it: no colours, no terminal modes, \\n lines."""
        return ANSI.sub("", self.output.getvalue()).replace("\r\n", "\n")

    def exit_status(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.wait()
        assert self.child.exitstatus is not None, f"killed by signal {self.child.signalstatus}"
        return int(self.child.exitstatus)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@contextlib.contextmanager
def terminal(env: dict[str, str], *args: str) -> Iterator[Terminal]:
    term = Terminal(env, *args)
    try:
        yield term
    except BaseException:
        print(f"--- terminal output ---\n{term.text()}")
        raise
    finally:
        term.close()


def upstream(db: TerminalDb, marker: str, timeout: float = 10) -> RequestRecord:
    """The fake's finished record of the request whose messages contain `marker`."""
    deadline = time.monotonic() + timeout
    while True:
        matches = [r for r in db.fake.control.requests() if marker in json.dumps(r.body)]
        if matches and matches[-1].finished:
            return matches[-1]
        assert time.monotonic() < deadline, f"no finished upstream request for {marker!r}"
        time.sleep(0.05)


def redis_url() -> str | None:
    """A reachable Redis for the channel layer, or None."""
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception:
        return None
    return REDIS_URL


# --------------------------------------------------------------------------------------------


def test_ctrl_c_stops_the_reply_at_once_keeps_what_was_printed_and_the_prompt_goes_on(
    db: TerminalDb,
) -> None:
    marker = f"slow-{secrets.token_hex(4)}"
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say(f"Count slowly {marker} [[fake:interval=0.05,deltas=400]]")
        conversation_id = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"claude> ")
        term.expect(r"Token 6 of 400\.")
        pressed_at = time.monotonic()
        term.child.sendintr()
        term.expect(r"cancelled — ([\d,]+) characters saved")
        usage = term.expect(r"tokens: [^\r\n]*").group(0)
        term.prompt()

        record = upstream(db, marker)
        assert record.outcome == "client_disconnected"
        assert record.disconnected_at is not None
        cut = record.disconnected_at - pressed_at
        print(f"Ctrl+C → upstream closed: {cut * 1000:.1f} ms")
        assert 0 <= cut < CTRL_C_BUDGET
        assert record.deltas_written < 400

        # What the terminal printed for that reply is what was saved, to the character.
        printed = re.search(r"claude> (.*?)\n\[Interrupted\] cancelled", term.text(), re.DOTALL)
        assert printed is not None
        shown = printed.group(1).replace("^C", "")  # the terminal's echo of Ctrl+C
        messages = db.messages(conversation_id)
        assert [m["role"] for m in messages] == ["user", "assistant"]
        reply = messages[1]
        assert (reply["status"], reply["stop_reason"]) == ("interrupted", "user_stop")
        assert reply["content"] == shown
        assert "Token 6 of 400." in reply["content"]
        assert f"{len(shown):,} characters saved" in term.text()
        assert reply["tokens_estimated"] == 1
        assert re.match(r"tokens: \d+ in, ~\d+ out \(estimated\)", usage), usage

        # The next message gets a whole reply, with real token counts.
        term.say("And a short one [[fake:deltas=3]]")
        term.expect(r"claude> ")
        usage = term.expect(r"tokens: [^\r\n]*").group(0)
        assert re.match(r"tokens: \d+ in, 3 out( ·|$)", usage), usage
        term.prompt()
        last = db.messages(conversation_id)[-1]
        assert (last["status"], last["stop_reason"]) == ("complete", "end_turn")

        term.child.sendeof()
        assert term.exit_status() == 0


def test_ctrl_c_at_the_prompt_quits_with_status_0_and_saves_nothing(db: TerminalDb) -> None:
    before = db.query("SELECT COUNT(*) AS n FROM chat_conversation")[0]["n"]
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.child.sendintr()
        assert term.exit_status() == 0
    assert "Traceback" not in term.text()
    assert db.query("SELECT COUNT(*) AS n FROM chat_conversation")[0]["n"] == before


def test_a_conversation_made_here_is_the_users_own_and_no_one_else_can_open_it(
    db: TerminalDb,
) -> None:
    marker = f"bob-{secrets.token_hex(4)}"
    # Not a terminal: lines on stdin work too (and end at EOF).
    result = subprocess.run(
        [sys.executable, "manage.py", "chat", "--user", "bob"],
        input=f"Hello from bob {marker} [[fake:deltas=2]]\n",
        cwd=REPO_ROOT,
        env=db.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = CONVERSATION_PATH.search(result.stdout)
    assert found is not None, result.stdout
    conversation_id = found.group(1)
    assert db.owner(conversation_id) == "bob"
    assert [(m["role"], m["status"]) for m in db.messages(conversation_id)] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]

    refused = subprocess.run(
        [sys.executable, "manage.py", "chat", "--user", "alice", "--conversation", conversation_id],
        input="",
        cwd=REPO_ROOT,
        env=db.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert refused.returncode != 0
    assert f"No such conversation of alice: {conversation_id}" in refused.stderr
    assert len(db.messages(conversation_id)) == 2

    # Its owner resumes it: the title, the message count and the last exchange.
    with terminal(db.env, "--user", "bob", "--conversation", conversation_id) as term:
        term.expect(r"Resuming “Hello from bob")
        term.expect(rf"\(2 messages\): /conversations/{conversation_id}/")
        term.expect(rf"you> Hello from bob {marker}")
        term.expect(r"claude> \S")
        term.prompt()
        term.child.sendeof()
        assert term.exit_status() == 0


def test_help_lists_the_commands_and_new_starts_another_conversation(db: TerminalDb) -> None:
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say("/help")
        for command in ("/stop", "/new", "/help"):
            term.expect(rf"\n  {command} ")
        term.prompt()
        term.say("First [[fake:deltas=2]]")
        first = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"tokens: ")
        term.prompt()
        term.say("/NEW ")
        term.expect(r"New conversation: it is saved with your first message\.")
        term.prompt()
        term.say("/etc/hosts is a path, not a command [[fake:deltas=2]]")
        second = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"tokens: ")
        term.prompt()
        term.child.sendeof()
        assert term.exit_status() == 0
    assert first != second
    assert [m["role"] for m in db.messages(first)] == ["user", "assistant"]
    assert db.messages(second)[0]["content"].startswith("/etc/hosts is a path")
    assert db.owner(second) == "alice"


def test_a_reply_streaming_in_another_terminal_is_refused_and_stop_stops_it(
    db: TerminalDb,
) -> None:
    """Two terminal processes on one conversation. With Redis (the channel layer shared by
    processes) the owner answers the stop; without it, the stop closes the reply from its last
    checkpoint and the owner sees that at its next checkpoint."""
    shared = redis_url()
    env = db.env | {"CHAT_CHECKPOINT_INTERVAL": "0.5", "CHAT_STOP_ANSWER_TIMEOUT": "1"}
    if shared:
        env["REDIS_URL"] = shared
    marker = f"elsewhere-{secrets.token_hex(4)}"
    with terminal(env, "--user", "alice") as owner:
        owner.prompt()
        owner.say(f"Long one {marker} [[fake:interval=0.05,deltas=400]]")
        conversation_id = owner.expect(CONVERSATION_PATH.pattern).group(1)
        owner.expect(r"Token 3 of 400\.")
        with terminal(env, "--user", "alice", "--conversation", conversation_id) as other:
            other.expect(r"A reply is streaming in this conversation elsewhere: /stop stops it")
            other.prompt()
            other.say("Me too")
            other.expect(r"A reply is already streaming in this conversation .*/stop")
            other.prompt()
            other.say("/stop")
            if shared:
                other.expect(r"Stopped\. [\d,]+ characters of the reply were saved\.")
                owner.expect(r"\[Interrupted\] stopped elsewhere — [\d,]+ characters saved")
            else:
                other.expect(r"The server streaming that reply is gone")
                owner.expect(r"\[Interrupted\] closed elsewhere — [\d,]+ characters saved")
            other.prompt()
            other.child.sendeof()
            assert other.exit_status() == 0
        owner.prompt()
        owner.child.sendeof()
        assert owner.exit_status() == 0
    assert upstream(db, marker).outcome == "client_disconnected"
    messages = db.messages(conversation_id)
    assert [m["role"] for m in messages] == ["user", "assistant"]  # "Me too" was not saved
    assert messages[1]["status"] == "interrupted"


def test_an_upstream_error_ends_the_reply_with_the_error_printed_and_saved(
    db: TerminalDb,
) -> None:
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say("Fail please [[fake:error=overloaded_midstream,error_after=3,interval=0.01]]")
        conversation_id = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"\[Error\] Anthropic is overloaded right now\.")
        term.expect(r"tokens: \d+ in, ~\d+ out \(estimated\)")
        assert "claude> Token 1 of 300. Token 2 of 300. Token 3 of 300. \n[Error]" in term.text()
        term.prompt()
        term.child.sendeof()
        assert term.exit_status() == 0
    reply = db.messages(conversation_id)[-1]
    assert reply["status"] == "error"
    assert reply["content"].endswith("Token 3 of 300. ")
    assert "WARNING" not in term.text()  # the terminal says it; the log line would garble it


def test_thinking_is_printed_faint_before_the_answer_or_hidden_behind_a_flag(
    db: TerminalDb,
) -> None:
    env = {**db.env, "CHAT_THINKING_BUDGET": "2048"}
    with terminal(env, "--user", "alice") as term:
        term.prompt()
        term.say("Think first [[fake:thinking=3,deltas=2,interval=0.01]]")
        conversation_id = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"tokens: [^\r\n]*")
        term.prompt()
        raw = term.output.getvalue()
        assert "\x1b[2mThinking step 1 of 3. \x1b[22m" in raw  # faint
        reply = db.messages(conversation_id)[-1]
        shown = f"claude> (thinking) {reply['thinking']}\n{reply['content']}\n"
        assert shown in term.text()
        term.child.sendeof()
        assert term.exit_status() == 0

    with terminal(env, "--user", "alice", "--hide-thinking") as term:
        term.prompt()
        term.say("Think again [[fake:thinking=3,deltas=2,interval=0.01]]")
        term.expect(r"tokens: [^\r\n]*")
        term.prompt()
        assert "claude> (thinking…)\nToken 1 of 2." in term.text()
        assert "Thinking step" not in term.text()
        term.child.sendeof()
        assert term.exit_status() == 0


def test_attach_adds_files_to_the_next_message_and_refuses_what_is_not_one(
    db: TerminalDb, tmp_path: Path
) -> None:
    from chat.testing.files import HTML_PAGE, image_bytes, pdf_bytes

    (tmp_path / "shot.png").write_bytes(image_bytes(64, 48))
    (tmp_path / "spec.pdf").write_bytes(pdf_bytes(2))
    (tmp_path / "x.png").write_bytes(HTML_PAGE)
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say("/attach")
        term.expect(r"No files attached\. /attach PATH adds one to your next message\.")
        term.say(f"/attach {tmp_path / 'missing.png'}")
        term.expect(r"Cannot read [^\n]*missing\.png: No such file or directory\.")
        term.say(f"/attach {tmp_path / 'x.png'}")
        term.expect(r"x\.png says it is an image, but its content is not: refused\.")
        term.say(f"/attach {tmp_path / 'shot.png'}")
        term.expect(r"Attached shot\.png \(image, 64 x 48, [\d.]+ bytes\): it goes with your next")
        term.say(f"/ATTACH '{tmp_path / 'spec.pdf'}'")
        term.expect(r"Attached spec\.pdf \(PDF, 2 pages, \d+ bytes\)")
        term.prompt()
        term.say("/attach")
        term.expect(r"  shot\.png \(image[^\n]*\n[^\n]*  spec\.pdf \(PDF")
        term.say("What are these? [[fake:deltas=2,interval=0.01]]")
        conversation_id = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"tokens: ")
        term.prompt()
        # Sent with that message: the next one goes without them.
        term.say("/attach")
        term.expect(r"No files attached\.")
        term.child.sendeof()
        assert term.exit_status() == 0
    record = upstream(db, "What are these?")
    content = record.body["messages"][0]["content"]
    assert [block["type"] for block in content] == ["image", "document", "text"]
    files = db.query(
        "SELECT a.name, a.kind FROM chat_attachment a JOIN chat_message m ON a.message_id = m.id "
        "WHERE m.conversation_id = ? ORDER BY a.position",
        (conversation_id.replace("-", ""),),
    )
    assert [(f["name"], f["kind"]) for f in files] == [
        ("shot.png", "image"),
        ("spec.pdf", "document"),
    ]


def test_files_attached_but_never_sent_are_deleted_on_quitting(
    db: TerminalDb, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("some notes\n")
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say(f"/attach {tmp_path / 'notes.txt'}")
        term.expect(r"Attached notes\.txt")
        term.prompt()
        term.child.sendeof()
        assert term.exit_status() == 0
    unsent = db.query("SELECT name FROM chat_attachment WHERE message_id IS NULL")
    assert unsent == []


def test_ctrl_d_typed_while_a_reply_prints_quits_once_the_reply_has_ended(db: TerminalDb) -> None:
    """Ctrl+D during a reply means "quit after this": the reply runs to its end (Ctrl+D is not
    Ctrl+C), then the chat exits with status 0 instead of waiting at a new prompt. A line typed
    and entered during the reply is sent first, as it always was."""
    marker = f"eof-{secrets.token_hex(4)}"
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say(f"Count {marker} [[fake:interval=0.05,deltas=30]]")
        conversation_id = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"Token 3 of 30\.")
        term.child.sendeof()
        term.expect(r"Token 30 of 30\.")
        term.expect(r"tokens: [^\r\n]*")
        ended = term.child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=TIMEOUT)
        assert ended == 0, "Ctrl+D was lost: the chat waits at a new prompt"
        term.child.wait()
        assert term.child.exitstatus == 0
    assert "Traceback" not in term.text()
    assert term.text().endswith("you> \n")  # quit as Ctrl+D at the prompt does
    reply = db.messages(conversation_id)[-1]
    assert (reply["status"], reply["stop_reason"]) == ("complete", "end_turn")
    assert upstream(db, marker).outcome != "client_disconnected"

    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say(f"First {marker} [[fake:interval=0.05,deltas=30]]")
        conversation_id = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"Token 3 of 30\.")
        term.say("Then this one [[fake:deltas=2]]")
        term.child.sendeof()
        term.expect(r"Token 30 of 30\.")
        term.expect(r"you> Then this one")
        term.expect(r"Token 2 of 2\.")
        term.expect(r"tokens: [^\r\n]*")
        ended = term.child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=TIMEOUT)
        assert ended == 0, "Ctrl+D was lost: the chat waits at a new prompt"
        term.child.wait()
        assert term.child.exitstatus == 0
    texts = [m["content"] for m in db.messages(conversation_id) if m["role"] == "user"]
    assert texts == [
        f"First {marker} [[fake:interval=0.05,deltas=30]]",
        "Then this one [[fake:deltas=2]]",
    ]


def test_text_ended_by_ctrl_d_during_a_reply_waits_at_the_prompt_to_be_finished(
    db: TerminalDb,
) -> None:
    """Text then Ctrl+D during a reply is not an end of file (nor sent): the next prompt holds
    it to go on typing, as readline keeps text at the prompt on Ctrl+D. (So it did before the
    Ctrl+D fix; this keeps read_line's part-line branch to it.)"""
    marker = f"part-{secrets.token_hex(4)}"
    with terminal(db.env, "--user", "alice") as term:
        term.prompt()
        term.say(f"Count {marker} [[fake:interval=0.05,deltas=30]]")
        conversation_id = term.expect(CONVERSATION_PATH.pattern).group(1)
        term.expect(r"Token 3 of 30\.")
        term.child.send("Half a")
        term.child.sendeof()
        term.expect(r"tokens: [^\r\n]*")
        term.expect(r"you> Half a")
        term.say(" thought [[fake:deltas=2]]")
        term.expect(r"Token 2 of 2\.")
        term.prompt()
        term.child.sendeof()
        assert term.exit_status() == 0
    texts = [m["content"] for m in db.messages(conversation_id) if m["role"] == "user"]
    assert texts[-1] == "Half a thought [[fake:deltas=2]]"
