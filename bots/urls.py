from django.urls import path

from bots import views

app_name = "bots"

urlpatterns = [
    path("", views.bot_list, name="list"),
    path("profile/", views.profile, name="profile"),
    path("profile/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("bots/<slug:slug>/", views.bot_chat, name="detail"),
    path("bots/<slug:slug>/chat/", views.chat, name="chat"),
    path("bots/<slug:slug>/questions/<int:message_id>/answer/", views.answer_stream, name="answer-stream"),
    path("bots/<slug:slug>/knowledge/", views.bot_knowledge, name="knowledge"),
    path("bots/<slug:slug>/knowledge/table/", views.documents_table, name="documents-table"),
    path("bots/<slug:slug>/documents/", views.upload, name="upload"),
    path("bots/<slug:slug>/settings/", views.bot_settings, name="settings"),
    path("bots/<slug:slug>/traces/", views.bot_traces, name="traces"),
    path("bots/<slug:slug>/sharing/", views.bot_sharing, name="sharing"),
    path("bots/<slug:slug>/sharing/<int:share_id>/remove/", views.bot_unshare, name="unshare"),
    path("bots/<slug:slug>/quality/", views.bot_quality, name="quality"),
    path("bots/<slug:slug>/conversations/<int:pk>/rename/", views.conversation_rename, name="conversation-rename"),
    path("bots/<slug:slug>/conversations/<int:pk>/delete/", views.conversation_delete, name="conversation-delete"),
    path("answers/<int:message_id>/feedback/", views.feedback, name="feedback"),
    path("traces/<int:trace_id>/", views.trace_panel, name="trace-panel"),
    path("documents/<int:pk>/", views.document_detail, name="document"),
    path("documents/<int:pk>/retry/", views.document_retry, name="document-retry"),
    path("documents/<int:pk>/rollback/", views.document_rollback, name="document-rollback"),
    path("documents/<int:pk>/delete/", views.document_delete, name="document-delete"),
]
