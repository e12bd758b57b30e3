"""Export and import: a conversation as Markdown or JSON, all of a user's as a zip, and an
exported JSON read back as a new conversation (chat/data/export.py and imports.py do the work).

Owner-only, as every page: another user's conversation is a 404, nobody signed in is sent to
sign in. The database is read in `database_sync_to_async`; the files are written (JSON, zip) in
worker threads into a temporary file, which is then streamed in chunks, so an export of many
large attachments never sits in memory whole.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from typing import IO

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from chat.data import export, imports, selectors
from chat.files.checks import clean_name, size_text
from chat.models import Conversation
from chat.web.chunks import file_chunks

logger = logging.getLogger(__name__)

#: Kept in memory up to this size, then on disk.
SPOOL_BYTES = 4 * 1024 * 1024
#: The tag of the import's error among the request's messages (chat/_account_data.html).
IMPORT_ERROR_TAG = "import-error"

_conversation_snapshot = database_sync_to_async(export.conversation_snapshot)


async def _owned(request: HttpRequest, conversation_id: str) -> Conversation:
    """The signed-in user's conversation; 404 for anyone else's (never a hint it exists)."""
    conversation = await selectors.aconversation_for_user(
        conversation_id=conversation_id, user=await request.auser()
    )
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _download(
    content: bytes | IO[bytes], *, content_type: str, filename: str, size: int
) -> HttpResponseBase:
    response: HttpResponseBase
    if isinstance(content, bytes):
        response = HttpResponse(content, content_type=content_type)
    else:
        response = StreamingHttpResponse(file_chunks(content), content_type=content_type)
        response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition_header(True, filename) or "attachment"
    response["Cache-Control"] = "private, no-store"
    return response


def _json_file(snapshot: export.Snapshot) -> tuple[IO[bytes], int]:
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (streamed, then closed)
    try:
        export.write_json(snapshot, out)
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, size


@login_required
@require_GET
async def conversation_markdown(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    """The shown branch as a Markdown transcript, downloaded."""
    conversation = await _owned(request, conversation_id)
    snapshot = await _conversation_snapshot(conversation=conversation)
    text = export.markdown(snapshot)
    return _download(
        text.encode(),
        content_type="text/markdown; charset=utf-8",
        filename=export.filename(conversation, "md"),
        size=0,
    )


@login_required
@require_GET
async def conversation_json(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    """Every version of every message, with the files, as JSON that the import reads back."""
    conversation = await _owned(request, conversation_id)
    snapshot = await _conversation_snapshot(conversation=conversation)
    handle, size = await sync_to_async(_json_file, thread_sensitive=False)(snapshot)
    return _download(
        handle,
        content_type="application/json",
        filename=export.filename(conversation, "json"),
        size=size,
    )


def _conversation_ids(user: AbstractBaseUser) -> list[str]:
    return [str(pk) for pk in selectors.conversation_list(user=user).values_list("pk", flat=True)]


def _zip_entries(archive: zipfile.ZipFile, snapshot: export.Snapshot, used: set[str]) -> None:
    """One conversation's JSON and Markdown in the zip, under a name no other entry has."""
    stem = export.filename(snapshot.conversation, "").rstrip(".")
    stem = f"{stem}-{snapshot.conversation.pk.hex[:8]}"
    while stem in used:  # (two titles alike, and their ids' first 8 digits too)
        stem += "-"
    used.add(stem)
    with archive.open(f"conversations/{stem}.json", "w", force_zip64=True) as entry:
        export.write_json(snapshot, entry)
    archive.writestr(f"conversations/{stem}.md", export.markdown(snapshot))


@login_required
@require_GET
async def export_all(request: HttpRequest) -> HttpResponseBase:
    """Every conversation of the user, each as JSON and Markdown, in a zip built in a temporary
    file one conversation at a time (one is read from the database, written, and dropped before
    the next)."""
    user = await request.auser()
    ids = await database_sync_to_async(_conversation_ids)(user)
    out = tempfile.TemporaryFile()  # noqa: SIM115 (streamed, then closed)
    try:
        archive = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)
        used: set[str] = set()
        for conversation_id in ids:
            conversation = await selectors.aconversation_for_user(
                conversation_id=conversation_id, user=user
            )
            if conversation is None:
                continue  # (deleted meanwhile)
            snapshot = await _conversation_snapshot(conversation=conversation)
            await sync_to_async(_zip_entries, thread_sensitive=False)(archive, snapshot, used)
        await sync_to_async(archive.close, thread_sensitive=False)()
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    stamp = timezone.localtime().strftime("%Y-%m-%d")
    return _download(
        out, content_type="application/zip", filename=f"stopchat-{stamp}.zip", size=size
    )


def _refused(request: HttpRequest, exc: imports.ImportRefused) -> HttpResponse:
    """Back to the account page, which shows why (the form starts afresh)."""
    messages.error(request, str(exc), extra_tags=IMPORT_ERROR_TAG)
    return redirect(f"{reverse('chat:account')}#data")


def _read_upload(request: HttpRequest) -> bytes:
    """The form's file, whole (in a worker thread: the multipart body is parsed here)."""
    upload: UploadedFile | None = request.FILES.get("file")
    if upload is None:
        raise imports.ImportRefused(
            gettext("Choose a file to import (a conversation exported as JSON).")
        )
    if (upload.size or 0) > imports.MAX_IMPORT_BYTES:
        raise imports.ImportRefused(
            gettext("%(name)s is %(size)s; an import can be at most %(limit)s.")
            % {
                "name": clean_name(upload.name),
                "size": size_text(upload.size or 0),
                "limit": size_text(imports.MAX_IMPORT_BYTES),
            },
            status=413,
        )
    return upload.read()


def _parse_upload(request: HttpRequest) -> imports.ImportPlan:
    return imports.parse(_read_upload(request))


@login_required
@require_POST
async def import_conversation(request: HttpRequest) -> HttpResponse:
    """An exported JSON as a new conversation of the user: to it on success; back to the
    account page, which says why, for a file refused (nothing of it is saved)."""
    user = await request.auser()
    limit = imports.MAX_IMPORT_BYTES
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 64 * 1024:
        return _refused(
            request,
            imports.ImportRefused(
                gettext("That file is too large: an import can be at most %(limit)s.")
                % {"limit": size_text(limit)},
                status=413,
            ),
        )
    try:
        plan = await sync_to_async(_parse_upload, thread_sensitive=False)(request)
        conversation = await database_sync_to_async(imports.conversation_import)(
            user=user, plan=plan
        )
    except imports.ImportRefused as exc:
        return _refused(request, exc)
    logger.info(
        "user %s imported conversation %s (%d messages, %d files)",
        user.pk,
        conversation.pk,
        len(plan.messages),
        len(plan.files),
    )
    return redirect("chat:conversation_detail", conversation_id=conversation.pk)
