"""Figure 9: the memory an upload of about 10 MB costs the server (issue 16).

    .venv/bin/python -m bench.attachments [--quick] [--json] [--server-env KEY=VALUE ...]

A live daphne (chat.testing.live.start_daphne) on its own SQLite file and its own attachments
directory, the standalone fake Anthropic behind it (short replies: 12 deltas 2 ms apart), one
user signed in over HTTP (chat.testing.live_client.Session: session cookie and CSRF token) and
given an API token. Each case is one request, sent from this process with httpx while a thread
reads the daphne process's resident set size (psutil) every SAMPLE_EVERY seconds:

- ``web_small``: a 64 x 48 PNG through the page's upload view (``POST /attachments/``,
  multipart, field ``file``): the baseline for an upload;
- ``web_pdf``: a PDF just under 10 MB (CHAT_MAX_ATTACHMENT_BYTES, 10 MiB; quick: 1 MiB): pages
  of random pixels (JPEG, as a scan), so it hardly compresses; the server reads it with pypdf;
- ``web_image``: a PNG of random pixels just under 10 MB (about 1,860 px square): the server
  decodes it with Pillow and re-encodes it (scaled down until it fits Anthropic's 5 MB base64
  limit) and makes its thumbnail: the expensive case;
- ``api_plain``: a plain message through the streaming API (``POST
  /api/conversations/<uuid>/messages/``, bearer token, JSON), its reply's events read to the
  end: the baseline for the API;
- ``api_pdf``, ``api_image``: the same two files as base64 ``attachments`` of an API message
  (a JSON body of about 13 MiB), the reply read to its end (the file goes to the fake Anthropic
  as a document or image block, base64 again);
- ``api_after_pdf``: a plain message in the conversation ``api_pdf`` made: every later turn
  sends the conversation's files to Claude again, read back from storage.

Each case runs REPEATS times, the cases in turn (round 1 of every case, then round 2, ...),
after a warm-up of every path with small files (lazy imports such as pypdf's, the SDK's client,
the thread pools). For each request: the baseline (the median of a few readings just before
it), the peak RSS increase over it while the request ran, the RSS increase still there SETTLE
seconds after the response ended (retained: memory freed but kept by the allocator counts), the
wall time (request sent to the response's last byte), the CPU time the process used meanwhile,
and the longest a small request from another client (HEAD of a static file, every PROBE_EVERY
seconds) took meanwhile: how long the server's event loop, which every streaming reply and
every Stop of the process runs on, was held up. Reported: the median ("p50") and max of the
repeats, in MiB and ms; every run is kept under ``runs``, and the RSS after the warm-up and at
the end.

The server runs as the other live benchmarks run it (chatsite.settings, DEBUG on: its query log
holds SQL text, never a file's bytes). ``--server-env`` adds to its environment, to compare
(e.g. ``MALLOC_ARENA_MAX=2``). No target: the figure says what an upload costs.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx
import psutil  # type: ignore[import-untyped]  # (no stubs in the dev extras)

from chat.testing.files import image_bytes
from chat.testing.live import (
    DaphneProcess,
    FakeProcess,
    app_env,
    create_user,
    manage,
    start_daphne,
    start_fake_anthropic,
)
from chat.testing.live_client import Session

REPO_ROOT = Path(__file__).resolve().parents[1]

MIB = 1024 * 1024
#: The app's default CHAT_MAX_ATTACHMENT_BYTES (10 MB); the server is run with it.
LIMIT_BYTES = 10 * MIB
#: The files' size: just under the limit (quick: about 1 MB).
TARGET_FULL, TARGET_QUICK = LIMIT_BYTES - 96 * 1024, 1 * MIB
PDF_PAGES_FULL, PDF_PAGES_QUICK = 8, 2
REPEATS = 3
SAMPLE_EVERY = 0.005  # seconds between two RSS readings during a request
#: What another client asks for throughout each request: a static file's headers (served before
#: Django, no database; a few hundred microseconds of the server's time).
PROBE_PATH, PROBE_EVERY = "/static/chat/chat.css", 0.05
SETTLE_FULL, SETTLE_QUICK = 1.0, 0.3  # seconds after a response before its "retained" reading
#: The fake's reply: short and quick, so the request's time is the upload's.
FAKE_INTERVAL, FAKE_DELTAS = 0.002, 12
REPLY = f"[[fake:interval={FAKE_INTERVAL},deltas={FAKE_DELTAS}]]"

CASES = (
    "web_small",
    "web_pdf",
    "web_image",
    "api_plain",
    "api_pdf",
    "api_image",
    "api_after_pdf",
)
CASE_TITLES = {
    "web_small": "page upload, 64x48 PNG",
    "web_pdf": "page upload, PDF",
    "web_image": "page upload, noise PNG",
    "api_plain": "API message, no file",
    "api_pdf": "API message + PDF (base64)",
    "api_image": "API message + noise PNG (base64)",
    "api_after_pdf": "API message after the PDF's",
}

_API_TOKEN = """
import sys
import django
django.setup()
from django.contrib.auth.models import User
from chat.data import api_tokens
_, token = api_tokens.token_create(user=User.objects.get(username=sys.argv[1]), name="bench")
print(token)
"""


# --------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------


def noise_png(target: int) -> bytes:
    """A PNG of random pixels (it does not compress: 3 bytes a pixel) just under `target`."""
    side = int((target / 3.003) ** 0.5)
    while True:
        data = image_bytes(side, side, noise=True, format_="PNG")
        if len(data) <= target:
            return data
        side -= 8


def noise_pdf(target: int, pages: int) -> bytes:
    """A PDF of `pages` pages of random pixels (JPEG, as a scanned document), about `target`
    bytes and never more: pypdf reads it."""
    from PIL import Image

    def build(side: int) -> bytes:
        images = [
            Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)) for _ in range(pages)
        ]
        out = io.BytesIO()
        images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=150)
        return out.getvalue()

    side = 256
    for _ in range(4):  # JPEG of noise is close to linear in pixels: two steps land it
        data = build(side)
        side = int(side * (target * 0.995 / len(data)) ** 0.5)
    while len(data) > target:
        side -= 8
        data = build(side)
    return data


# --------------------------------------------------------------------------------------------
# Reading the server's RSS during a request
# --------------------------------------------------------------------------------------------


class _Background:
    """``_tick`` in a daemon thread from ``with`` on: once at once, then every ``every`` seconds,
    until the ``with`` block ends (a tick under way finishes first)."""

    every: ClassVar[float]  # seconds between two ticks

    def _tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            self._tick()
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Sampler(_Background):
    """RSS readings of one process in a thread, every SAMPLE_EVERY seconds, until stopped."""

    process: psutil.Process
    peak: int = 0
    count: int = 0
    every = SAMPLE_EVERY

    def _tick(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        # One last reading: the response's last byte may have come after the last sample.
        self._tick()


@dataclass
class Prober(_Background):
    """A small page fetched every PROBE_EVERY seconds in a thread, until stopped: the longest
    one took says how long the server's event loop was held up meanwhile."""

    client: httpx.Client
    longest: float = 0.0
    count: int = 0
    every = PROBE_EVERY

    def _tick(self) -> None:
        started = time.perf_counter()
        self.client.head(PROBE_PATH).raise_for_status()
        self.longest = max(self.longest, time.perf_counter() - started)
        self.count += 1


