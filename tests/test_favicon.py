"""The favicon: every page links static/favicon.svg, and /favicon.ico (what a browser asks for
where no icon is linked: the admin, a PDF opened on its own) is a permanent redirect to it.

Through the ASGI application as daphne runs it (static files are served at the ASGI layer,
chatsite/static_asgi.py), and through daphne with the production settings (DJANGO_DEBUG=0,
collectstatic's hashed names). The browser tests' console check (tests/browser/conftest.py)
forgives no 404 for /favicon.ico any more.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from channels.testing import HttpCommunicator
from django.test import AsyncClient

from chat.testing.live import DaphneProcess
from chatsite.asgi import application
from tests.helpers import directives, http_get

# The ASGI application starts the app's background tasks (the reaper) on its first request.
pytestmark = pytest.mark.django_db(transaction=True)

#: The light theme's accent (static/chat/chat.css, --accent).
ACCENT = "#a94f2f"

ICON_LINK = re.compile(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">')


async def asgi_get(path: str, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    response = await HttpCommunicator(
        application, method, path, headers=[(b"host", b"127.0.0.1")]
    ).get_response()
    headers = {name.lower(): value for name, value in response["headers"]}
    return response["status"], headers, response["body"]


def assert_is_the_icon(status: int, content_type: str, body: bytes) -> None:
    assert status == 200
    assert content_type.split(";")[0] == "image/svg+xml"
    svg = ET.fromstring(body)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.get("viewBox") == "0 0 32 32"
    fills = {element.get("fill") for element in svg.iter()}
    assert ACCENT in fills  # the speech bubble, in the app's accent


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_favicon_ico_redirects_for_good_to_the_served_svg(method: str) -> None:
    status, headers, _ = await asgi_get("/favicon.ico", method)
    assert status == 301
    location = headers[b"location"].decode()
    assert location == "/static/favicon.svg"

    status, headers, body = await asgi_get(location)
    assert_is_the_icon(status, headers[b"content-type"].decode(), body)


@pytest.mark.parametrize("path", ["/accounts/login/", "/signup/"])
async def test_pages_link_the_icon_and_the_policy_lets_it_load(path: str) -> None:
    response = await AsyncClient().get(path)
    assert response.status_code == 200
    html = response.content.decode()
    found = ICON_LINK.search(html)
    assert found is not None, "base.html links no icon"
    href = found.group(1)
    assert href == "/static/favicon.svg"
    assert html.count('rel="icon"') == 1
    # Same origin, so img-src 'self' covers it.
    assert "'self'" in directives(response.headers["Content-Security-Policy"])["img-src"]

    status, headers, body = await asgi_get(href)
    assert_is_the_icon(status, headers[b"content-type"].decode(), body)


# --------------------------------------------------------------------------------------------
# daphne with DJANGO_DEBUG=0: the icon by its hashed name, and /favicon.ico
# --------------------------------------------------------------------------------------------


def test_in_production_pages_link_the_hashed_icon_and_favicon_ico_finds_it(
    production_server: DaphneProcess,
) -> None:
    status, _, page = http_get(production_server, "/accounts/login/")
    assert status == 200
    found = ICON_LINK.search(page.decode())
    assert found is not None
    href = found.group(1)
    assert re.fullmatch(r"/static/favicon\.[0-9a-f]{12}\.svg", href), href
    status, headers, body = http_get(production_server, href)
    assert_is_the_icon(status, headers["Content-Type"], body)
    assert "immutable" in headers["Cache-Control"]  # a hashed name is cached for good

    status, headers, _ = http_get(production_server, "/favicon.ico")
    assert status == 301
    assert headers["Location"] == "/static/favicon.svg"
    status, headers, body = http_get(production_server, headers["Location"])
    assert_is_the_icon(status, headers["Content-Type"], body)
