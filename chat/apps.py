from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat.files import store
        from chat.models import Attachment

        # An attachment's files go with its row, however it is deleted (chat/files/store.py).
        post_delete.connect(store.delete_files, sender=Attachment, dispatch_uid="attachment-files")
