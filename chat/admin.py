"""Django admin: every conversation, read as a transcript."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest

from .models import Conversation, Message

TRANSCRIPT_FIELDS = (
    "role",
    "status",
    "stop_reason",
    "shown_text",
    "input_tokens",
    "output_tokens_display",
    "time_to_first_token_ms",
    "created_at",
)


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    show_change_link = True
    fields = TRANSCRIPT_FIELDS
    readonly_fields = TRANSCRIPT_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="text")
    def shown_text(self, obj: Message) -> str:
        return obj.display_text

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


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["__str__", "conversation", "role", "status", "stop_reason", "created_at"]
    list_filter = ["status", "stop_reason", "role", "model", "created_at"]
    search_fields = ["content", "conversation__title"]
    readonly_fields = [f.name for f in Message._meta.get_fields() if f.concrete] + ["shown_text"]
    list_select_related = ["conversation"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="text as read (marker included)")
    def shown_text(self, obj: Message) -> str:
        return obj.display_text
