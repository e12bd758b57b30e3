"""The Content-Security-Policy and the other security headers, and a clean `check --deploy`.

Why: the policy is only worth something if it is strict (no inline script, no eval, no inline
style) *and* the app still works under it. So the header is compared directive by directive on
the pages that matter, the production settings are checked the way an operator runs them
(``manage.py check --deploy`` in a clean environment, daphne with ``DJANGO_DEBUG=0``), and a real
Chromium uses the app under the policy -- chat, stream, Stop, admin -- and must report no
violation, while an injected inline script, inline style and eval are refused.

The policy lives in ``chatsite/settings.py`` ("Security headers and CSP"). Its one exception is a
per-response nonce in style-src, for ``<style nonce>`` blocks: the reply-metrics admin page's,
and Django's own (admin change lists without actions, the CSRF failure page).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation

if TYPE_CHECKING:
    from tests.fake_anthropic import FakeAnthropicControl
    from tests.live import DaphneProcess, LiveApp

pytest_plugins = ("tests.live",)  # the live_app and live_fake_anthropic fixtures

# The browser fixtures and helpers. Importing tests.test_browser skips (or, under CI=true,
# fails) where Playwright or Chromium is missing; only the browser tests here skip then.
try:
    from playwright.sync_api import Browser, Page, expect

    from tests.test_browser import (
        QUICK,
        WAIT_MS,
        chromium,
        expect_complete,
        expect_interrupted,
        expect_streaming,
        fake,
        new_chat,
        new_context,
        page,
        send_with_enter,
        sign_in,
        watch_text_grow,
    )
except pytest.skip.Exception as exc:
    BROWSER_MISSING = str(exc)
except ImportError as exc:  # pragma: no cover - depends on the machine
    BROWSER_MISSING = f"playwright cannot be imported ({exc})"
else:
    BROWSER_MISSING = ""
    # Fixtures used by name below (imported so pytest finds them in this module).
    __all__ = ["chromium", "fake", "new_context", "page"]

needs_browser = pytest.mark.skipif(bool(BROWSER_MISSING), reason=BROWSER_MISSING or "-")

#: The policy, directive by directive; style-src also carries the response's nonce when the
#: page used one (see expected_policy).
POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
NONCE = re.compile(r'\bnonce="([A-Za-z0-9_-]{16,})"')
REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = REPO_ROOT / "templates"


def directives(header: str) -> dict[str, list[str]]:
    """A CSP header as {directive: [source, ...]}, refusing a directive given twice."""
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} twice in {header!r}"
        parsed[name] = sources
    return parsed


def expected_policy(nonce: str | None = None) -> dict[str, list[str]]:
    policy = {name: list(sources) for name, sources in POLICY.items()}
    if nonce:
        policy["style-src"].append(f"'nonce-{nonce}'")
    return policy


def assert_strict(policy: dict[str, list[str]]) -> None:
    for name, sources in policy.items():
        for weak in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:"):
            assert weak not in sources, f"{weak} in {name}"
    assert policy["script-src"] == ["'self'"]


def page_nonce(html: str) -> str:
    """The one nonce every nonce attribute of the page carries."""
    nonces = set(NONCE.findall(html))
    assert len(nonces) == 1, f"expected one nonce in the page, found {nonces}"
    return nonces.pop()


# --------------------------------------------------------------------------------------------
# The header on the pages, through Django's test client (the policy does not depend on DEBUG)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def staff(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_superuser("root", password="admin-pass-123")


def _page(client: Client, url: str) -> tuple[dict[str, list[str]], str]:
    response = client.get(url)
    assert response.status_code == 200, url
    return directives(response["Content-Security-Policy"]), response.content.decode()


@pytest.mark.django_db
def test_the_conversation_page_has_the_strict_policy(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    policy, html = _page(client, reverse("chat:conversation_detail", args=[conversation.pk]))
    assert policy == expected_policy(page_nonce(html))
    assert_strict(policy)
    # htmx runs without eval and without injecting its indicator <style>.
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", html)
    assert meta, "the htmx-config meta is missing"
    assert json.loads(meta.group(1)) == {
        "allowEval": False,
        "includeIndicatorStyles": False,
        # htmx's default also settles "style": it would copy a style attribute (a textarea the
        # user resized) onto the swapped-in element with setAttribute, which the policy blocks.
        "attributesToSettle": ["class", "width", "height"],
    }


@pytest.mark.django_db
def test_the_login_page_has_the_strict_policy(client: Client) -> None:
    policy, html = _page(client, reverse("login"))
    assert policy == expected_policy(page_nonce(html))
    assert_strict(policy)


@pytest.mark.django_db
@pytest.mark.parametrize("page_name", ["index", "change", "metrics"])
def test_admin_pages_have_the_strict_policy_and_use_its_nonce(
    client: Client, staff: User, conversation: Conversation, page_name: str
) -> None:
    client.force_login(staff)
    url = {
        "index": reverse("admin:index"),
        "change": reverse("admin:chat_conversation_change", args=[conversation.pk]),
        "metrics": reverse("admin_chat_metrics"),
    }[page_name]
    policy, html = _page(client, url)
    nonce = page_nonce(html)
    assert policy == expected_policy(nonce)
    assert_strict(policy)
    if page_name == "metrics":
        # The exception exists for this: the page's own <style> block, allowed by the nonce.
        assert f'<style nonce="{nonce}">' in html


@pytest.mark.django_db
def test_a_response_without_a_nonce_in_it_has_none_in_its_policy_and_nonces_are_fresh(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    json_response = client.get(
        reverse("chat:active_replies"), headers={"accept": "application/json"}
    )
    assert json_response["Content-Type"] == "application/json"
    assert directives(json_response["Content-Security-Policy"]) == expected_policy()

    url = reverse("chat:conversation_detail", args=[conversation.pk])
    first, second = (page_nonce(client.get(url).content.decode()) for _ in range(2))
    assert first != second


def test_no_template_has_inline_script_style_attribute_handler_or_eval() -> None:
    """What the policy would block, or what would need 'unsafe-eval' in htmx, is not written."""
    problems: list[str] = []
    patterns = {
        "a style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
        "an inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
        "an on* handler": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
        "a javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
        "hx-on (eval)": re.compile(r"\b(data-)?hx-on", re.IGNORECASE),
        "hx-vars (eval)": re.compile(r"\b(data-)?hx-vars", re.IGNORECASE),
        "hx-vals with js: (eval)": re.compile(r"hx-vals\s*=\s*['\"]\s*(js|javascript):", re.I),
        "an hx-trigger filter (eval)": re.compile(r"hx-trigger\s*=\s*['\"][^'\"]*\[", re.I),
        "a <style> without the nonce": re.compile(
            r"<style(?![^>]*\{%\s*csp_nonce_attr\s*%\})[^>]*>", re.IGNORECASE
        ),
    }
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert templates
    for path in templates:
        text = path.read_text()
        for what, pattern in patterns.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{path.relative_to(REPO_ROOT)}:{line}: {what}: {match.group()}")
    assert not problems, "\n".join(problems)


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_and_the_proxys_https_gets_hsts(
    client: Client, settings: Any
) -> None:
    # The production values (see test_production_defaults_and_their_environment_variables);
    # the live daphne below cannot show the redirect: its start-up probe speaks plain HTTP.
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    plain = client.get("/accounts/login/")
    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/accounts/login/"
    assert "Strict-Transport-Security" not in plain

    proxied = client.get("/accounts/login/", headers={"x-forwarded-proto": "https"})
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


# --------------------------------------------------------------------------------------------
# Production settings, the way an operator runs them: a subprocess with a clean environment
# --------------------------------------------------------------------------------------------


# tests.live is imported where it is used (as tests/test_browser.py does), so that pytest
# loads it first as a plugin and can still assert-rewrite it.


def app_env(**kwargs: Any) -> dict[str, str]:
    from tests.live import app_env

    return app_env(**kwargs)


def manage(env: dict[str, str], *args: str) -> str:
    from tests.live import manage

    return manage(env, *args)


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The README's production variables (a fresh 67-character key), nothing inherited of
    the app's own variables; ``extra`` adds or overrides."""
    return app_env(
        database_url=f"sqlite:///{tmp_path / 'prod.db'}",
        anthropic_base_url="http://127.0.0.1:9",  # never called here
        **{
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "chat.example.com",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
        }
        | extra,
    )


