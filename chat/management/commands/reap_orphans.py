"""Close streaming replies whose server process is gone (see chat/reaper.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from chat.data import services


class Command(BaseCommand):
    help = "Mark replies left 'streaming' by a dead process as interrupted (server_restart)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=settings.CHAT_ORPHAN_AFTER,
            help="Heartbeat age in seconds that makes a reply an orphan (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        closed = services.reap_orphans(older_than=timedelta(seconds=options["older_than"]))
        for message in closed:
            self.stdout.write(
                f"closed reply {message.pk} in conversation {message.conversation_id} "
                f"({len(message.content)} chars kept)"
            )
        self.stdout.write(self.style.SUCCESS(f"{len(closed)} orphaned replies closed."))
