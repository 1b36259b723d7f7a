from django.contrib import admin

from evaluation.models import CaseResult, EvaluationRun, TestCase, TestSet


class CaseInline(admin.TabularInline):
    model = TestCase
    extra = 0
    fields = ["position", "question", "answerable", "generator"]


@admin.register(TestSet)
class TestSetAdmin(admin.ModelAdmin):
    list_display = ["name", "bot", "is_default", "created_at"]
    search_fields = ["name", "bot__name"]
    inlines = [CaseInline]


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "test_set", "bot", "config_version", "status", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["metrics", "error"]


@admin.register(CaseResult)
class CaseResultAdmin(admin.ModelAdmin):
    list_display = ["run", "case", "first_relevant_rank", "refused"]