@pytest.mark.parametrize(
    ("extra", "silenced"),
    [
        ({}, "1 silenced"),  # security.W021: HSTS preload is opt-in
        ({"DJANGO_HSTS_PRELOAD": "1"}, "0 silenced"),
    ],
)
def test_check_deploy_passes_with_the_production_variables(
    tmp_path: Path, extra: dict[str, str], silenced: str
) -> None:
    output = manage(
        production_env(tmp_path, **extra), "check", "--deploy", "--fail-level", "WARNING"
    )
    assert "System check identified no issues" in output
    assert f"({silenced})" in output


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        ({"DJANGO_SSL_REDIRECT": "0"}, "security.W008"),
        ({"DJANGO_HSTS_SECONDS": "0"}, "security.W004"),
        ({"DJANGO_HSTS_INCLUDE_SUBDOMAINS": "0"}, "security.W005"),
        ({"DJANGO_SECRET_KEY": "too-short"}, "security.W009"),
    ],
)
def test_check_deploy_still_catches_a_weakened_production_setting(
    tmp_path: Path, extra: dict[str, str], warning: str
) -> None:
    # The clean run above is not vacuous: turning one knob down fails it.
    with pytest.raises(RuntimeError, match=re.escape(warning)):
        manage(production_env(tmp_path, **extra), "check", "--deploy", "--fail-level", "WARNING")


