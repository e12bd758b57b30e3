"""Fixtures of the browser tests: one headless Chromium per module, browser contexts on the live
app (``live_app``, tests/conftest.py) whose pages must log no error, and the fake model.

Needs /usr/bin/chromium and Playwright: the folder is skipped without them, and fails without
them under CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import LiveApp

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").strip().lower() in {"true", "1"}


def _missing() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the machine
        return f"playwright cannot be imported ({exc}); pip install -e '.[dev]' installs it"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing; `make browser` installs it"
    return ""


if missing := _missing():
    if IN_CI:
        pytest.fail(f"browser tests cannot run under CI=true: {missing}", pytrace=False)
    pytest.skip(f"browser tests skipped: {missing}", allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402

from tests.browser.helpers import WAIT_MS, ContextFactory  # noqa: E402


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the module. Module-scoped on purpose: Playwright's sync API
    owns an event loop while it runs, which must be gone before pytest-asyncio's tests run."""
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def fake(live_app: LiveApp) -> FakeAnthropicControl:
    """The fake model, back to its start-up config (300 deltas, 20 ms apart), no records."""
    live_app.fake.restore()
    return live_app.fake_control


@pytest.fixture
def new_context(chromium: Browser, live_app: LiveApp) -> Iterator[ContextFactory]:
    """Open browser contexts whose pages must log no console error and throw no exception.

    Checked after the test: any ``console.error`` or uncaught page error fails it.
    """
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def watch(page: Page, forgive: Callable[[Any], bool]) -> None:
        def on_console(msg: Any) -> None:
            # /favicon.ico, which Chromium asks for where a page links no icon, is forgiven no
            # more: the app answers it (chatsite/urls.py).
            if msg.type == "error" and not forgive(msg):
                problems.append(f"console.error on {page.url}: {msg.text} @ {msg.location}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.append(f"page error on {page.url}: {exc}"))

    def factory(
        forgive: Callable[[Any], bool] = lambda msg: False, **options: Any
    ) -> BrowserContext:
        """`forgive`: a console error the test expects (it is not counted)."""
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = chromium.new_context(base_url=live_app.base_url, **options)
        context.set_default_timeout(WAIT_MS)
        context.on("page", lambda page: watch(page, forgive))
        contexts.append(context)
        return context

    yield factory
    for context in contexts:
        context.close()
    assert not problems, "the page logged errors:\n" + "\n".join(problems)


@pytest.fixture
def page(new_context: ContextFactory) -> Page:
    return new_context().new_page()


@pytest.fixture
def refusing_page(new_context: ContextFactory, live_app: LiveApp) -> Page:
    """A page whose uploads may be refused: Chromium logs every 4xx answer to a fetch as a
    console error; this page forgives exactly that (a 400 from the upload URL), and any other
    console or page error fails the test, as on ``page``."""
    upload = live_app.url("/attachments/")

    def refused(msg: Any) -> bool:
        return bool(msg.location.get("url", "") == upload and "status of 400" in msg.text)

    return new_context(forgive=refused).new_page()
