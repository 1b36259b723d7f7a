"""Celery tasks for retrieval: background work that makes answers cheaper."""

from celery import shared_task
from django.conf import settings

from retrieval import embedding, sentences


@shared_task(ignore_result=True)
def fill_sentence_vectors() -> None:
    # Also makes sure the web process finds the ONNX exports it embeds questions with.
    # Sent by beat every DOCENT_SENTENCE_FILL_SECONDS; a run stops before the next is due, and
    # overlapping runs on several workers skip each other's rows.
    embedding.prepare_query_embedders()
    sentences.fill_sentence_vectors(max_seconds=settings.DOCENT_SENTENCE_FILL_SECONDS)
