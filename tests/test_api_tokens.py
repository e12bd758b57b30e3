"""API tokens: made on the user's page and in the admin, shown once, stored as a digest,
revoked by either; a revoked token is refused at once."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chat.data import api_tokens
from chat.models import ApiToken

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"chat_[A-Za-z0-9_-]{43}")


def api_status(client: Client, token: str) -> int:
    response = client.get("/api/conversations/", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def test_a_token_made_on_the_users_page_is_shown_once_and_stored_as_a_digest(
    client: Client, user: User
) -> None:
    client.force_login(user)
    response = client.post("/account/tokens/", {"name": "laptop script"})
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"] and "no-store" in response["Cache-Control"]
    (token,) = TOKEN.findall(response.content.decode())
    assert "Copy it now" in response.content.decode()

    row = ApiToken.objects.get(user=user)
    assert row.name == "laptop script" and token.startswith(row.prefix) and len(row.prefix) == 12
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    stored = [str(v) for v in ApiToken.objects.values_list().get()]
    assert not any(token in value for value in stored)

    again = client.get("/account/tokens/").content.decode()
    assert token not in again and "laptop script" in again and row.prefix in again
    assert row.last_used_at is None
    assert api_status(Client(), token) == 200
    row.refresh_from_db()
    assert row.last_used_at is not None
    assert "never" not in client.get("/account/tokens/").content.decode()


def test_a_token_needs_a_name(client: Client, user: User) -> None:
    client.force_login(user)
    response = client.post("/account/tokens/", {"name": "  "})
    assert response.status_code == 400 and "Give the token a name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_revoking_on_the_page_stops_the_token_at_once_and_only_the_owner_can(
    client: Client, user: User, other_user: User
) -> None:
    mine, my_token = api_tokens.token_create(user=user, name="mine")
    theirs, their_token = api_tokens.token_create(user=other_user, name="theirs")
    client.force_login(user)

    response = client.post(f"/account/tokens/{theirs.pk}/revoke/")
    assert response.status_code == 302
    assert (
        ApiToken.objects.filter(pk=theirs.pk).exists() and api_status(Client(), their_token) == 200
    )

    assert api_status(Client(), my_token) == 200
    client.post(f"/account/tokens/{mine.pk}/revoke/")
    assert not ApiToken.objects.filter(pk=mine.pk).exists()
    assert api_status(Client(), my_token) == 401
    page = client.get("/account/tokens/").content.decode()
    assert "You have no API tokens." in page and "theirs" not in page


def test_an_inactive_users_token_is_refused(user: User) -> None:
    _, token = api_tokens.token_create(user=user, name="x")
    user.is_active = False
    user.save()
    assert api_status(Client(), token) == 401


def test_the_admin_makes_a_token_for_a_user_shows_it_once_and_revokes_it_by_deleting(
    admin_client: Client, user: User
) -> None:
    response = admin_client.post("/admin/chat/apitoken/add/", {"user": user.pk, "name": "ci bot"})
    assert response.status_code == 200, response.content[:500]
    assert "no-store" in response["Cache-Control"]
    (token,) = TOKEN.findall(response.content.decode())
    row = ApiToken.objects.get()
    assert row.user == user and row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert api_status(Client(), token) == 200

    listing = admin_client.get("/admin/chat/apitoken/").content.decode()
    assert row.prefix in listing and token not in listing
    change = admin_client.get(f"/admin/chat/apitoken/{row.pk}/change/").content.decode()
    assert token not in change and row.digest not in change

    admin_client.post(f"/admin/chat/apitoken/{row.pk}/delete/", {"post": "yes"})
    assert not ApiToken.objects.exists() and api_status(Client(), token) == 401
