"""Celery tasks for ingestion: thin, idempotent, and given ids only."""

from celery import Task, shared_task

from documents import services
from documents.services import TRANSIENT_ERRORS


class IngestTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # Retries used up, or a bug: never leave the row in a running state. The turn may have
        # gone to another document than the message named (services.ingest_next); fail that one.
        services.fail_internal(getattr(exc, "ingest_version_id", args[0]))


@shared_task(
    base=IngestTask,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def ingest(version_id: int) -> None:
    services.ingest_next(version_id)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def reindex(bot_id: int) -> None:
    services.reindex_bot(bot_id)


@shared_task(ignore_result=True)
def sweep() -> None:
    services.sweep_stuck_documents()
