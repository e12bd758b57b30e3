"""The streaming HTTP API against a live daphne, through httpx, with the fake Anthropic behind it:
a whole reply's events, a caller that hangs up mid-reply (the upstream stream closes within
100 ms, the partial is saved), the stop endpoints stopping an API reply, and every error status.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat.testing.live import REPO_ROOT
from chat.testing.live_client import Session
from tests.helpers import SLOW_REPLY
from tests.live.helpers import CONCURRENT, Api

#: A whole reply of 12 deltas ("[complete: 12 tokens out]" in the README example's output).
QUICK = "[[fake:interval=0.002,deltas=12]]"


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The server-sent events of a response, as (event, data)."""
    name, data = "", ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif not line and name:
            yield name, json.loads(data)
            name, data = "", ""


async def new_conversation(client: httpx.AsyncClient, **fields: str) -> str:
    response = await client.post("/api/conversations/", json=fields)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def assert_error(response: httpx.Response, status: int, kind: str, says: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()["error"]
    assert body["type"] == kind and says in body["message"], body


async def test_a_whole_reply_streams_as_start_text_and_end_events(api: Api) -> None:
    async with api.client() as client:
        cid = await new_conversation(client, title="From a script")
        async with client.stream(
            "POST", f"/api/conversations/{cid}/messages/", json={"message": f"Hello {QUICK}"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            received = [e async for e in events(response)]

        names = [name for name, _ in received]
        assert names[0] == "start" and names[-1] == "end" and set(names[1:-1]) == {"text"}
        start, end = received[0][1], received[-1][1]
        text = "".join(data["text"] for name, data in received if name == "text")
        assert start["conversation"] == cid and start["user_message"] and start["message"]
        assert end["message"] == start["message"]
        assert end["status"] == "complete" and end["stop_reason"] == "end_turn"
        assert end["usage"]["input_tokens"] > 0 and end["usage"]["output_tokens"] > 0
        assert end["usage"]["estimated"] is False and end["chars"] == len(text)

        (record,) = api.fake_requests(1)
        assert record.text_written == text and record.completed
        rows = api.app.messages(cid)
        assert [(r["role"], r["status"]) for r in rows] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert rows[1]["content"] == text

        # The conversation as JSON, and in the list.
        got = (await client.get(f"/api/conversations/{cid}/")).json()
        assert got["title"] == "From a script" and got["url"] == f"/conversations/{cid}/"
        assert [m["role"] for m in got["messages"]] == ["user", "assistant"]
        assert got["messages"][1]["content"] == text
        assert got["messages"][1]["usage"]["output_tokens"] == end["usage"]["output_tokens"]
        listed = (await client.get("/api/conversations/")).json()["conversations"]
        assert cid in [c["id"] for c in listed]

    # And in the browser, for the same user.
    session = Session(api.app.base_url)
    await asyncio.to_thread(session.sign_in, "alice", api.app.password)
    status, _, page = await asyncio.to_thread(session.get, None, f"/conversations/{cid}/")
    assert status == 200 and "From a script" in page and text[:40] in page


async def test_thinking_streams_as_thinking_events_before_the_text_and_is_exported(
    api: Api,
) -> None:
    async with api.client() as client:
        cid = await new_conversation(client, title="Thoughtful", thinking_budget="2048")
        message = "Hello [[fake:interval=0.002,deltas=6,thinking=4]]"
        async with client.stream(
            "POST", f"/api/conversations/{cid}/messages/", json={"message": message}
        ) as response:
            received = [e async for e in events(response)]
        names = [name for name, _ in received]
        assert names[0] == "start" and names[-1] == "end"
        assert set(names[1:-1]) == {"thinking", "text"}
        assert names.index("text") > max(i for i, n in enumerate(names) if n == "thinking")
        thinking = "".join(data["text"] for name, data in received if name == "thinking")
        (record,) = api.fake_requests(1)
        assert thinking == record.thinking_written and thinking.startswith("Thinking step 1")
        assert record.body["thinking"]["type"] == "adaptive"
        end = received[-1][1]
        assert end["thinking_chars"] == len(thinking)

        got = (await client.get(f"/api/conversations/{cid}/")).json()
        assert got["thinking_budget"] == 2048
        reply = got["messages"][1]
        assert reply["thinking"] == thinking and reply["thinking_signature"]
        assert reply["thinking_ms"] is not None
        assert reply["content"] == record.text_written
        assert set(reply["usage"]) >= {"cache_read_input_tokens", "cache_creation_input_tokens"}


@pytest.mark.alone  # a 100 ms budget across processes: run while no other test runs
async def test_hanging_up_mid_reply_closes_the_upstream_within_100_ms_and_saves_the_partial(
    api: Api,
) -> None:
    async with api.client() as client:
        cid = await new_conversation(client)
        received = ""
        async with client.stream(
            "POST",
            f"/api/conversations/{cid}/messages/",
            json={"message": f"Long {SLOW_REPLY}"},
        ) as response:
            batches = 0
            async for name, data in events(response):
                if name == "text":
                    received += data["text"]
                    batches += 1
                    if batches == 3:
                        break
            hung_up = time.monotonic()
        # (Leaving the block closed the connection.)
        (record,) = api.fake_requests(1)
        for _ in range(100):
            if record.disconnected_at is not None:
                break
            await asyncio.sleep(0.05)
            (record,) = api.fake_requests(1)
        assert record.disconnected_at is not None, record.outcome
        took = record.disconnected_at - hung_up
        print(f"caller hung up → upstream closed: {took * 1000:.1f} ms")
        assert took < 0.1
        assert record.deltas_written < record.deltas_planned

        rows = await _until_ended(api, cid)
        reply = rows[-1]
        assert (reply["status"], reply["stop_reason"]) == ("interrupted", "disconnect")
        # Saved: everything handed to the stream (at least what the caller read), never more
        # than the model wrote.
        assert reply["content"].startswith(received) and received
        assert record.text_written.startswith(reply["content"])

        # Ready for the next message at once.
        async with client.stream(
            "POST", f"/api/conversations/{cid}/messages/", json={"message": f"Again {QUICK}"}
        ) as response:
            assert response.status_code == 200
            last = [e async for e in events(response)][-1]
        assert last[0] == "end" and last[1]["status"] == "complete"


async def _until_ended(api: Api, cid: str) -> list[dict[str, Any]]:
    for _ in range(100):
        rows = api.app.messages(cid)
        if rows and rows[-1]["status"] != "streaming":
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"the reply never ended: {api.app.messages(cid)}")


async def _stream_until_text(
    client: httpx.AsyncClient, cid: str, into: list[tuple[str, dict[str, Any]]]
) -> asyncio.Task[None]:
    """Start a slow API reply in the background; return once its first text has arrived."""
    first_text = asyncio.Event()

    async def run() -> None:
        async with client.stream(
            "POST",
            f"/api/conversations/{cid}/messages/",
            json={"message": f"Slow {SLOW_REPLY}"},
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for event in events(response):
                into.append(event)
                if event[0] == "text":
                    first_text.set()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(first_text.wait())
    await asyncio.wait([task, waiter], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises what went wrong
    assert first_text.is_set(), "no text arrived"
    return task


@pytest.mark.parametrize("door", ["api", "page"])
async def test_the_stop_endpoints_stop_an_api_reply(api: Api, door: str) -> None:
    """The API's own stop (token) and the page's stop endpoint (session + CSRF), which reaches
    the reply through the channel layer like any other owner."""
    async with api.client() as client:
        cid = await new_conversation(client)
        received: list[tuple[str, dict[str, Any]]] = []
        stream = await _stream_until_text(client, cid, received)
        if door == "api":
            response = await client.post(f"/api/conversations/{cid}/stop/")
            assert response.status_code == 200
            answer = response.json()
        else:
            session = Session(api.app.base_url)
            await asyncio.to_thread(session.sign_in, "alice", api.app.password)
            status, answer = await asyncio.to_thread(
                session.post_json, None, f"/conversations/{cid}/stop/"
            )
            assert status == 200
        assert answer["outcome"] == "stopped", answer
        await asyncio.wait_for(stream, 10)

    name, end = received[-1]
    assert name == "end" and (end["status"], end["stop_reason"]) == ("interrupted", "user_stop")
    text = "".join(data["text"] for n, data in received if n == "text")
    assert end["chars"] == len(text) == answer["chars_saved"] and text
    assert end["usage"]["estimated"] is True
    (record,) = api.fake_requests(1)
    assert record.outcome == "client_disconnected"
    rows = api.app.messages(cid)
    assert rows[-1]["content"] == text and rows[-1]["status"] == "interrupted"


async def test_every_error_is_json_with_the_right_status_and_nothing_is_saved(api: Api) -> None:
    async with api.client() as client:
        cid = await new_conversation(client)
        url = f"/api/conversations/{cid}/messages/"

        async with httpx.AsyncClient(base_url=api.app.base_url, trust_env=False) as anonymous:
            assert_error(
                await anonymous.post(url, json={"message": "hi"}),
                401,
                "authentication_error",
                "Send an API token",
            )
            bad = {"Authorization": "Bearer chat_not-a-real-token"}
            assert_error(
                await anonymous.post(url, json={"message": "hi"}, headers=bad),
                401,
                "authentication_error",
                "not valid",
            )
            revoked = {"Authorization": f"Bearer {api.revoked_token}"}
            assert_error(
                await anonymous.get("/api/conversations/", headers=revoked),
                401,
                "authentication_error",
                "not valid",
            )

        assert_error(
            await client.post(url, content=b"{not json"), 400, "invalid_request_error", "JSON"
        )
        assert_error(
            await client.post(url, json=["a list"]), 400, "invalid_request_error", "JSON object"
        )
        assert_error(await client.post(url, json={}), 400, "invalid_request_error", '{"message"')
        assert_error(
            await client.post(url, json={"message": "   "}),
            400,
            "invalid_request_error",
            '{"message"',
        )
        assert_error(
            await client.post(url, json={"message": 42}),
            400,
            "invalid_request_error",
            "must be text",
        )
        long = "x" * 40_001
        assert_error(
            await client.post(url, json={"message": long}), 400, "invalid_request_error", "too long"
        )
        assert_error(
            await client.post(url, content=b'{"message": "\\ud800"}'),
            400,
            "invalid_request_error",
            "not valid text",
        )
        assert_error(
            await client.post("/api/conversations/", json={"model": "gpt-5"}),
            400,
            "invalid_request_error",
            "model",
        )
        assert_error(await client.get(url), 405, "method_not_allowed", "POST")
        assert_error(
            await client.post(
                f"/api/conversations/{api.bobs_conversation}/messages/", json={"message": "hi"}
            ),
            404,
            "not_found_error",
            "No such conversation",
        )
        assert_error(
            await client.get(f"/api/conversations/{api.bobs_conversation}/"),
            404,
            "not_found_error",
            "No such conversation",
        )
        assert_error(
            await client.get("/api/conversations/00000000-0000-0000-0000-000000000000/"),
            404,
            "not_found_error",
            "No such",
        )
        assert api.app.messages(cid) == []
        assert api.app.messages(api.bobs_conversation) == []

        # 409: a reply is streaming in this conversation. 429: over the replies-at-once limit.
        received: list[tuple[str, dict[str, Any]]] = []
        streams = [await _stream_until_text(client, cid, received)]
        assert_error(
            await client.post(url, json={"message": "and another"}),
            409,
            "conflict",
            "already streaming",
        )
        others = [await new_conversation(client) for _ in range(CONCURRENT)]
        for other in others[: CONCURRENT - 1]:
            streams.append(await _stream_until_text(client, other, received))
        over = await client.post(
            f"/api/conversations/{others[-1]}/messages/", json={"message": "one more"}
        )
        assert_error(
            over, 429, "rate_limit_error", f"You already have {CONCURRENT} replies streaming"
        )
        assert api.app.messages(others[-1]) == []
        assert [r["role"] for r in api.app.messages(cid)] == ["user", "assistant"]
        for conversation in [cid, *others[: CONCURRENT - 1]]:
            assert (await client.post(f"/api/conversations/{conversation}/stop/")).json()[
                "outcome"
            ] == "stopped"
        await asyncio.wait_for(asyncio.gather(*streams), 10)


def readme_example() -> str:
    """The Python example in the README's API section, as it is printed there."""
    section = (REPO_ROOT / "README.md").read_text().split("## The streaming HTTP API", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readmes_python_example_streams_a_reply_and_its_ctrl_c_stops_it(
    api: Api, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = {
        **api.app.env,
        "STOPCHAT_URL": api.app.base_url,
        "STOPCHAT_TOKEN": api.token,
        "PYTHONUNBUFFERED": "1",
    }
    whole = subprocess.run(
        [sys.executable, str(script), f"Hello {QUICK}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert whole.returncode == 0, whole.stderr
    (record,) = api.fake_requests(1)
    assert whole.stdout == f"{record.text_written}\n[complete: 12 tokens out]\n"

    api.app.fake.restore()
    process = subprocess.Popen(
        [sys.executable, str(script), f"Long {SLOW_REPLY}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    shown = process.stdout.read(40)  # the reply has begun
    process.send_signal(signal.SIGINT)
    pressed = time.monotonic()
    rest, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert rest.endswith("\n[aborted]\n")
    shown += rest.removesuffix("\n[aborted]\n")

    (record,) = api.fake_requests(1)
    for _ in range(100):
        if record.disconnected_at is not None:
            break
        time.sleep(0.05)
        (record,) = api.fake_requests(1)
    assert record.disconnected_at is not None, record.outcome
    print(f"Ctrl+C → upstream closed: {(record.disconnected_at - pressed) * 1000:.1f} ms")
    (newest,) = api.app.query(
        "SELECT id FROM chat_conversation ORDER BY created_at DESC, id LIMIT 1"
    )
    cid = str(uuid.UUID(newest["id"]))
    reply = asyncio.run(_until_ended(api, cid))[-1]
    assert (reply["status"], reply["stop_reason"]) == ("interrupted", "disconnect")
    assert reply["content"].startswith(shown) and record.text_written.startswith(reply["content"])


def readme_file_examples() -> tuple[str, str]:
    """The curl lines and the Python script of the README's "Files through the API"."""
    section = (REPO_ROOT / "README.md").read_text().split("### Files through the API", 1)[1]
    shell = section.split("```sh\n", 1)[1].split("```", 1)[0]
    python = section.split("```python\n", 1)[1].split("```", 1)[0]
    return shell, python


def test_the_readmes_file_examples_send_files_with_curl_and_httpx(api: Api, tmp_path: Path) -> None:
    from chat.testing.files import image_bytes, pdf_bytes

    (tmp_path / "chart.png").write_bytes(image_bytes(120, 80))
    (tmp_path / "report.pdf").write_bytes(pdf_bytes(2))
    shell, python = readme_file_examples()
    with httpx.Client(base_url=api.app.base_url, headers=api.headers, trust_env=False) as client:
        cid = client.post("/api/conversations/", json={}).json()["id"]
    api.app.fake.restore()
    curl = shell.replace("http://127.0.0.1:8000", api.app.base_url).replace(
        "What do these show?", f"What do these show? {QUICK}"
    )
    env = {**api.app.env, "TOKEN": api.token, "CID": cid}
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", curl],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "event: end" in ran.stdout and '"status": "complete"' in ran.stdout
    (record,) = api.fake_requests(1)
    content = record.body["messages"][0]["content"]
    assert [block["type"] for block in content] == ["image", "document", "text"]

    api.app.fake.restore()
    script = tmp_path / "ask_files.py"
    script.write_text(python)
    ran = subprocess.run(
        [sys.executable, str(script), f"What do these show? {QUICK}", "chart.png", "report.pdf"],
        cwd=tmp_path,
        env={**api.app.env, "STOPCHAT_URL": api.app.base_url, "STOPCHAT_TOKEN": api.token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    (record,) = api.fake_requests(1)
    *_, png_line, pdf_line = ran.stdout.splitlines()
    assert re.fullmatch(
        rf"chart\.png: image/png, \d+ bytes, {api.app.base_url}/attachments/[0-9a-f-]{{36}}/",
        png_line,
    )
    size = len(pdf_bytes(2))
    assert re.fullmatch(
        rf"report\.pdf: application/pdf, {size} bytes, .*/attachments/.*/", pdf_line
    )
    assert ran.stdout.startswith(record.text_written)
