"""Twisted, under daphne, must not parse form bodies on the event loop (a 10 MB upload held
it 0.3-0.7 s and cost 100 MiB: bench/attachments.py): chatsite/daphne_bodies.py turns it off
through Twisted's own constructor parameter. Checked on the real classes, so an upgrade of
daphne or Twisted that moves the mechanism fails here."""

from __future__ import annotations

import inspect
from typing import Any

import chatsite.asgi  # noqa: F401  (installs it, as `daphne chatsite.asgi:application` does)
from chatsite.daphne_bodies import leave_form_bodies_unparsed


class _Server:
    def protocol_connected(self, request: Any) -> None:
        pass


class _Channel:
    """Just enough of a Twisted HTTP channel for a daphne request to be made."""

    transport = None

    class factory:
        server = _Server()

    def getPeer(self) -> None:
        return None

    def getHost(self) -> None:
        return None


def test_daphnes_requests_leave_form_bodies_to_django() -> None:
    from daphne.http_protocol import WebRequest
    from twisted.web import http

    assert leave_form_bodies_unparsed() is True  # (installed once; a second call is a no-op)
    request = WebRequest(_Channel())
    assert request._parsePOSTFormSubmission is False
    # The flag is what Twisted's request consults before parsing a POST body.
    source = inspect.getsource(http.Request.requestReceived)
    assert "self._parsePOSTFormSubmission" in source
    assert "_getMultiPartArgs" in source
