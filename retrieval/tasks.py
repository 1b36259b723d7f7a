"""Celery tasks for retrieval: background work that makes answers cheaper."""

import time

from celery import shared_task
from django.conf import settings

from retrieval import embedding, sentences


@shared_task(ignore_result=True)
def fill_sentence_vectors() -> None:
    # Also makes sure the web process finds the ONNX exports it embeds questions with.
    # Sent by beat every DOCENT_SENTENCE_FILL_SECONDS; a run stops before the next is due, and
    # overlapping runs on several workers skip each other's rows.
    embedding.prepare_query_embedders()
    started = time.monotonic()
    sentences.fill_sentence_vectors(max_seconds=settings.DOCENT_SENTENCE_FILL_SECONDS)
    if time.monotonic() - started >= settings.DOCENT_SENTENCE_FILL_SECONDS:
        # Stopped for time with chunks left (it stops sooner when none are left or documents
        # wait to be ingested): carry on behind whatever else reached the queue meanwhile,
        # rather than idle until beat's next message (which expires while a run is busy).
        fill_sentence_vectors.apply_async(expires=settings.DOCENT_SENTENCE_FILL_SECONDS)
