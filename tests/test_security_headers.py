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

Here: the header through Django's test client, and the production settings through
``manage.py``. daphne with ``DJANGO_DEBUG=0``: tests/live/test_security_headers.py; Chromium under
the policy: tests/browser/test_security_headers.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation
from chat.testing.live import REPO_ROOT, app_env, manage
from tests.helpers import assert_strict, directives, expected_policy, page_nonce, production_env

TEMPLATES = REPO_ROOT / "templates"


# --------------------------------------------------------------------------------------------
# The header on the pages, through Django's test client (the policy does not depend on DEBUG)
# --------------------------------------------------------------------------------------------


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
