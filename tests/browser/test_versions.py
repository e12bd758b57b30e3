"""Versions (`< k/N >` after Regenerate and Edit) and deleting a message, in a real Chromium
against daphne and the fake Anthropic (fixtures in tests/browser/conftest.py).

Each reply's text is set on the fake (``set_config(text=...)``) before the turn that asks for it,
so that the versions of one exchange can be told apart on the page and in what Claude is sent.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import pytest
from playwright.sync_api import Locator, Page, expect

from chat.testing.fake_anthropic import FakeAnthropicControl, RequestRecord
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
    send_with_enter,
    sign_in,
    upstream_request,
    wait_for_text,
)
from tests.helpers import QUICK_REPLY, SLOW_REPLY

pytestmark = pytest.mark.browser

#: Quick replies for messages without a directive (a regenerated reply takes its speed from
#: the message it answers, so a message sent this way can later be answered slowly).
QUICK = {"deltas": 4, "interval": 0.01}
#: The fake's start-up pace: a reply that streams for about 6 s unless stopped.
SLOW = {"deltas": 300, "interval": 0.02}


# --- What the page shows ---------------------------------------------------------------------


def shown(page: Page) -> list[int]:
    """The ids of the bubbles on the page, oldest first."""
    return [int(i.removeprefix("msg-")) for i in article_ids(page)]


def last_reply(page: Page) -> int:
    return shown(page)[-1]


def versions(page: Page, message_id: int) -> Locator:
    return page.locator(f"#msg-{message_id} .versions")


def prev_button(page: Page, message_id: int) -> Locator:
    return page.locator(f"#msg-{message_id} .version-prev")


def next_button(page: Page, message_id: int) -> Locator:
    return page.locator(f"#msg-{message_id} .version-next")


def expect_version(page: Page, message_id: int, k: int, n: int) -> None:
    """The bubble is on the page and shows `k/n`, with < and > enabled where they lead somewhere
    (and named for screen readers)."""
    expect(page.locator(f"#msg-{message_id} .version-count")).to_have_text(f"{k}/{n}")
    group = versions(page, message_id)
    expect(group).to_have_attribute("role", "group")
    expect(group).to_have_attribute("aria-label", re.compile(r"^Versions of this (reply|message)$"))
    previous, following = prev_button(page, message_id), next_button(page, message_id)
    expect(previous).to_have_accessible_name("Previous version")
    expect(following).to_have_accessible_name("Next version")
    if k > 1:
        expect(previous).to_be_enabled()
    else:
        expect(previous).to_be_disabled()
    if k < n:
        expect(following).to_be_enabled()
    else:
        expect(following).to_be_disabled()


def regenerate(page: Page, reply: int) -> int:
    """Click Regenerate on the last reply; the new reply's id, once it is complete."""
    before = shown(page)
    assert before[-1] == reply
    page.locator(f"#msg-{reply} .regenerate-btn").click()
    expect(page.locator(f"#msg-{reply}")).to_have_count(0)
    expect(page.locator("#messages > article")).to_have_count(len(before))
    new = last_reply(page)
    assert new > reply
    expect_complete(page, new)
    return new


def edit_last(page: Page, user: int, text: str) -> tuple[int, int]:
    """Edit the last message to `text` and send it; the ids of its new version and reply."""
    count = len(shown(page))
    page.locator(f"#msg-{user} .edit-btn").click()
    editor = page.locator(f"#msg-{user} .edit-form textarea")
    expect(editor).to_be_focused()
    editor.fill(text)
    editor.press("Enter")
    expect(page.locator(f"#msg-{user}")).to_have_count(0)
    expect(page.locator("#messages > article")).to_have_count(count)
    edited, reply = shown(page)[-2:]
    assert edited > user and reply > edited
    expect(page.locator(f"#msg-{edited} .msg-body")).to_have_text(text)
    expect_complete(page, reply)
    return edited, reply


def switch(page: Page, button: Locator, to: int) -> None:
    """Click < or > and wait for the version `to` to be on the page."""
    button.click()
    expect(page.locator(f"#msg-{to}")).to_have_count(1)


def turns_sent(record: RequestRecord) -> list[tuple[str, str]]:
    """(role, text) of each message of a request to Claude, directives and all."""

    def text(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))

    return [(m["role"], text(m["content"])) for m in record.body["messages"]]


# --- Regenerate ------------------------------------------------------------------------------