def test_production_without_a_secret_key_fails_with_a_clear_message(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    with pytest.raises(RuntimeError) as failure:
        manage(env, "check", "--deploy")
    assert (
        "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY must be set when "
        "DJANGO_DEBUG is off" in str(failure.value)
    )


SETTINGS_DUMP = (
    "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k"
    " in ['SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD',"
    " 'SECURE_SSL_REDIRECT', 'SECURE_PROXY_SSL_HEADER', 'SESSION_COOKIE_SECURE',"
    " 'CSRF_COOKIE_SECURE', 'SECURE_CONTENT_TYPE_NOSNIFF', 'SECURE_REFERRER_POLICY',"
    " 'X_FRAME_OPTIONS', 'SECURE_CROSS_ORIGIN_OPENER_POLICY']}))"
)


def _settings(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(manage(env, "shell", "-c", SETTINGS_DUMP).strip().splitlines()[-1])


def test_production_defaults_and_their_environment_variables(tmp_path: Path) -> None:
    common = {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_CROSS_ORIGIN_OPENER_POLICY": "same-origin",
    }
    assert _settings(production_env(tmp_path)) == common | {
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    tuned = production_env(
        tmp_path,
        DJANGO_HSTS_SECONDS="600",
        DJANGO_HSTS_INCLUDE_SUBDOMAINS="0",
        DJANGO_HSTS_PRELOAD="1",
        DJANGO_SSL_REDIRECT="0",
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
    )
    assert _settings(tuned) == common | {
        "SECURE_HSTS_SECONDS": 600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    # Development (DJANGO_DEBUG=1): no HSTS, no redirect, cookies over plain HTTP.
    development = app_env(
        database_url=f"sqlite:///{tmp_path / 'dev.db'}", anthropic_base_url="http://127.0.0.1:9"
    )
    dev = _settings(development)
    assert (dev["SECURE_HSTS_SECONDS"], dev["SECURE_SSL_REDIRECT"]) == (0, False)
    assert (dev["SESSION_COOKIE_SECURE"], dev["CSRF_COOKIE_SECURE"]) == (False, False)


# --------------------------------------------------------------------------------------------
# daphne with DJANGO_DEBUG=0: the headers as a browser behind nginx would get them
# --------------------------------------------------------------------------------------------

#: The production settings with one change: STATIC_ROOT in a temp dir, so collectstatic (the
#: manifest that DJANGO_DEBUG=0 needs) never writes into the shared checkout.
PROD_SETTINGS_MODULE = """\
import os

from chatsite.settings import *  # noqa: F403

STATIC_ROOT = os.environ["TEST_STATIC_ROOT"]
"""


@pytest.fixture(scope="module")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    tmp = tmp_path_factory.mktemp("production")
    (tmp / "security_test_settings.py").write_text(PROD_SETTINGS_MODULE)
    env = production_env(
        tmp,
        DJANGO_SETTINGS_MODULE="security_test_settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH", "")])),
        TEST_STATIC_ROOT=str(tmp / "static"),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # TLS ends at "nginx": this test plays it by sending X-Forwarded-Proto: https. The
        # redirect stays off only because start_daphne's readiness probe speaks plain HTTP.
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        DJANGO_SSL_REDIRECT="0",
    )
    from tests.live import run_daphne

    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    with run_daphne(env, log_path=tmp / "daphne.log") as server:
        yield server


