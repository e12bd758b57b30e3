"""Daphne passes request bodies to the app as they came; Twisted, under it, also parses every
form POST (`multipart/form-data` with Python's email package, urlencoded with parse_qs) into
`request.args`, which daphne never reads, on the event loop every reply and Stop run on.

The benchmark (bench/attachments.py) found that a 10 MB page upload cost the process about
100 MiB and blocked its event loop for 0.3-0.7 s in that parse alone: every reply and every
Stop of the process waited. Twisted's own constructor parameter `parsePOSTFormSubmission`
("This can use large amounts of memory for large uploads") turns it off; daphne does not pass
it, so this passes it for daphne's requests. Django parses the body itself, streaming files
to disk.
"""

from __future__ import annotations

import functools
from typing import Any


def leave_form_bodies_unparsed() -> bool:
    """Make daphne's requests skip Twisted's form parsing; False where daphne is not used."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # (served by another ASGI server)
        return False
    if getattr(WebRequest.__init__, "leaves_form_bodies_unparsed", False):
        return True
    original = WebRequest.__init__

    @functools.wraps(original)
    def __init__(self: WebRequest, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__.leaves_form_bodies_unparsed = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__
    return True
