from django.contrib import admin

from retrieval.models import Trace


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    list_display = ["question", "bot", "provider", "refused", "created_at"]
    list_filter = ["provider", "refused"]
    readonly_fields = [field.name for field in Trace._meta.fields]