def _get(
    server: DaphneProcess, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, str]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode(errors="replace")
    finally:
        connection.close()


HTTPS = {"X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_production_pages_over_the_proxys_https_carry_every_security_header(
    production_server: DaphneProcess, path: str
) -> None:
    status, headers, html = _get(production_server, path, HTTPS)
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    policy = directives(headers["Content-Security-Policy"])
    assert policy == expected_policy(page_nonce(html))
    assert_strict(policy)
    csrf_cookie = next(c for c in headers.get_all("Set-Cookie") or [] if c.startswith("csrftoken="))
    assert "; Secure" in csrf_cookie


def test_production_over_plain_http_sends_no_hsts_but_the_other_headers(
    production_server: DaphneProcess,
) -> None:
    # Browsers ignore HSTS over plain HTTP; Django sends it on HTTPS responses only.
    status, headers, _ = _get(production_server, "/accounts/login/")
    assert status == 200
    assert "Strict-Transport-Security" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in headers


def test_production_error_pages_carry_the_policy_too(production_server: DaphneProcess) -> None:
    status, headers, _ = _get(production_server, "/no-such-page/", HTTPS)
    assert status == 404
    assert directives(headers["Content-Security-Policy"]) == expected_policy()
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


# --------------------------------------------------------------------------------------------
# A real Chromium under the policy
# --------------------------------------------------------------------------------------------

