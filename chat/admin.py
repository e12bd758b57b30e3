"""Django admin: every conversation, read as a transcript."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Max, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from chat.data import api_tokens
from chat.models import ApiToken, Attachment, Conversation, Message, ShareLink

TRANSCRIPT_FIELDS = (
    "version_display",
    "role",
    "status",
    "stop_reason",
    "thinking",
    "shown_text",
    "files",
    "input_tokens",
    "cache_display",
    "output_tokens_display",
    "time_to_first_token_ms",
    "created_at",
)


class NoAdding:
    """No "Add" in the admin: rows are made by the app. The optional ``obj`` fits both
    signatures, ``ModelAdmin``'s (request) and an inline's (request, obj)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnly(NoAdding):
    """Neither added nor changed in the admin (whether a row can be deleted, each class says)."""

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MessageInline(ReadOnly, admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    show_change_link = True
    fields = TRANSCRIPT_FIELDS
    readonly_fields = TRANSCRIPT_FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).prefetch_related("attachments")

    @admin.display(description="text")
    def shown_text(self, obj: Message) -> str:
        return obj.display_text

    @admin.display(description="version")
    def version_display(self, obj: Message) -> str:
        return version_text(obj)

    @admin.display(description="files")
    def files(self, obj: Message) -> str:
        return attachment_links(obj.files, thumbnails=False)

    @admin.display(description="cached input")
    def cache_display(self, obj: Message) -> str:
        read, written = obj.cache_read_input_tokens, obj.cache_creation_input_tokens
        if not read and not written:
            return "-"
        return f"{read or 0} read · {written or 0} written"

    @admin.display(description="output tokens")
    def output_tokens_display(self, obj: Message) -> str:
        if obj.output_tokens is None:
            return "-"
        return (
            f"~{obj.output_tokens} (estimated)" if obj.tokens_estimated else str(obj.output_tokens)
        )


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "user",
        "model",
        "message_count",
        "interrupted_count",
        "last_activity",
    ]
    list_filter = [
        "messages__status",
        "messages__stop_reason",
        "model",
        "user",
        "created_at",
        "updated_at",
    ]
    search_fields = ["title", "messages__content"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [MessageInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super()
            .get_queryset(request)
            .select_related("user")
            .annotate(
                message_count=Count("messages", distinct=True),
                interrupted_count=Count(
                    "messages", filter=Q(messages__status=Message.Status.INTERRUPTED), distinct=True
                ),
                last_activity=Max("messages__created_at"),
            )
        )

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count  # type: ignore[attr-defined]

    @admin.display(description="interrupted", ordering="interrupted_count")
    def interrupted_count(self, obj: Conversation) -> int:
        return obj.interrupted_count  # type: ignore[attr-defined]

    @admin.display(description="last activity", ordering="last_activity")
    def last_activity(self, obj: Conversation) -> object:
        return obj.last_activity or obj.updated_at  # type: ignore[attr-defined]


def version_text(message: Message) -> str:
    """ "2 of 3, shown" for a message with other versions (Regenerate, Edit); "-" without."""
    siblings = list(
        Message.objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if len(siblings) < 2:
        return "-"
    where = f"{siblings.index(message.pk) + 1} of {len(siblings)}"
    return f"{where}, shown" if message.active else f"{where}, not shown"


def attachment_links(files: list[Attachment], *, thumbnails: bool) -> str:
    """Links that open each file (through the owner-only view, which lets admins in too)."""
    return render_to_string(
        "admin/chat/_attachments.html", {"files": files, "thumbnails": thumbnails}
    )


ATTACHMENT_FIELDS = (
    *("preview", "user", "message", "name", "kind", "media_type", "size", "pages"),
    *("width", "height", "tokens", "position", "created_at"),
)


class AttachmentPreview(ReadOnly):
    """Read-only, with the file's link (a thumbnail for an image) as the ``preview`` field."""

    @admin.display(description="file")
    def preview(self, obj: Attachment) -> str:
        return attachment_links([obj], thumbnails=True)


class AttachmentInline(AttachmentPreview, admin.TabularInline):
    model = Attachment
    extra = 0
    can_delete = False
    fields = ("preview", "kind", "media_type", "size", "pages", "width", "height", "created_at")
    readonly_fields = fields


@admin.register(Attachment)
class AttachmentAdmin(AttachmentPreview, admin.ModelAdmin):
    """Every file users attached; deleting one here deletes its file too."""

    list_display = ["name", "user", "kind", "media_type", "size", "message", "created_at"]
    list_filter = ["kind", "media_type", "created_at"]
    search_fields = ["name", "user__username"]
    list_select_related = ["user", "message"]
    fields = ATTACHMENT_FIELDS
    readonly_fields = ATTACHMENT_FIELDS


@admin.register(Message)
class MessageAdmin(NoAdding, admin.ModelAdmin):
    list_display = ["__str__", "conversation", "role", "status", "stop_reason", "created_at"]
    list_filter = ["status", "stop_reason", "role", "model", "created_at"]
    search_fields = ["content", "thinking", "conversation__title"]
    readonly_fields = [f.name for f in Message._meta.get_fields() if f.concrete] + [
        "shown_text",
        "version_display",
    ]
    list_select_related = ["conversation"]
    inlines = [AttachmentInline]

    @admin.display(description="text as read (marker included)")
    def shown_text(self, obj: Message) -> str:
        return obj.display_text

    @admin.display(description="version")
    def version_display(self, obj: Message) -> str:
        return version_text(obj)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made here for any user (the token is shown once) and revoked by deleting."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    list_filter = ["created_at", "last_used_at"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user"]
    fields = ["user", "name", "prefix", "created_at", "last_used_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        made = ["prefix", "created_at", "last_used_at"]
        return made if obj is None else ["user", *made]

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm[ApiToken], change: bool
    ) -> None:
        if not change:
            request.new_api_token = api_tokens.issue(obj)  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The one page that shows the new token (it is not stored, so it cannot be shown again)."""
        response = TemplateResponse(
            request,
            "admin/chat/apitoken/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "API token created",
                "token_row": obj,
                "token": request.new_api_token,  # type: ignore[attr-defined]
            },
        )
        add_never_cache_headers(response)
        return response


@admin.register(ShareLink)
class ShareLinkAdmin(ReadOnly, admin.ModelAdmin):
    """Every share link, read-only (made from the conversation page). Deleting one revokes it:
    its page answers 404 from then on."""

    list_display = ["__str__", "conversation", "owner", "message_count", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["title", "conversation__title", "conversation__user__username"]
    list_select_related = ["conversation__user"]
    fields = ("conversation", "owner", "title", "message_count", "created_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ShareLink]:
        return super().get_queryset(request).defer("snapshot")

    @admin.display(description="owner", ordering="conversation__user__username")
    def owner(self, obj: ShareLink) -> str:
        return obj.conversation.user.get_username()