def rss_now(process: psutil.Process, samples: int = 3) -> int:
    """The median of a few readings 10 ms apart."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(0.01)
        values.append(process.memory_info().rss)
    return int(statistics.median(values))


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


# --------------------------------------------------------------------------------------------
# The requests
# --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """The running app, a signed-in httpx client (cookies, CSRF) and an API client (token)."""

    server: DaphneProcess
    web: httpx.Client
    api: httpx.Client
    probe: httpx.Client
    csrf: str
    settle: float
    server_env: dict[str, str]
    process: psutil.Process = field(init=False)
    _uploaded: list[str] = field(default_factory=list, init=False)
    """The chips of the uploads not removed yet."""

    def __post_init__(self) -> None:
        self.process = psutil.Process(self.server.process.pid)

    def upload(self, name: str, data: bytes, media_type: str) -> None:
        """The page's upload of one file (201 and its chip), then the chip's removal (so the
        unsent uploads never reach their per-user limit)."""
        response = self.web.post(
            "/attachments/",
            files={"file": (name, data, media_type)},
            headers={"X-CSRFToken": self.csrf},
        )
        if response.status_code != 201:
            raise RuntimeError(f"upload of {name}: {response.status_code} {response.text[:500]}")
        self._uploaded.append(response.text)

    def remove_uploads(self) -> None:
        for chip in self._uploaded:
            match = re.search(r'data-remove-url="([^"]+)"', chip)
            if match:
                self.web.post(match.group(1), headers={"X-CSRFToken": self.csrf})
        self._uploaded.clear()

    def new_conversation(self) -> str:
        response = self.api.post("/api/conversations/", json={"title": "Attachments bench"})
        if response.status_code != 201:
            raise RuntimeError(f"new conversation: {response.status_code} {response.text[:500]}")
        return str(response.json()["id"])

    def message(self, conversation: str, body: bytes) -> None:
        """An API message (`body`: its JSON, made by `api_body`), its reply's events read to
        the end; RuntimeError unless the reply ended complete."""
        end: dict[str, Any] | None = None
        with self.api.stream(
            "POST",
            f"/api/conversations/{conversation}/messages/",
            content=body,
            headers={"Content-Type": "application/json"},
        ) as response:
            if response.status_code != 200:
                response.read()
                raise RuntimeError(f"API message: {response.status_code} {response.text[:500]}")
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "end":
                    end = json.loads(line.removeprefix("data: "))
        if end is None or end.get("status") != "complete":
            raise RuntimeError(f"the API reply did not end complete: {end}")

    def files_of_last_user_message(self, conversation: str) -> list[dict[str, Any]]:
        response = self.api.get(f"/api/conversations/{conversation}/")
        response.raise_for_status()
        users = [m for m in response.json()["messages"] if m["role"] == "user"]
        return list(users[-1].get("attachments", [])) if users else []

    def measured(self, action: Callable[[], Any]) -> dict[str, Any]:
        """Run one request with its RSS read throughout; its figures."""
        baseline = rss_now(self.process)
        with Sampler(self.process) as sampler, Prober(self.probe) as prober:
            cpu_before = cpu_seconds(self.process)
            started = time.perf_counter()
            action()
            wall = time.perf_counter() - started
            cpu = cpu_seconds(self.process) - cpu_before
        time.sleep(self.settle)
        after = rss_now(self.process)
        return {
            "baseline_mib": round(baseline / MIB, 1),
            "peak_increase_mib": round((sampler.peak - baseline) / MIB, 1),
            "retained_mib": round((after - baseline) / MIB, 1),
            "wall_ms": round(wall * 1000, 1),
            "cpu_ms": round(cpu * 1000, 1),
            "longest_probe_ms": round(prober.longest * 1000, 1),
            "samples": sampler.count,
            "probes": prober.count,
        }


def api_body(text: str, files: list[tuple[str, str, bytes]] | None = None) -> bytes:
    """An API message's JSON body: `text`, with `files` (name, media type, bytes) in base64."""
    body: dict[str, Any] = {"message": text}
    if files:
        body["attachments"] = [
            {"name": name, "media_type": media_type, "data": base64.b64encode(data).decode()}
            for name, media_type, data in files
        ]
    return json.dumps(body).encode()


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1)}


