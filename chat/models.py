"""Conversations and their messages.

A message's `content` is exactly the text the user saw; the `[Interrupted]` marker is derived
from its status (`Message.display_text`) so the saved text never drifts from what was streamed.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db import models
from django.db.models import Q
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

INTERRUPTED_MARKER = "[Interrupted]"

#: What a finished reply says of how the model ended it, where that needs saying. A reason the
#: app does not know is said too (never an empty bubble, never silence).
STOP_NOTES: dict[str, str | Promise] = {
    "refusal": _("Claude declined to answer this."),
    "max_tokens": _("Cut off at the length limit."),
    "model_context_window_exceeded": _(
        "Cut off: the conversation filled the model's context window."
    ),
    "pause_turn": _("Claude paused this turn; Continue lets it go on."),
    "tool_use": _("Claude asked to use a tool, which this chat does not offer."),
}
#: Reasons that are a reply's ordinary end.
ORDINARY_ENDS = frozenset({"", "end_turn", "stop_sequence"})


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100, blank=True, help_text=_("Empty: the site default."))
    system_prompt = models.TextField(blank=True)
    thinking_budget = models.PositiveIntegerField(
        default=0,
        help_text=_(
            "Extended thinking: the tokens Claude may think for before answering "
            "(an effort on models that think adaptively); 0: off."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or gettext("Untitled conversation")


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        INTERRUPTED = "interrupted"
        ERROR = "error"

    class StopReason(models.TextChoices):
        END_TURN = "end_turn"
        MAX_TOKENS = "max_tokens"
        STOP_SEQUENCE = "stop_sequence"
        REFUSAL = "refusal"
        MODEL_CONTEXT_WINDOW_EXCEEDED = "model_context_window_exceeded"
        PAUSE_TURN = "pause_turn"
        TOOL_USE = "tool_use"
        USER_STOP = "user_stop"
        DISCONNECT = "disconnect"
        ERROR = "error"
        SERVER_RESTART = "server_restart"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        help_text=_(
            "The message this one follows (empty for a conversation's first). Messages "
            "with the same parent are versions of one another (Regenerate, Edit)."
        ),
    )
    active = models.BooleanField(
        default=True,
        help_text=_(
            "The version shown among its siblings: the conversation on the page, and sent "
            "to Claude, follows the active version at each step."
        ),
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, help_text=_("The answer's text, as the user saw it."))
    thinking = models.TextField(
        blank=True, help_text=_("Claude's thinking before the answer, as the user saw it.")
    )
    thinking_signature = models.TextField(
        blank=True,
        help_text=_(
            "Anthropic's signature of a finished thinking block (opaque; the API verifies "
            "it when thinking is sent back)."
        ),
    )
    thinking_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("How long Claude thought before answering.")
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    stop_reason = models.CharField(max_length=32, choices=StopReason.choices, blank=True)
    error = models.TextField(blank=True, help_text=_("What went wrong, as shown to the user."))
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cache_read_input_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Input tokens read from Anthropic's prompt cache.")
    )
    cache_creation_input_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Input tokens written to Anthropic's prompt cache.")
    )
    tokens_estimated = models.BooleanField(
        default=False,
        help_text=_("Output tokens estimated from the text: a stopped stream never reports them."),
    )
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    model = models.CharField(max_length=100, blank=True)
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("The output limit the reply was requested with.")
    )
    thinking_budget = models.PositiveIntegerField(
        default=0, help_text=_("The thinking budget the reply was requested with (0: none).")
    )
    owner_channel = models.CharField(
        max_length=200,
        blank=True,
        help_text=_(
            "The streaming reply's own channel-layer address: stops and watching pages "
            "of any process reach it there."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Last checkpoint of a streaming reply.")
    )

    #: Not stored: set by selectors.conversation_messages on the first message of a page that
    #: has older messages before it (the page offers "Show earlier messages" there).
    has_earlier: bool = False
    #: Not stored: which version of its siblings this is, of how many, and the ids of the
    #: versions before and after it (set by the selectors that read the shown branch).
    version: int = 1
    versions: int = 1
    previous_version: int | None = None
    next_version: int | None = None
    #: Not stored: the message's attachments, in order, once read (`files`); set by the turn
    #: that saved them, or read from `prefetch_related("attachments")`.
    sent_attachments: list[Attachment] | None = None

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status="streaming"),
                name="one_streaming_message_per_conversation",
            ),
            models.CheckConstraint(
                condition=~Q(role="user") | Q(status="complete"),
                name="user_messages_are_complete",
            ),
        ]
        indexes = [
            models.Index(fields=["status"], name="message_status_idx"),
            models.Index(fields=["conversation", "parent"], name="message_tree_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_interrupted(self) -> bool:
        return self.status == self.Status.INTERRUPTED

    @property
    def can_continue(self) -> bool:
        """A reply that was cut off: stopped, failed part-way, or out of output tokens."""
        if self.role != self.Role.ASSISTANT:
            return False
        if self.status == self.Status.INTERRUPTED:
            return True
        if self.status == self.Status.ERROR:
            return bool(self.content)
        cut = self.stop_reason in (self.StopReason.MAX_TOKENS, self.StopReason.PAUSE_TURN)
        return self.status == self.Status.COMPLETE and cut

    @property
    def stop_note(self) -> str:
        """What the page says under a complete reply about how it ended; empty when it simply
        ended. A complete reply with no text says so rather than show an empty bubble."""
        if self.role != self.Role.ASSISTANT or self.status != self.Status.COMPLETE:
            return ""
        if self.stop_reason in ORDINARY_ENDS:
            return "" if self.content else gettext("The reply had no text.")
        note = STOP_NOTES.get(self.stop_reason)
        if note is None:
            return gettext("The reply ended for a reason this app does not know (%(reason)s).") % {
                "reason": self.stop_reason
            }
        return str(note)

    @property
    def files(self) -> list[Attachment]:
        """The message's attachments, in order (from a prefetch where there was one)."""
        if self.sent_attachments is None:
            self.sent_attachments = list(self.attachments.all())
        return self.sent_attachments

    @property
    def thinking_seconds(self) -> int | None:
        """Whole seconds the model thought (at least 1), or None when it did not."""
        if self.thinking_ms is None:
            return None
        return max(1, round(self.thinking_ms / 1000))

    @property
    def display_text(self) -> str:
        """The text as read anywhere (page, admin, history for the model), marker included."""
        if self.status == self.Status.INTERRUPTED:
            return f"{self.content}\n\n{INTERRUPTED_MARKER}" if self.content else INTERRUPTED_MARKER
        return self.content


