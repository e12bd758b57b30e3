"""API tokens: made, checked and revoked here. Only a SHA-256 digest of a token is stored.

A token is 256 random bits, so a plain digest is enough (no slow hash: there is nothing to
guess) and it can be looked up by its digest directly. People tell their tokens apart by name
and by the first characters, which are stored as they are.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from chat.models import ApiToken

TOKEN_PREFIX = "chat_"
SHOWN_CHARS = 12
#: `last_used_at` is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(row: ApiToken) -> str:
    """Give an unsaved row a new token; returns the token itself, which is never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row.prefix, row.digest = token[:SHOWN_CHARS], _digest(token)
    return token


def token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`: the saved row, and the token itself."""
    row = ApiToken(user=user, name=name.strip()[:100])
    token = issue(row)
    row.save()
    return row, token


def token_revoke(*, user: User, token_id: int) -> bool:
    """Delete one of the user's tokens; False if it is not theirs (or already gone)."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return bool(deleted)


def user_for_token(token: str) -> User | None:
    """The active user a presented token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = ApiToken.objects.select_related("user").filter(digest=_digest(token)).first()
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user


def tokens_of(*, user: User) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user=user))