@dataclass(frozen=True)
class Files:
    """What the cases send: the files, and the API's bodies made of them beforehand (so the
    client's base64 and JSON work stays out of the measured request)."""

    pdf: bytes
    png: bytes
    small_png: bytes
    plain_body: bytes
    pdf_body: bytes
    png_body: bytes
    later_body: bytes


def _files(quick: bool) -> Files:
    target = TARGET_QUICK if quick else TARGET_FULL
    pdf = noise_pdf(target, PDF_PAGES_QUICK if quick else PDF_PAGES_FULL)
    png = noise_png(target)
    return Files(
        pdf=pdf,
        png=png,
        small_png=image_bytes(64, 48),
        plain_body=api_body(f"Hello {REPLY}"),
        pdf_body=api_body(f"Read this {REPLY}", [("scan.pdf", "application/pdf", pdf)]),
        png_body=api_body(f"Look {REPLY}", [("noise.png", "image/png", png)]),
        later_body=api_body(f"And the second page? {REPLY}"),
    )


def _warm_up(bench: Bench) -> None:
    """Every path once with small files (lazy imports, the SDK's client, the thread pools)."""
    bench.probe.head(PROBE_PATH).raise_for_status()
    small_pdf = noise_pdf(64 * 1024, 1)
    small_noise = image_bytes(200, 200, noise=True)
    bench.upload("warm.png", image_bytes(64, 48), "image/png")
    bench.upload("warm.pdf", small_pdf, "application/pdf")
    bench.upload("warm-noise.png", small_noise, "image/png")
    bench.remove_uploads()
    warm = bench.new_conversation()
    bench.message(warm, api_body(f"Hello {REPLY}"))
    two = [("warm.pdf", "application/pdf", small_pdf), ("warm.png", "image/png", small_noise)]
    bench.message(warm, api_body(f"Two files {REPLY}", two))
    if len(bench.files_of_last_user_message(warm)) != 2:
        raise RuntimeError("the API did not keep the warm-up message's two attachments")
    bench.message(warm, api_body(f"And now? {REPLY}"))


