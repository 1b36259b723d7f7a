from django.contrib import admin

from documents.models import Document, DocumentVersion


class VersionInline(admin.TabularInline):
    model = DocumentVersion
    extra = 0
    readonly_fields = ["number", "file", "content_hash", "size_bytes", "created_at"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["filename", "bot", "status", "chunk_count", "updated_at"]
    list_filter = ["status"]
    search_fields = ["filename", "bot__name"]
    readonly_fields = ["current_version", "active_version"]
    inlines = [VersionInline]
