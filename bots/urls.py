from django.urls import path

from bots import views

app_name = "bots"

urlpatterns = [
    path("", views.bot_list, name="list"),
    path("bots/<slug:slug>/", views.bot_detail, name="detail"),
    path("bots/<slug:slug>/documents/", views.upload, name="upload"),
    path("bots/<slug:slug>/chat/", views.chat, name="chat"),
    path("documents/<int:pk>/row/", views.document_row, name="document-row"),
]
