from django.contrib import admin

from retrieval.models import Reranker, Trace


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    list_display = ["question", "bot", "provider", "refused", "created_at"]
    list_filter = ["provider", "refused"]
    readonly_fields = [field.name for field in Trace._meta.fields]


@admin.register(Reranker)
class RerankerAdmin(admin.ModelAdmin):
    """Read-only here: rerankers are added in the Console, which loads and verifies each one first."""

    list_display = ["name", "source", "created_at"]
    readonly_fields = ["name", "source", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False
