"""The OpenAI-compatible endpoint at /v1/ (built in bots/openai_api.py).

No trailing slashes: OpenAI clients append paths such as "/chat/completions" to the base URL.
"""

from django.urls import path

from bots import openai_api

app_name = "openai"

urlpatterns = [
    path("chat/completions", openai_api.chat_completions, name="chat-completions"),
    path("models", openai_api.list_models, name="models"),
    path("models/<str:model>", openai_api.retrieve_model, name="model"),
    path("<path:path>", openai_api.not_found, name="unknown"),
]