def test_regenerated_replies_are_versions_the_shown_one_is_kept_and_answered_from(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    fake.set_config(text="First answer: alpha, amber, apple.")
    user, first = send_with_enter(page, f"{QUICK_REPLY} Pick a word (regen-versions)")
    expect_complete(page, first)
    expect(versions(page, first)).to_have_count(0)  # one version: no control
    fake.set_config(text="Second answer: bravo, bronze, banana.")
    second = regenerate(page, first)
    expect_version(page, second, 2, 2)
    fake.set_config(text="Third answer: charlie, cherry, cocoa.")
    third = regenerate(page, second)
    expect_version(page, third, 3, 3)
    assert body(page, third) == "Third answer: charlie, cherry, cocoa."
    expect(versions(page, user)).to_have_count(0)  # the message itself has one version

    # < twice: the first reply again, 1/3, with > the way back and < going nowhere.
    switch(page, prev_button(page, third), second)
    expect(page.locator(f"#msg-{third}")).to_have_count(0)
    expect_version(page, second, 2, 3)
    assert body(page, second) == "Second answer: bravo, bronze, banana."
    switch(page, prev_button(page, second), first)
    expect_version(page, first, 1, 3)
    assert shown(page) == [user, first]
    assert body(page, first) == "First answer: alpha, amber, apple."
    # The reply shown is still the last one: it has the reply's controls.
    expect(page.locator(f"#msg-{first} .regenerate-btn")).to_be_visible()
    # The choice is the conversation's: the page as served now says 1/3 with that text.
    served = page.request.get(f"/conversations/{conversation}/").text()
    bubble = re.search(rf'<article id="msg-{first}".*?</article>', served, re.DOTALL)
    assert bubble and 'class="version-count">1/3<' in bubble.group(0)
    assert "First answer: alpha, amber, apple." in bubble.group(0)
    assert f'id="msg-{third}"' not in served and f'id="msg-{second}"' not in served

    # A message sent from here follows version 1: that is the history Claude gets.
    fake.set_config(text="A follow-up to the first answer.")
    follow_up, follow_reply = send_with_enter(page, f"{QUICK_REPLY} And then? (after-v1)")
    expect_complete(page, follow_reply)
    sent = turns_sent(upstream_request(fake, "(after-v1)", finished=True))
    assert sent == [
        ("user", f"{QUICK_REPLY} Pick a word (regen-versions)"),
        ("assistant", "First answer: alpha, amber, apple."),
        ("user", f"{QUICK_REPLY} And then? (after-v1)"),
    ], sent
    # The reply above it still switches versions, but it is no longer the last one.
    expect_version(page, first, 1, 3)
    expect(page.locator(f"#msg-{first} .regenerate-btn")).to_be_hidden()

    # The choice survives a reload. (Reloaded while the switched reply is the last one: see
    # the test after this one.)
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    assert shown(page) == [user, first, follow_up, follow_reply]
    expect_version(page, first, 1, 3)
    assert body(page, first) == "First answer: alpha, amber, apple."

    # > on the reply: version 2, and the branch below changes with it (the new message
    # was sent under version 1, so it is not under version 2).
    switch(page, next_button(page, first), second)
    expect_version(page, second, 2, 3)
    assert shown(page) == [user, second]
    assert body(page, second) == "Second answer: bravo, bronze, banana."
    # Back to 1/3: the exchange sent under it comes back with it.
    switch(page, prev_button(page, second), first)
    expect_version(page, first, 1, 3)
    assert shown(page) == [user, first, follow_up, follow_reply]
    assert body(page, follow_reply) == "A follow-up to the first answer."

    # Every version is kept in the database (the page shows one branch of them).
    kept = [(m["id"], m["content"]) for m in live_app.messages(conversation)]
    assert [pk for pk, _ in kept] == [user, first, second, third, follow_up, follow_reply]


def test_after_a_reload_the_last_reply_keeps_its_version_control(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    fake.set_config(text="One answer.")
    _, first = send_with_enter(page, f"{QUICK_REPLY} Answer twice (reload-versions)")
    expect_complete(page, first)
    fake.set_config(text="Another answer.")
    second = regenerate(page, first)
    switch(page, prev_button(page, second), first)
    expect_version(page, first, 1, 2)

    # The served page has it; what the socket sends on connect must keep it. Wait for a frame
    # that names the reply (or 2 s, should none come), and for it to be swapped in.
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    for _ in range(40):
        if any(f'id="msg-{first}"' in frame for frame in frames):
            break
        page.wait_for_timeout(50)
    page.wait_for_timeout(100)
    assert body(page, first) == "One answer."
    expect(page.locator(f"#msg-{first} .version-count")).to_have_text("1/2", timeout=1000)


# --- Edit ------------------------------------------------------------------------------------


def test_an_edited_message_keeps_its_old_text_and_reply_as_version_one(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    old_text = f"{QUICK_REPLY} The old wording (edit-versions)"
    new_text = f"{QUICK_REPLY} The new wording (edit-versions)"
    fake.set_config(text="The answer to the old wording.")
    old, old_reply = send_with_enter(page, old_text)
    expect_complete(page, old_reply)
    fake.set_config(text="The answer to the new wording.")
    edited, new_reply = edit_last(page, old, new_text)
    expect_version(page, edited, 2, 2)
    expect(versions(page, new_reply)).to_have_count(0)  # the new text's only reply
    assert body(page, new_reply) == "The answer to the new wording."
    # Claude was asked the new text alone: the old one is another version, not history.
    sent = turns_sent(upstream_request(fake, "The new wording", finished=True))
    assert sent == [("user", new_text)], sent

    # < on the message: the old text, with its old reply under it.
    switch(page, prev_button(page, edited), old)
    expect_version(page, old, 1, 2)
    assert shown(page) == [old, old_reply]
    expect(page.locator(f"#msg-{old} .msg-body")).to_have_text(old_text)
    assert body(page, old_reply) == "The answer to the old wording."
    assert db_message(live_app, old)["content"] == old_text  # kept as it was

    # The old version is the shown branch now: Regenerate there (a button htmx swapped in)
    # answers the old text again, as a second version of its reply.
    fake.set_config(text="Another answer to the old wording.")
    again = regenerate(page, old_reply)
    expect_version(page, again, 2, 2)
    expect_version(page, old, 1, 2)
    asked_again = fake.requests(3, finished=True)[-1]
    assert turns_sent(asked_again) == [("user", old_text)], turns_sent(asked_again)

    # > back to the new text, with its own reply.
    switch(page, next_button(page, old), edited)
    expect_version(page, edited, 2, 2)
    assert shown(page) == [edited, new_reply]


# --- While a reply streams -------------------------------------------------------------------


def test_versions_cannot_be_switched_while_a_reply_streams(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    fake.set_config(text="Version one of the answer.", **QUICK)
    user, first = send_with_enter(page, "A question (stream-lock)")
    expect_complete(page, first)
    fake.set_config(text="Version two of the answer.")
    second = regenerate(page, first)
    expect_version(page, second, 2, 2)

    # A slow reply to a new message: the < above it takes no click while it streams.
    fake.set_config(text=None, **SLOW)
    _, streaming = send_with_enter(page, f"{SLOW_REPLY} Talk a while (stream-lock)")
    expect_streaming(page, streaming)
    previous = prev_button(page, second)
    expect(previous).to_have_css("pointer-events", "none")
    box = previous.bounding_box()
    assert box is not None
    hit = page.evaluate(
        "([x, y]) => { const el = document.elementFromPoint(x, y);"
        " return el ? el.closest('.version-prev') !== null : false; }",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert not hit, "the < button still takes the pointer while a reply streams"
    with pytest.raises(Exception, match="Timeout"):
        previous.click(timeout=600)

    # The keyboard still reaches it: the server refuses with a notice, and nothing switches.
    shown_before = wait_for_text(page, streaming, 20)
    previous.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text(
        "A reply is streaming: stop it or let it finish before switching versions."
    )
    expect_version(page, second, 2, 2)
    expect(page.locator(f"#msg-{first}")).to_have_count(0)
    expect_streaming(page, streaming)
    # The streaming reply goes on in its bubble, and ends as it was saved.
    wait_for_text(page, streaming, len(shown_before) + 20)
    page.locator("#stop-button").click()
    expect_interrupted(page, streaming)
    assert body(page, streaming) == db_message(live_app, streaming)["content"]

    # Once it ended, < works again.
    expect(previous).to_have_css("pointer-events", "auto")
    switch(page, previous, first)
    expect_version(page, first, 1, 2)
    assert shown(page) == [user, first]


def test_a_refused_switch_keeps_the_streaming_text_on_the_page(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    fake.set_config(text="Version one.", **QUICK)
    _, first = send_with_enter(page, "A question (refused-switch)")
    expect_complete(page, first)
    fake.set_config(text="Version two.")
    second = regenerate(page, first)
    _, streaming = send_with_enter(page, f"{SLOW_REPLY} Talk a while (refused-switch)")
    expect_streaming(page, streaming)
    before = wait_for_text(page, streaming, 20)
    prev_button(page, second).focus()  # the keyboard reaches it; the pointer does not
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text("A reply is streaming")
    after = body(page, streaming)
    page.locator("#stop-button").click()
    expect_interrupted(page, streaming)
    assert after.startswith(before), f"{len(before)} characters shown, then {len(after)}"


def test_a_streaming_reply_shows_its_version_count_with_the_buttons_disabled(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    new_chat(page)
    fake.set_config(text="The first take.", **QUICK)
    _, first = send_with_enter(page, "Answer slowly the second time (streaming-version)")
    expect_complete(page, first)
    fake.set_config(text=None, **SLOW)
    page.locator(f"#msg-{first} .regenerate-btn").click()
    expect(page.locator(f"#msg-{first}")).to_have_count(0)
    second = last_reply(page)
    expect_streaming(page, second)
    expect(page.locator(f"#msg-{second} .version-count")).to_have_text("2/2")
    expect(prev_button(page, second)).to_be_disabled()
    expect(next_button(page, second)).to_be_disabled()
    wait_for_text(page, second, 20)
    page.locator("#stop-button").click()
    expect_interrupted(page, second)
    expect_version(page, second, 2, 2)  # the final bubble: < leads to the first take


# --- Delete ----------------------------------------------------------------------------------


def test_deleting_a_message_removes_it_and_what_follows_after_a_confirmation(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    turns = []
    for n in (1, 2, 3):
        # Each reply finishes before the next message: Enter during a reply is Stop & Send.
        turns.append(send_with_enter(page, f"{QUICK_REPLY} Turn {n} (delete-middle)"))
        expect_complete(page, turns[-1][1])
    everything = [pk for turn in turns for pk in turn]
    assert shown(page) == everything
    middle = turns[1][0]

    # Every finished message has a Delete link, named for what it deletes.
    expect(page.locator("#messages a.delete-msg")).to_have_count(6)
    expect(page.locator(f"#msg-{middle} a.delete-msg")).to_have_accessible_name(
        "Delete this message"
    )
    expect(page.locator(f"#msg-{turns[1][1]} a.delete-msg")).to_have_accessible_name(
        "Delete this reply"
    )

    # Cancel leaves everything.
    page.locator(f"#msg-{middle} a.delete-msg").click()
    page.wait_for_url(re.compile(rf"/messages/{middle}/delete/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete your message")
    expect(page.locator(".quoted")).to_have_text(f"{QUICK_REPLY} Turn 2 (delete-middle)")
    expect(page.locator(".confirm-card")).to_contain_text(
        "It and the 3 messages after it will be deleted"
    )
    page.locator("#cancel-delete").click()
    page.wait_for_url(re.compile(rf"/conversations/{conversation}/$"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    assert shown(page) == everything
    assert [m["id"] for m in live_app.messages(conversation)] == everything

    # Delete: that message and everything after it go, the turn before it stays.
    page.locator(f"#msg-{middle} a.delete-msg").click()
    page.wait_for_url(re.compile(rf"/messages/{middle}/delete/$"))
    page.locator("#confirm-delete").click()
    page.wait_for_url(re.compile(rf"/conversations/{conversation}/$"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    assert shown(page) == list(turns[0])
    assert [m["id"] for m in live_app.messages(conversation)] == list(turns[0])

    # The conversation goes on from what is left: Claude gets only that.
    _, reply = send_with_enter(page, f"{QUICK_REPLY} After the deletion (delete-middle)")
    expect_complete(page, reply)
    sent = turns_sent(upstream_request(fake, "After the deletion", finished=True))
    assert [text for _, text in sent] == [
        f"{QUICK_REPLY} Turn 1 (delete-middle)",
        body(page, turns[0][1]).rstrip(),
        f"{QUICK_REPLY} After the deletion (delete-middle)",
    ]

    # The last reply alone: "It will be deleted".
    page.locator(f"#msg-{reply} a.delete-msg").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete this reply")
    expect(page.locator(".confirm-card")).to_contain_text("It will be deleted.")
    page.locator("#cancel-delete").click()
    page.wait_for_url(re.compile(rf"/conversations/{conversation}/$"))


def test_deleting_takes_the_versions_below_and_shows_an_earlier_version_in_its_place(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    first_user, first_reply = send_with_enter(page, f"{QUICK_REPLY} One (delete-versions)")
    expect_complete(page, first_reply)
    fake.set_config(text="Reply two, version one.")
    middle, old_reply = send_with_enter(page, f"{QUICK_REPLY} Two (delete-versions)")
    expect_complete(page, old_reply)
    fake.set_config(text="Reply two, version two.")
    new_reply = regenerate(page, old_reply)
    expect_version(page, new_reply, 2, 2)

    # The shown reply with versions goes: the earlier version is shown in its place.
    page.locator(f"#msg-{new_reply} a.delete-msg").click()
    page.wait_for_url(re.compile(rf"/messages/{new_reply}/delete/$"))
    expect(page.locator(".confirm-card")).to_contain_text("It will be deleted")
    page.locator("#confirm-delete").click()
    page.wait_for_url(re.compile(rf"/conversations/{conversation}/$"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    assert shown(page) == [first_user, first_reply, middle, old_reply]
    assert body(page, old_reply) == "Reply two, version one."
    expect(versions(page, old_reply)).to_have_count(0)  # one version left

    # A message whose replies below have other versions: they all go with it.
    fake.set_config(text="Reply two, version three.")
    third_reply = regenerate(page, old_reply)
    expect_version(page, third_reply, 2, 2)
    _, last_reply = send_with_enter(page, f"{QUICK_REPLY} Three (delete-versions)")
    expect_complete(page, last_reply)
    page.locator(f"#msg-{middle} a.delete-msg").click()
    page.wait_for_url(re.compile(rf"/messages/{middle}/delete/$"))
    # (The page counts the 3 shown messages after it; the hidden first version of its reply
    # goes too, and the page does not say so.)
    expect(page.locator(".confirm-card")).to_contain_text("It and the 3 messages after it")
    page.locator("#confirm-delete").click()
    page.wait_for_url(re.compile(rf"/conversations/{conversation}/$"))
    assert shown(page) == [first_user, first_reply]
    assert [m["id"] for m in live_app.messages(conversation)] == [first_user, first_reply]


def test_no_delete_link_while_a_reply_streams_and_the_server_refuses_one(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    sign_in(page, live_app)
    conversation = new_chat(page)
    user, first = send_with_enter(page, f"{QUICK_REPLY} Before the long one (delete-streaming)")
    expect_complete(page, first)
    links = page.locator("#messages a.delete-msg")
    expect(links).to_have_count(2)
    expect(links.first).to_be_visible()

    _, streaming = send_with_enter(page, "Talk for a long while (delete-streaming)")
    expect_streaming(page, streaming)
    expect(page.locator(f"#msg-{streaming} a.delete-msg")).to_have_count(0)
    for link in links.all():
        expect(link).to_be_hidden()

    # A confirmation page opened anyway (another tab, an old link) is refused by the server.
    csrf = page.locator("#chat").get_attribute("data-csrf") or ""
    response = page.request.post(
        f"/conversations/{conversation}/messages/{user}/delete/",
        headers={"X-CSRFToken": csrf},
        max_redirects=0,
    )
    assert response.status == 409, response.status
    assert "A reply is streaming" in response.text()
    assert len(live_app.messages(conversation)) == 4
    expect_streaming(page, streaming)

    page.locator("#stop-button").click()
    expect_interrupted(page, streaming)
    expect(page.locator("#messages a.delete-msg")).to_have_count(4)
    for link in page.locator("#messages a.delete-msg").all():
        expect(link).to_be_visible()


# --- Screenshots -----------------------------------------------------------------------------


def test_screenshots_of_versions_in_light_and_dark(
    new_context: ContextFactory, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    page = new_context(color_scheme="light").new_page()
    sign_in(page, live_app)
    new_chat(page)
    # Plain messages (no directive in sight): the fake answers them quickly by its config.
    fake.set_config(text="Paris is the capital of France.", **QUICK)
    first_user, first_reply = send_with_enter(page, "What is the capital of France?")
    expect_complete(page, first_reply)
    fake.set_config(text="Lyon is the third-largest city in France.")
    user, _ = send_with_enter(page, "Name a big city in France.")
    fake.set_config(text="Marseille, on the Mediterranean coast, is the second-largest.")
    user, reply = edit_last(page, user, "Name the second-largest city in France.")
    fake.set_config(text="The second-largest city in France is **Marseille**.")
    reply = regenerate(page, reply)
    fake.set_config(text="Marseille (about 870,000 people), after Paris.")
    third = regenerate(page, reply)
    switch(page, prev_button(page, third), reply)
    expect_version(page, reply, 2, 3)
    expect_version(page, user, 2, 2)
    assert shown(page) == [first_user, first_reply, user, reply]

    # Dark by emulating the colour scheme on the same page.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#composer-input").focus()
    schemes: list[tuple[str, Literal["light", "dark"]]] = [
        ("versions-light.png", "light"),
        ("versions-dark.png", "dark"),
    ]
    for name, scheme in schemes:
        page.emulate_media(color_scheme=scheme)
        expect_version(page, reply, 2, 3)
        path = SCREENSHOTS / name
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000, f"{name} looks empty"
