"""The security headers as a browser behind nginx would get them: daphne with the production
settings (DJANGO_DEBUG=0; the fixture is ``production_server``). The policy itself, and
``check --deploy``: tests/test_security_headers.py."""

from __future__ import annotations

import pytest

from chat.testing.live import DaphneProcess
from tests.helpers import assert_strict, directives, expected_policy, http_get, page_nonce

# --------------------------------------------------------------------------------------------
# daphne with DJANGO_DEBUG=0: the headers as a browser behind nginx would get them
# --------------------------------------------------------------------------------------------


HTTPS = {"X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_production_pages_over_the_proxys_https_carry_every_security_header(
    production_server: DaphneProcess, path: str
) -> None:
    status, headers, body = http_get(production_server, path, HTTPS)
    html = body.decode()
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
    status, headers, _ = http_get(production_server, "/accounts/login/")
    assert status == 200
    assert "Strict-Transport-Security" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in headers


def test_production_error_pages_carry_the_policy_too(production_server: DaphneProcess) -> None:
    status, headers, _ = http_get(production_server, "/no-such-page/", HTTPS)
    assert status == 404
    assert directives(headers["Content-Security-Policy"]) == expected_policy()
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
