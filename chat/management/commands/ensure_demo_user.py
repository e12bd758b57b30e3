"""Make sure a newcomer can sign in: create (or reset) a local demo account and print it.

`make run` passes the address daphne is about to listen on (its HOST and PORT), so the printed
URL is the one that answers.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.http.request import validate_host

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

#: Addresses that mean "every interface": a browser opens the same server on loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def browser_host(host: str) -> str:
    """The host part of the URL a browser on this machine opens for a server bound to `host`
    (an IPv6 address in brackets, as in the URL and in ALLOWED_HOSTS)."""
    host = _ANY_ADDRESS.get(host, host)
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:  # a name, not an address
        pass
    return host


def site_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens for a server bound to `host`:`port`."""
    return f"http://{browser_host(host)}:{port}/"


class Command(BaseCommand):
    help = (
        "Create the local 'demo' account (a staff superuser) if missing and print how to sign in."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default=DEFAULT_HOST,
            help=f"The address the server binds, for the printed URL (default {DEFAULT_HOST}).",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=DEFAULT_PORT,
            help=f"The port the server listens on, for the printed URL (default {DEFAULT_PORT}).",
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
        url = site_url(options["host"], options["port"])
        self.stdout.write(
            self.style.SUCCESS(f"Sign in at {url} as  demo / {password}  (admin at /admin/).")
        )
        host = browser_host(options["host"])
        if not validate_host(host, settings.ALLOWED_HOSTS):
            self.stdout.write(
                self.style.WARNING(
                    f"{host} is not in ALLOWED_HOSTS, so Django answers it 400 Bad Request: "
                    f"add it, e.g. DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost,{host}"
                )
            )