def _attachment_storage() -> Storage:
    return storages["attachments"]


class Attachment(models.Model):
    """A file a user attached to a message: an image, a PDF or a text file, checked and (an
    image) re-encoded by chat/files/checks.py before it is stored.

    Uploaded first (`message` empty: it waits in the composer), then bound to the message it was
    sent with. The file lives in the `attachments` storage (a private directory by default)
    under a name made of its id, never of the name the user gave; it is served only by
    chat/web/attachments.py, to its owner. Deleting the row (with its message or conversation)
    deletes the file (chat/files/store.py).
    """

    class Kind(models.TextChoices):
        IMAGE = "image"
        DOCUMENT = "document", "PDF"
        TEXT = "text"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.ForeignKey(
        "Message",
        on_delete=models.CASCADE,
        related_name="attachments",
        null=True,
        blank=True,
        help_text=_("Empty while it waits in the composer."),
    )
    draft_for = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
        help_text=_(
            "While unsent: the conversation whose composer it waits in (empty: a new chat's, "
            "the API's or the terminal's), shown there again after a reload."
        ),
    )
    name = models.CharField(max_length=150, help_text=_("The name it was attached with, cleaned."))
    kind = models.CharField(max_length=16, choices=Kind.choices)
    media_type = models.CharField(max_length=100, help_text=_("Decided from the file's bytes."))
    size = models.PositiveIntegerField(help_text=_("Bytes, as stored."))
    file = models.FileField(storage=_attachment_storage, max_length=200)
    thumbnail = models.FileField(storage=_attachment_storage, max_length=200, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    tokens = models.PositiveIntegerField(
        default=0, help_text=_("An estimate of the input tokens it costs in a request.")
    )
    position = models.PositiveSmallIntegerField(
        default=0, help_text=_("Its place among its message's files, as they were sent.")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "created_at"]
        indexes = [models.Index(fields=["user", "message"], name="attachment_pending_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_image(self) -> bool:
        return self.kind == self.Kind.IMAGE


class ApiToken(models.Model):
    """A user's key for the streaming HTTP API (chat/views_api.py). Only a digest is stored:
    the token itself is shown once, when it is created (chat/tokens.py). Revoking deletes it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text=_("What the token is for."))
    prefix = models.CharField(max_length=16, editable=False, help_text=_("Its first characters."))
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ShareLink(models.Model):
    """A read-only link to a conversation as it was when it was shared (chat/data/shares.py).

    The link shows `snapshot`, a copy of the shown branch taken at that moment, never the live
    conversation: later messages, edits and deletions do not reach it. Anyone with the token
    may read it without signing in; revoking deletes the row (and the copy), and deleting the
    conversation deletes its links.
    """

    token = models.CharField(
        max_length=64, unique=True, editable=False, help_text=_("The link's secret part.")
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="share_links"
    )
    title = models.CharField(max_length=200, blank=True, help_text=_("The title when shared."))
    snapshot = models.JSONField(
        default=dict,
        help_text=_(
            "The messages shown when it was shared: text, status, thinking, and the "
            "names, kinds and sizes of attachments (never the files)."
        ),
    )
    message_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.title or 'Untitled conversation'} ({self.created_at:%Y-%m-%d %H:%M})"