def _round(bench: Bench, files: Files) -> dict[str, dict[str, Any]]:
    """Every case once, in CASES' order."""
    run: dict[str, dict[str, Any]] = {}
    run["web_small"] = bench.measured(
        lambda: bench.upload("small.png", files.small_png, "image/png")
    )
    run["web_pdf"] = bench.measured(lambda: bench.upload("scan.pdf", files.pdf, "application/pdf"))
    run["web_image"] = bench.measured(lambda: bench.upload("noise.png", files.png, "image/png"))
    bench.remove_uploads()
    plain, with_pdf, with_png = (bench.new_conversation() for _ in range(3))
    run["api_plain"] = bench.measured(lambda: bench.message(plain, files.plain_body))
    run["api_pdf"] = bench.measured(lambda: bench.message(with_pdf, files.pdf_body))
    run["api_image"] = bench.measured(lambda: bench.message(with_png, files.png_body))
    run["api_after_pdf"] = bench.measured(lambda: bench.message(with_pdf, files.later_body))
    if bench.server.process.poll() is not None:
        raise RuntimeError(f"daphne exited ({bench.server.process.returncode})")
    return run


def _run(bench: Bench, quick: bool) -> dict[str, Any]:
    files = _files(quick)
    _warm_up(bench)
    rss_start = rss_now(bench.process)
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    for _ in range(REPEATS):
        for case, run in _round(bench, files).items():
            runs[case].append(run)
    figures: dict[str, Any] = {
        "file_mib": {
            "pdf": round(len(files.pdf) / MIB, 2),
            "image_png": round(len(files.png) / MIB, 2),
        },
        "file_shape": {
            "pdf_pages": PDF_PAGES_QUICK if quick else PDF_PAGES_FULL,
            "image_side_px": _png_side(files.png),
        },
        "api_body_mib": {
            "api_pdf": round(len(files.pdf_body) / MIB, 2),
            "api_image": round(len(files.png_body) / MIB, 2),
        },
        "repeats": REPEATS,
        "rss_start_mib": round(rss_start / MIB, 1),
        "rss_end_mib": round(rss_now(bench.process) / MIB, 1),
    }
    if bench.server_env:
        figures["server_env"] = bench.server_env
    for case in CASES:
        figures[case] = {
            "title": CASE_TITLES[case],
            "peak_increase_mib": _summary(runs[case], "peak_increase_mib"),
            "retained_mib": _summary(runs[case], "retained_mib"),
            "wall_ms": _summary(runs[case], "wall_ms"),
            "cpu_ms": _summary(runs[case], "cpu_ms"),
            "longest_probe_ms": _summary(runs[case], "longest_probe_ms"),
            "runs": runs[case],
        }
    return figures