#: Reports every CSP violation of every document to Python (an init script runs outside the
#: page's policy: it is not an inline script).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(
    `${location.pathname}: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.sourceFile}:${e.lineNumber} ${e.sample}`
  );
});
"""


@pytest.mark.browser
@needs_browser
def test_chat_stop_and_admin_work_in_chromium_with_no_policy_violation(
    page: Page, live_app: LiveApp, fake: FakeAnthropicControl
) -> None:
    violations: list[str] = []

    def report(text: str) -> None:
        violations.append(text)

    page.expose_function("reportCspViolation", report)
    page.add_init_script(REPORT_VIOLATIONS)
    documents: list[tuple[str, str | None]] = []

    def on_response(response: Any) -> None:
        if response.request.resource_type == "document" and response.status == 200:
            documents.append((response.url, response.headers.get("content-security-policy")))

    page.on("response", on_response)

    # Chat: sign in, a reply streams over the socket (connect-src 'self') and completes.
    sign_in(page, live_app)
    conversation = new_chat(page)
    # The composer resized, as its resize handle does (an inline style set through the CSSOM,
    # which the policy allows): the frames that swap the composer must not copy it over.
    page.locator("#composer-input").evaluate("box => { box.style.height = '7em'; }")
    _, reply = send_with_enter(page, f"{QUICK} Hello under the policy. (csp)")
    expect_complete(page, reply)
    # A long one, stopped with the button.
    _, long_reply = send_with_enter(page, "Take your time. (csp-stop)")
    expect_streaming(page, long_reply)
    watch_text_grow(page, long_reply, observations=2)
    page.locator("#stop-button").click()
    expect_interrupted(page, long_reply)
    # Reloaded: the finished replies are now rendered by the server, not by a frame.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    expect(page.locator(f"#msg-{long_reply} .marker")).to_have_text("[Interrupted]")

    # The admin, as staff: its login, index, the conversation's change page, the metrics.
    from tests.live import create_user

    password = f"staff-{secrets.token_urlsafe(9)}"
    create_user(live_app.env, "csp-staff", password, staff=True)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    page.goto("/admin/")
    page.get_by_label("Username").fill("csp-staff")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_title(re.compile("administration", re.IGNORECASE))
    page.goto(f"/admin/chat/conversation/{conversation}/change/")
    expect(page.locator("#content")).to_contain_text("Hello under the policy.")
    page.goto("/admin/chat/metrics/")
    # The page's own <style nonce> applied: its row headings are 16em wide.
    heading = page.locator("#reply-metrics th[scope=row]").first
    width, font_size = heading.evaluate(
        "th => [getComputedStyle(th).width, getComputedStyle(th).fontSize].map(parseFloat)"
    )
    assert abs(width - 16 * font_size) < 1, (width, font_size)

    page.wait_for_timeout(200)  # a violation event is dispatched asynchronously
    assert not violations, "CSP violations:\n" + "\n".join(violations)
    paths = [re.sub(r"^https?://[^/]+", "", url) for url, _ in documents]
    assert any(p.startswith("/conversations/") for p in paths), paths
    assert any(p.startswith("/admin/chat/conversation/") for p in paths), paths
    for url, header in documents:
        assert header, f"no Content-Security-Policy on {url}"
        policy = directives(header)
        assert_strict(policy)
        assert {k: v for k, v in policy.items() if k != "style-src"} == {
            k: v for k, v in POLICY.items() if k != "style-src"
        }, url


@pytest.mark.browser
@needs_browser
def test_chromium_enforces_the_policy_injected_script_style_and_eval_are_refused(
    chromium: Browser, live_app: LiveApp
) -> None:
    # Its own context: the violations below are the point, so they must not fail the test the
    # way new_context fails any console error.
    context = chromium.new_context(base_url=live_app.base_url)
    try:
        page = context.new_page()
        page.add_init_script(
            "window.__violations = [];"
            "document.addEventListener('securitypolicyviolation',"
            " (e) => window.__violations.push(e.effectiveDirective));"
        )
        page.goto("/accounts/login/")
        result = page.evaluate(
            """() => {
              const script = document.createElement("script");
              script.textContent = "window.__inlineRan = true";
              document.body.append(script);
              const box = document.createElement("div");
              box.setAttribute("style", "color: rgb(255, 0, 0)");
              document.body.append(box);
              return {
                inlineRan: window.__inlineRan === true,
                color: getComputedStyle(box).color,
                htmxAllowEval: window.htmx.config.allowEval,
                styleElements: document.querySelectorAll("style").length,
              };
            }"""
        )
        assert result["inlineRan"] is False
        assert result["color"] != "rgb(255, 0, 0)"
        # eval from the page's own code (a timer callback; Playwright's evaluate itself may eval).
        page.evaluate(
            """() => setTimeout(() => {
              try { window.__evaluated = eval("'eval ran'"); }
              catch (e) { window.__evaluated = e.name; }
            }, 0)"""
        )
        page.wait_for_function("window.__evaluated !== undefined")
        assert page.evaluate("window.__evaluated") == "EvalError"
        assert result["htmxAllowEval"] is False
        assert result["styleElements"] == 0  # htmx injected no indicator <style>
        deadline = time.monotonic() + WAIT_MS / 1000
        while len(page.evaluate("window.__violations")) < 3 and time.monotonic() < deadline:
            page.wait_for_timeout(20)
        assert sorted(page.evaluate("window.__violations")) == [
            "script-src",
            "script-src-elem",
            "style-src-attr",
        ]
    finally:
        context.close()
