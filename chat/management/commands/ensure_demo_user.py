"""Make sure a newcomer can sign in: create (or reset) a local demo account and print it."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the local 'demo' account (a staff superuser) if missing and print how to sign in."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # The password lives in a git-ignored file so `make run` can print it every time.
        secret_file = Path(settings.BASE_DIR) / ".demo-password"
        if secret_file.exists():
            password = secret_file.read_text().strip()
        else:
            password = secrets.token_urlsafe(9)
            secret_file.write_text(password + "\n")
            secret_file.chmod(0o600)
        User = get_user_model()
        user, _created = User.objects.get_or_create(username="demo")
        if not user.check_password(password) or not user.is_superuser:
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        self.stdout.write(
            self.style.SUCCESS(
                f"Sign in at http://127.0.0.1:8000/ as  demo / {password}  (admin at /admin/)."
            )
        )