def _png_side(data: bytes) -> int:
    return int.from_bytes(data[16:20], "big")  # IHDR's width


def _api_token(env: dict[str, str], username: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _API_TOKEN, username],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def measure(*, quick: bool, server_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The server's RSS during uploads of about 10 MB (see the module's docstring);
    `server_env` adds to daphne's environment (e.g. MALLOC_ARENA_MAX)."""
    tmp = Path(tempfile.mkdtemp(prefix="stopchat-bench-attachments-"))
    fake: FakeProcess = start_fake_anthropic(interval=FAKE_INTERVAL, deltas=FAKE_DELTAS)
    server: DaphneProcess | None = None
    try:
        env = app_env(
            database_url=f"sqlite:///{tmp / 'bench.db'}",
            anthropic_base_url=fake.base_url,
            CHAT_ATTACHMENTS_DIR=str(tmp / "attachments"),
            CHAT_MAX_ATTACHMENT_BYTES=str(LIMIT_BYTES),
            **(server_env or {}),
        )
        username, password = "bench", f"bench-{secrets.token_urlsafe(12)}"
        manage(env, "migrate", "--noinput")
        create_user(env, username, password)
        token = _api_token(env, username)
        server = start_daphne(env, log_path=tmp / "daphne.log")
        session = Session(server.base_url)
        session.sign_in(username, password)
        cookies = {c.name: c.value for c in session.jar if c.value is not None}
        timeout = httpx.Timeout(120.0)
        with (
            httpx.Client(
                base_url=server.base_url, cookies=cookies, trust_env=False, timeout=timeout
            ) as web,
            httpx.Client(
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {token}"},
                trust_env=False,
                timeout=timeout,
            ) as api,
            httpx.Client(base_url=server.base_url, trust_env=False, timeout=timeout) as probe,
        ):
            bench = Bench(
                server,
                web,
                api,
                probe,
                session.cookie("csrftoken"),
                SETTLE_QUICK if quick else SETTLE_FULL,
                server_env or {},
            )
            figures = _run(bench, quick)
    except BaseException as exc:
        if server is not None and not isinstance(exc, KeyboardInterrupt):
            raise RuntimeError(f"{exc}\n--- daphne log ---\n{server.log()[-3000:]}") from exc
        raise
    finally:
        if server is not None:
            server.stop()
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def table(figures: dict[str, Any]) -> str:
    """One row a case: peak RSS increase, retained, wall and CPU time (median / max)."""
    head = (
        f"{'case':34}  {'peak +MiB p50/max':>17}  {'retained MiB':>13}  "
        f"{'wall ms p50/max':>16}  {'CPU ms p50/max':>15}  {'probe ms p50/max':>16}"
    )
    lines = [head, "-" * len(head)]

    def pair(d: dict[str, float]) -> str:
        return f"{d['p50']:.1f} / {d['max']:.1f}"

    for case in CASES:
        row = figures[case]
        lines.append(
            f"{row['title']:34}  {pair(row['peak_increase_mib']):>17}  "
            f"{pair(row['retained_mib']):>13}  {pair(row['wall_ms']):>16}  "
            f"{pair(row['cpu_ms']):>15}  {pair(row['longest_probe_ms']):>16}"
        )
    files = figures["file_mib"]
    shape = figures["file_shape"]
    lines.append(
        f"files: PDF {files['pdf']} MiB ({shape['pdf_pages']} pages), PNG {files['image_png']} "
        f"MiB ({shape['image_side_px']} px square); API bodies "
        + ", ".join(f"{k} {v} MiB" for k, v in figures["api_body_mib"].items())
        + f"; RSS {figures['rss_start_mib']} MiB after warm-up, {figures['rss_end_mib']} MiB "
        f"at the end; {figures['repeats']} runs a case"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attachments", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="files of about 1 MB")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add to the server's environment (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    server_env = dict(item.split("=", 1) for item in args.server_env)
    figures = measure(quick=args.quick, server_env=server_env)
    print(table(figures))
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
