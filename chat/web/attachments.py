"""Attachments on the page: upload one (into the composer), take it back out, open it.

The composer uploads each picked, dropped or pasted file here at once (static/chat/chat.js) and
shows the chip this returns; the message's frame then names the uploads it carries. An upload
not sent yet belongs to the composer it was attached in (its conversation's, or a new chat's):
the page shows its chip there again after a reload, until it is sent or removed. A file is
served only to its owner (an admin with the view permission too): 404 for anyone else, the
sign-in page for nobody signed in. Nothing is ever served as HTML or SVG: a text file is
`text/plain` (and downloaded when its name says HTML, SVG or XML), every response says
`nosniff`, and a sandboxing CSP covers what a browser shows.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files import File
from django.core.files.storage import storages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template.loader import render_to_string
from django.utils.http import content_disposition_header
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from chat.files import checks, store
from chat.files.checks import AttachmentRefused
from chat.models import Attachment
from chat.web.chunks import file_chunks

logger = logging.getLogger(__name__)

#: Names whose files a browser might render as a page: always downloaded, never shown.
DOWNLOADED_EXTENSIONS = frozenset({"htm", "html", "xhtml", "svg", "svgz", "xml", "xsl", "xslt"})


#: The CSP of a served file: nothing runs, nothing loads but the file itself.
FILE_CSP: dict[str, Any] = {
    "default-src": ["'none'"],
    "img-src": ["'self'"],
    "style-src": ["'unsafe-inline'"],  # (the browser's own image and text viewers)
    "sandbox": True,
}
#: A PDF's: the browser's PDF viewer does not run in a sandboxed document.
PDF_CSP: dict[str, Any] = {
    "default-src": ["'none'"],
    "img-src": ["'self'"],
    "style-src": ["'unsafe-inline'"],
    "object-src": ["'self'"],
}


def _refused(exc: AttachmentRefused) -> JsonResponse:
    return JsonResponse({"error": {"type": exc.error_type, "message": str(exc)}}, status=exc.status)


def _read_upload(request: HttpRequest) -> tuple[checks.CheckedFile, str | None]:
    """Parse the form's one file and check it (in a worker thread: Pillow takes a while); the
    file and the conversation whose composer it goes in (field `conversation`; none: a new
    chat's)."""
    upload = request.FILES.get("file")
    if upload is None:
        raise AttachmentRefused(
            gettext("No file came with the request (the form field is `file`).")
        )
    name = checks.clean_name(upload.name)
    checks.check_size(name, upload.size or 0)
    return checks.check_file(name, upload.read(), upload.content_type), request.POST.get(
        "conversation"
    )


@login_required
@require_POST
async def upload(request: HttpRequest) -> HttpResponseBase:
    """One file into the user's composer: 201 and its chip, or 400/404/413 with why not."""
    user = await request.auser()
    limit = settings.CHAT_MAX_ATTACHMENT_BYTES
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 64 * 1024:
        name = checks.clean_name(request.headers.get("X-File-Name", gettext("The file")))
        return _refused(
            AttachmentRefused(
                gettext("%(name)s is too large: files can be at most %(limit)s.")
                % {"name": name, "limit": checks.size_text(limit)},
                status=413,
            )
        )
    try:
        checked, draft_for = await sync_to_async(_read_upload, thread_sensitive=False)(request)
        attachment = await database_sync_to_async(store.attachment_create)(
            user=user, checked=checked, draft_for=draft_for
        )
    except AttachmentRefused as exc:
        return _refused(exc)
    html = render_to_string("chat/_attachment_chip.html", {"a": attachment}, request=request)
    return HttpResponse(html, status=201)


@login_required
@require_POST
async def remove(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """Take an unsent upload back out of the composer (the remove button on its chip)."""
    user = await request.auser()
    removed = await database_sync_to_async(store.discard_unsent)(
        attachment_id=attachment_id, user=user
    )
    if not removed:
        raise Http404("No such file waiting to be sent.")
    return HttpResponse(status=204)


def _open(name: str) -> tuple[File, int]:
    storage = storages["attachments"]
    return storage.open(name, "rb"), storage.size(name)


async def _owned(request: HttpRequest, attachment_id: uuid.UUID) -> Attachment:
    user = await request.auser()
    found = await database_sync_to_async(store.attachment_for_user)(
        attachment_id=attachment_id, user=user
    )
    if found is None:
        raise Http404("No such file.")
    return found


@login_required
@require_GET
async def view(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponseBase:
    """The file, to its owner: shown in the browser (a text file as plain text), or downloaded
    with `?download=1`; an HTML, SVG or XML file is always downloaded."""
    attachment = await _owned(request, attachment_id)
    extension = attachment.name.rpartition(".")[2].lower() if "." in attachment.name else ""
    download = request.GET.get("download") == "1" or extension in DOWNLOADED_EXTENSIONS
    content_type = attachment.media_type
    if attachment.kind == Attachment.Kind.TEXT:
        content_type = "text/plain; charset=utf-8"
    return await _file_response(
        attachment.file.name or "",
        content_type=content_type,
        filename=attachment.name,
        download=download,
        csp=PDF_CSP if attachment.kind == Attachment.Kind.DOCUMENT else FILE_CSP,
    )


@login_required
@require_GET
async def thumbnail(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponseBase:
    """An image's small copy, for the bubbles and the composer's chips."""
    attachment = await _owned(request, attachment_id)
    if not attachment.thumbnail.name:
        raise Http404("This file has no thumbnail.")
    return await _file_response(
        attachment.thumbnail.name, content_type="image/webp", filename="", csp=FILE_CSP
    )


async def _file_response(
    name: str, *, content_type: str, filename: str, download: bool = False, csp: dict[str, Any]
) -> HttpResponseBase:
    """The stored file, opened and then streamed in chunks in a worker thread, never on the
    event loop (a network call with an S3 store; and a synchronous file handed to Django's
    async handler would be read whole into memory first)."""
    try:
        handle, size = await sync_to_async(_open, thread_sensitive=False)(name)
    except OSError:
        logger.exception("attachment file %s could not be opened", name)
        raise Http404("The file is missing.") from None
    response = StreamingHttpResponse(file_chunks(handle), content_type=content_type)
    response["Content-Length"] = str(size)
    if disposition := content_disposition_header(download, filename):
        response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    response._csp_config = csp  # type: ignore[attr-defined]  # (django.views.decorators.csp)
    return response
