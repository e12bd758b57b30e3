"""The documented option for several servers: attachments in an S3-compatible store through
django-storages, here against moto's S3 (in this process). The same views and turns, unchanged:
stored under its id as a private object, served to the owner only, sent to Claude, deleted with
the conversation."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.urls import reverse

from chat.data import selectors, services
from chat.files import store
from chat.models import Conversation
from chat.testing.files import pdf_bytes
from chatsite.settings import s3_attachments_storage
from tests.helpers import upload_file, uploaded_id

boto3 = pytest.importorskip("boto3", reason="the S3 option needs django-storages[s3]")
moto = pytest.importorskip("moto", reason="the S3 option is tested against moto")

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "stopchat-attachments"


@pytest.fixture
def s3(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """STORAGES["attachments"] as chatsite/settings.py makes it with CHAT_ATTACHMENTS_S3_BUCKET
    set, against an S3 that moto keeps in memory."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        storage = s3_attachments_storage(BUCKET, None)
        settings.STORAGES = settings.STORAGES | {"attachments": storage}
        yield client


def keys(client: Any) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


async def test_an_upload_is_a_private_object_named_by_its_id_served_to_its_owner_only(
    s3: Any, owner_client: AsyncClient, user: User, other_user: User
) -> None:
    pdf = pdf_bytes(2)
    attachment_id = uploaded_id(await upload_file(owner_client, "../report.pdf", pdf))
    hexid = attachment_id.replace("-", "")
    assert keys(s3) == [f"attachments/{user.pk}/{hexid}.pdf"]
    grants = s3.get_object_acl(Bucket=BUCKET, Key=keys(s3)[0])["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner's alone
    url = reverse("chat:attachment", args=[attachment_id])
    response = await owner_client.get(url)
    assert response.status_code == 200
    assert b"".join([chunk async for chunk in response.streaming_content]) == pdf
    other = AsyncClient()
    await other.aforce_login(other_user)
    assert (await other.get(url)).status_code == 404


def test_a_turn_reads_the_file_from_the_store_and_deleting_the_conversation_deletes_it(
    s3: Any, user: User, conversation: Conversation
) -> None:
    pdf = pdf_bytes(1)
    attachment = store.attach(user=user, name="spec.pdf", data=pdf)
    _, reply = services.turn_create(
        conversation=conversation, text="read it", model="m", attachments=[attachment.pk]
    )
    turns = selectors.history_for_model(conversation=conversation, before_message_id=reply.pk)
    (part,) = store.with_bytes(turns)[0].files
    assert base64.b64decode(part.content) == pdf
    assert len(keys(s3)) == 1
    services.conversation_delete(conversation_id=conversation.pk)
    assert keys(s3) == []
