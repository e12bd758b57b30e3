"""Static files are served at the ASGI layer; no middleware pulls requests onto the DB thread."""

from __future__ import annotations

from channels.testing import HttpCommunicator
from django.conf import settings
from django.utils.module_loading import import_string

from chatsite.asgi import application


def test_every_middleware_is_async_capable() -> None:
    # A sync-only middleware would run requests on Django's one thread-sensitive worker and
    # stall every reply's database writes while a view waits (see chatsite/static_asgi.py).
    for path in settings.MIDDLEWARE:
        assert getattr(import_string(path), "async_capable", False), path


async def test_htmx_and_the_ws_extension_are_served_locally_with_caching_headers() -> None:
    for path in ["/static/django_htmx/htmx-2.min.js", "/static/django_htmx/ext/hx-ws-2.min.js"]:
        response = await HttpCommunicator(application, "GET", path).get_response()
        assert response["status"] == 200
        assert b"htmx" in response["body"]
        headers = dict(response["headers"])
        etag = headers[b"etag"]
        again = await HttpCommunicator(
            application, "GET", path, headers=[(b"if-none-match", etag)]
        ).get_response()
        assert again["status"] == 304


async def test_unknown_static_path_falls_through_to_django() -> None:
    response = await HttpCommunicator(
        application, "GET", "/static/nope.js", headers=[(b"host", b"127.0.0.1")]
    ).get_response()
    assert response["status"] == 404
