"""Attachments on the page: uploaded into the composer (or refused, keeping nothing), served
only to their owner and never as a page, removed with their conversation, shown in the admin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from django.urls import reverse

from chat.data import services
from chat.models import Attachment, Conversation, Message
from chat.testing.files import HTML_PAGE, SVG_IMAGE, image_bytes, pdf_bytes
from tests.helpers import files_in, upload_file, uploaded_id

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_upload_is_stored_privately_under_an_id_and_answers_with_its_chip(
    owner_client: AsyncClient, user: User, attachments_dir: Path
) -> None:
    response = await upload_file(owner_client, "../../etc/shot.png", image_bytes(), "image/png")
    attachment_id = uploaded_id(response)
    chip = response.content.decode()
    assert 'name="attachments"' in chip and "shot.png" in chip
    attachment = await Attachment.objects.aget(pk=attachment_id)
    assert (attachment.user_id, attachment.message_id) == (user.pk, None)
    assert attachment.name == "shot.png"
    stored = files_in(attachments_dir)
    # The stored names are the owner's id and a new id, never the name given.
    assert [p.relative_to(attachments_dir).as_posix() for p in stored] == sorted(
        [f"{user.pk}/{attachment.pk.hex}.png", f"{user.pk}/{attachment.pk.hex}.thumb.webp"]
    )
    assert all("shot" not in p.name and "etc" not in p.parts for p in stored)
    assert stored[0].stat().st_mode & 0o077 == 0  # readable by the server's user only


@pytest.mark.parametrize(
    ("name", "data", "status", "says"),
    [
        ("x.png", HTML_PAGE, 400, "says it is an image"),
        ("empty.txt", b"", 400, "is empty"),
        ("big.txt", b"a" * 3000, 413, "at most 2.0 KB"),
        ("prog.exe", b"MZ\x90\x00" + bytes(range(200)), 400, "not supported"),
    ],
)
async def test_a_refused_upload_says_why_and_keeps_nothing(
    owner_client: AsyncClient,
    attachments_dir: Path,
    settings: object,
    name: str,
    data: bytes,
    status: int,
    says: str,
) -> None:
    settings.CHAT_MAX_ATTACHMENT_BYTES = 2048  # type: ignore[attr-defined]
    response = await upload_file(owner_client, name, data)
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"]
    assert error["type"] == ("request_too_large" if status == 413 else "invalid_request_error")
    assert await Attachment.objects.acount() == 0
    assert files_in(attachments_dir) == []


async def test_an_upload_far_over_the_limit_is_refused_by_its_length_before_it_is_read(
    owner_client: AsyncClient, settings: object
) -> None:
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1024  # type: ignore[attr-defined]
    response = await upload_file(owner_client, "huge.txt", b"a" * 200_000)
    assert response.status_code == 413
    assert "at most 1.0 KB" in response.json()["error"]["message"]


async def test_an_upload_needs_a_signed_in_user_and_the_csrf_token(user: User) -> None:
    anonymous = await upload_file(AsyncClient(), "a.txt", b"hello")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    strict = AsyncClient(enforce_csrf_checks=True)
    await strict.aforce_login(user)
    assert (await upload_file(strict, "a.txt", b"hello")).status_code == 403
    assert await Attachment.objects.acount() == 0


async def test_only_the_owner_opens_a_file_others_get_404_and_nobody_signed_in_the_login(
    owner_client: AsyncClient, other_user: User
) -> None:
    png = uploaded_id(await upload_file(owner_client, "shot.png", image_bytes()))
    url = reverse("chat:attachment", args=[png])
    thumb = reverse("chat:attachment_thumbnail", args=[png])
    mine = await owner_client.get(url)
    assert mine.status_code == 200
    assert mine["Content-Type"] == "image/png"
    assert mine["X-Content-Type-Options"] == "nosniff"
    assert mine["Content-Disposition"].startswith("inline")
    assert "sandbox" in mine["Content-Security-Policy"]
    assert b"".join([chunk async for chunk in mine.streaming_content]).startswith(b"\x89PNG")
    assert (await owner_client.get(thumb))["Content-Type"] == "image/webp"
    other = AsyncClient()
    await other.aforce_login(other_user)
    for path in (url, thumb):
        assert (await other.get(path)).status_code == 404
        anonymous = await AsyncClient().get(path)
        assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    # Nor can another user take it out of the owner's composer.
    remove = reverse("chat:attachment_remove", args=[png])
    assert (await other.post(remove)).status_code == 404
    assert await Attachment.objects.filter(pk=png).aexists()


@pytest.mark.parametrize("name", ["page.html", "drawing.svg", "feed.xml"])
async def test_html_svg_and_xml_are_never_served_inline(
    owner_client: AsyncClient, name: str
) -> None:
    data = SVG_IMAGE if name.endswith(".svg") else HTML_PAGE
    attachment_id = uploaded_id(await upload_file(owner_client, name, data, "text/html"))
    response = await owner_client.get(reverse("chat:attachment", args=[attachment_id]))
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"


async def test_a_text_file_shows_as_plain_text_and_a_pdf_in_the_browsers_viewer(
    owner_client: AsyncClient,
) -> None:
    text = uploaded_id(await upload_file(owner_client, "notes.md", b"# hi"))
    pdf = uploaded_id(await upload_file(owner_client, "spec.pdf", pdf_bytes(2)))
    shown = await owner_client.get(reverse("chat:attachment", args=[text]))
    assert shown["Content-Type"] == "text/plain; charset=utf-8"
    assert shown["Content-Disposition"].startswith("inline")
    viewed = await owner_client.get(reverse("chat:attachment", args=[pdf]))
    assert viewed["Content-Type"] == "application/pdf"
    assert "sandbox" not in viewed["Content-Security-Policy"]  # (Chromium's viewer needs it)
    assert "script-src" not in viewed["Content-Security-Policy"]
    downloaded = await owner_client.get(reverse("chat:attachment", args=[pdf]) + "?download=1")
    assert downloaded["Content-Disposition"].startswith('attachment; filename="spec.pdf"')


async def test_a_chip_taken_out_of_the_composer_deletes_the_upload_but_a_sent_file_stays(
    owner_client: AsyncClient, user: User, conversation: Conversation, attachments_dir: Path
) -> None:
    first = uploaded_id(await upload_file(owner_client, "a.txt", b"one"))
    second = uploaded_id(await upload_file(owner_client, "b.txt", b"two"))
    response = await owner_client.post(reverse("chat:attachment_remove", args=[first]))
    assert response.status_code == 204
    assert not await Attachment.objects.filter(pk=first).aexists()
    assert len(files_in(attachments_dir)) == 1
    from channels.db import database_sync_to_async

    await database_sync_to_async(services.turn_create)(
        conversation=conversation, text="see", model="demo", attachments=[second]
    )
    response = await owner_client.post(reverse("chat:attachment_remove", args=[second]))
    assert response.status_code == 404
    assert len(files_in(attachments_dir)) == 1


def _sent_with_files(user: User, conversation: Conversation, client: Client) -> list[str]:
    ids = []
    for name, data in (("a.png", image_bytes()), ("b.pdf", pdf_bytes())):
        from django.core.files.uploadedfile import SimpleUploadedFile

        response = client.post(
            reverse("chat:attachment_upload"), {"file": SimpleUploadedFile(name, data)}
        )
        ids.append(uploaded_id(response))
    _, reply = services.turn_create(
        conversation=conversation, text="look", model="demo", attachments=ids
    )
    Message.objects.filter(pk=reply.pk).update(status="complete", content="ok")
    return ids


def test_deleting_the_conversation_deletes_its_files(
    client: Client, user: User, conversation: Conversation, attachments_dir: Path
) -> None:
    client.force_login(user)
    _sent_with_files(user, conversation, client)
    assert len(files_in(attachments_dir)) == 3  # an image, its thumbnail, a PDF
    response = client.post(reverse("chat:conversation_delete", args=[conversation.pk]))
    assert response.status_code == 302
    assert Attachment.objects.count() == 0
    assert files_in(attachments_dir) == []


def test_a_deletion_rolled_back_keeps_the_files(
    client: Client, user: User, conversation: Conversation, attachments_dir: Path
) -> None:
    from django.db import transaction

    client.force_login(user)
    _sent_with_files(user, conversation, client)
    with pytest.raises(RuntimeError), transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).delete()
        raise RuntimeError("rolled back")
    assert len(files_in(attachments_dir)) == 3


def test_unsent_uploads_are_reaped_after_their_time(
    client: Client, user: User, conversation: Conversation, attachments_dir: Path
) -> None:
    from datetime import timedelta

    from chat.files import store

    client.force_login(user)
    sent = _sent_with_files(user, conversation, client)
    from django.core.files.uploadedfile import SimpleUploadedFile

    waiting = uploaded_id(
        client.post(reverse("chat:attachment_upload"), {"file": SimpleUploadedFile("w.txt", b"w")})
    )
    assert store.reap_unsent(older_than=timedelta(hours=1)) == 0
    assert store.reap_unsent(older_than=timedelta(seconds=0)) == 1
    assert not Attachment.objects.filter(pk=waiting).exists()
    assert Attachment.objects.filter(pk__in=sent).count() == 2
    assert len(files_in(attachments_dir)) == 3


def test_the_page_shows_thumbnails_and_chips_that_open_the_files(
    client: Client, user: User, conversation: Conversation
) -> None:
    client.force_login(user)
    image, pdf = _sent_with_files(user, conversation, client)
    page = client.get(reverse("chat:conversation_detail", args=[conversation.pk])).content.decode()
    assert f'src="{reverse("chat:attachment_thumbnail", args=[image])}"' in page
    assert f'href="{reverse("chat:attachment", args=[pdf])}"' in page
    assert "b.pdf" in page and "1 page" in page


def test_the_admin_shows_a_messages_files_and_may_open_them(
    client: Client, user: User, staff: User, conversation: Conversation
) -> None:
    client.force_login(user)
    image, pdf = _sent_with_files(user, conversation, client)
    client.force_login(staff)
    user_message = Message.objects.get(conversation=conversation, role="user")
    page = client.get(reverse("admin:chat_message_change", args=[user_message.pk])).content
    assert b"a.png" in page and b"b.pdf" in page
    transcript = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert reverse("chat:attachment", args=[pdf]).encode() in transcript.content
    listing = client.get(reverse("admin:chat_attachment_changelist")).content
    assert b"a.png" in listing
    assert client.get(reverse("chat:attachment", args=[image])).status_code == 200


async def test_uploads_waiting_unsent_are_capped_per_user(
    owner_client: AsyncClient, settings: object
) -> None:
    settings.CHAT_MAX_ATTACHMENTS = 1  # type: ignore[attr-defined]  # (the cap is 4 times it)
    for n in range(4):
        uploaded_id(await upload_file(owner_client, f"{n}.txt", b"text"))
    refused = await upload_file(owner_client, "5.txt", b"text")
    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "type": "rate_limit_error",
        "message": "You have 4 files attached but not sent: send or remove some first.",
    }
    assert await Attachment.objects.acount() == 4


def test_the_page_tells_the_composer_the_limits_it_checks_before_uploading(
    client: Client, user: User, conversation: Conversation, settings: object
) -> None:
    settings.CHAT_MAX_ATTACHMENTS = 3  # type: ignore[attr-defined]
    settings.CHAT_MAX_ATTACHMENT_BYTES = 2048  # type: ignore[attr-defined]
    client.force_login(user)
    page = client.get(reverse("chat:conversation_detail", args=[conversation.pk])).content
    assert b'data-max-files="3" data-max-bytes="2048"' in page


async def test_an_unsent_upload_waits_in_the_composer_it_was_attached_in(
    owner_client: AsyncClient, user: User, conversation: Conversation
) -> None:
    other = await Conversation.objects.acreate(user=user, title="Another chat")
    here = uploaded_id(
        await upload_file(owner_client, "here.txt", b"h", conversation=conversation.pk)
    )
    new = uploaded_id(await upload_file(owner_client, "new.txt", b"n"))

    async def chips(url: str) -> list[str]:
        page = (await owner_client.get(url)).content.decode()
        composer = page.split('id="composer-files"', 1)[1].split("</ul>", 1)[0]
        return re.findall(r'data-attachment="([0-9a-f-]{36})"', composer)

    detail = reverse("chat:conversation_detail", args=[conversation.pk])
    # A reload shows each chip in its own composer, and only there.
    assert await chips(detail) == [here]
    assert await chips(reverse("chat:conversation_detail", args=[other.pk])) == []
    assert await chips(reverse("chat:home")) == [new]
    # Sent, it leaves the composer for good.
    from channels.db import database_sync_to_async

    await database_sync_to_async(services.turn_create)(
        conversation=other, text="see", model="demo", attachments=[here]
    )
    assert await chips(detail) == []
    # …and it goes with its message only (here sent from another conversation, as a frame on
    # that one's socket may name it): deleting the conversation it waited in leaves it.
    await conversation.adelete()
    sent = await Attachment.objects.select_related("message").aget(pk=here)
    assert (sent.draft_for_id, sent.message.conversation_id) == (None, other.pk)


async def test_an_upload_for_someone_elses_conversation_is_refused_and_keeps_nothing(
    owner_client: AsyncClient, other_user: User, attachments_dir: Path
) -> None:
    theirs = await Conversation.objects.acreate(user=other_user, title="Not yours")
    for conversation in (theirs.pk, "not-a-uuid"):
        response = await upload_file(owner_client, "a.txt", b"a", conversation=conversation)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "This conversation is not there any more."
    assert await Attachment.objects.acount() == 0
    assert files_in(attachments_dir) == []


def test_deleting_a_conversation_deletes_the_files_waiting_in_its_composer(
    client: Client, user: User, conversation: Conversation, attachments_dir: Path
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(user)
    form = {"file": SimpleUploadedFile("w.txt", b"w"), "conversation": str(conversation.pk)}
    uploaded_id(client.post(reverse("chat:attachment_upload"), form))
    assert len(files_in(attachments_dir)) == 1
    client.post(reverse("chat:conversation_delete", args=[conversation.pk]))
    assert Attachment.objects.count() == 0
    assert files_in(attachments_dir) == []
