from django.urls import path

from bots import quality_views as quality
from bots import views

app_name = "bots"

urlpatterns = [
    path("", views.bot_list, name="list"),
    path("profile/", views.profile, name="profile"),
    path("profile/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("bots/<slug:slug>/", views.bot_chat, name="detail"),
    path("bots/<slug:slug>/conversations/<int:pk>/", views.bot_chat, name="conversation"),
    path("bots/<slug:slug>/chat/", views.chat, name="chat"),
    path("bots/<slug:slug>/questions/<int:message_id>/answer/", views.answer_stream, name="answer-stream"),
    path("bots/<slug:slug>/knowledge/", views.bot_knowledge, name="knowledge"),
    path("bots/<slug:slug>/knowledge/table/", views.documents_table, name="documents-table"),
    path("bots/<slug:slug>/documents/", views.upload, name="upload"),
    path("bots/<slug:slug>/settings/", views.bot_settings, name="settings"),
    path("bots/<slug:slug>/delete/", views.bot_delete, name="delete"),
    path("bots/<slug:slug>/traces/", views.bot_traces, name="traces"),
    path("bots/<slug:slug>/sharing/", views.bot_sharing, name="sharing"),
    path("bots/<slug:slug>/sharing/<int:share_id>/remove/", views.bot_unshare, name="unshare"),
    path("bots/<slug:slug>/quality/", quality.bot_quality, name="quality"),
    path("bots/<slug:slug>/quality/runs/", quality.runs_table, name="runs-table"),
    path("bots/<slug:slug>/quality/runs/<int:run_id>/", quality.run_detail, name="run"),
    path("bots/<slug:slug>/quality/compare/", quality.run_compare, name="compare"),
    path("bots/<slug:slug>/quality/test-sets/", quality.test_set_create, name="test-set-create"),
    path("bots/<slug:slug>/quality/test-sets/import/", quality.test_set_import, name="test-set-import"),
    path("bots/<slug:slug>/quality/test-sets/generate/", quality.test_set_generate, name="test-set-generate"),
    path("bots/<slug:slug>/quality/test-sets/<int:test_set_id>/", quality.test_set_detail, name="test-set"),
    path(
        "bots/<slug:slug>/quality/test-sets/<int:test_set_id>/delete/", quality.test_set_delete, name="test-set-delete"
    ),
    path(
        "bots/<slug:slug>/quality/test-sets/<int:test_set_id>/default/",
        quality.test_set_default,
        name="test-set-default",
    ),
    path("bots/<slug:slug>/quality/test-sets/<int:test_set_id>/runs/", quality.run_start, name="run-start"),
    path("bots/<slug:slug>/quality/test-sets/<int:test_set_id>/cases/<int:case_id>/", quality.case_edit, name="case"),
    path(
        "bots/<slug:slug>/quality/test-sets/<int:test_set_id>/cases/<int:case_id>/delete/",
        quality.case_delete,
        name="case-delete",
    ),
    path("bots/<slug:slug>/quality/fine-tunes/", quality.fine_tune_start, name="fine-tune-start"),
    path("bots/<slug:slug>/quality/fine-tunes/table/", quality.fine_tunes_table, name="fine-tunes-table"),
    path(
        "bots/<slug:slug>/quality/fine-tunes/<int:fine_tune_id>/promote/",
        quality.fine_tune_promote,
        name="fine-tune-promote",
    ),
    path(
        "bots/<slug:slug>/quality/fine-tunes/<int:fine_tune_id>/delete/",
        quality.fine_tune_delete,
        name="fine-tune-delete",
    ),
    path("bots/<slug:slug>/quality/feedback/<int:feedback_id>/case/", quality.feedback_to_case, name="feedback-case"),
    path("bots/<slug:slug>/conversations/<int:pk>/rename/", views.conversation_rename, name="conversation-rename"),
    path("bots/<slug:slug>/conversations/<int:pk>/delete/", views.conversation_delete, name="conversation-delete"),
    path("answers/<int:message_id>/feedback/", views.feedback, name="feedback"),
    path("traces/<int:trace_id>/", views.trace_panel, name="trace-panel"),
    path("documents/<int:pk>/", views.document_detail, name="document"),
    path("documents/<int:pk>/retry/", views.document_retry, name="document-retry"),
    path("documents/<int:pk>/rollback/", views.document_rollback, name="document-rollback"),
    path("documents/<int:pk>/delete/", views.document_delete, name="document-delete"),
]
