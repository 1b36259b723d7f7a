"""The ingest queue is shared fairly: turns per document and per bot, budgets, deletion, the sweeper."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from bots import services as bots
from documents import services
from documents.models import Chunk, Document, DocumentVersion, Page
from tests.conftest import wait_until_final
from tests.documents.test_pipeline import long_text, upload, wait_for


def ingest_queue_length() -> int:
    """Messages waiting in the broker's ingest queue (LLEN of the list on Redis)."""
    from config.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare("ingest", passive=True).message_count


def purge_ingest_queue() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("ingest")


def ingestion_locks_held() -> set[int]:
    """Ids of documents whose advisory lock some worker holds (services._document_lock)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = 7406")
        return {document_id for (document_id,) in cursor.fetchall()}


def small_passages(bot) -> None:
    """Many small chunks, so a long text takes several embedding batches (several turns)."""
    bot.chunking_strategy, bot.chunk_size_tokens, bot.chunk_overlap_tokens = "fixed", 64, 0
    bot.save()


def worker_log_since(celery_worker, offset: int) -> str:
    log = celery_worker.log_dir / f"worker-{celery_worker.starts}.log"
    return log.read_text(errors="replace")[offset:]


def worker_log_size(celery_worker) -> int:
    return len((celery_worker.log_dir / f"worker-{celery_worker.starts}.log").read_text(errors="replace"))


@pytest.mark.django_db(transaction=True)
def test_a_small_file_dropped_while_a_huge_one_embeds_is_ready_first(celery_worker, owner_api, bot):
    small_passages(bot)
    (huge,) = upload(owner_api, bot.id, "huge.txt", long_text(40_000)).json()  # ~800 passages, 7 batches

    def embedding_underway():
        document = Document.objects.get(pk=huge["id"])
        return document.status == "embedding" and 0 < document.chunks_done < document.chunks_total

    wait_for(embedding_underway, timeout=180, message="the huge file to start embedding")
    (small,) = upload(owner_api, bot.id, "canteen.txt", b"The canteen serves soup on Tuesdays.").json()

    small_document = wait_until_final(small["id"], timeout=180)
    assert small_document.status == "ready"
    huge_document = Document.objects.get(pk=huge["id"])
    # Either the huge file is still embedding, or it finished after the small one.
    assert not huge_document.is_final or huge_document.updated_at > small_document.updated_at, huge_document.status
    waited = small_document.updated_at - small_document.created_at
    print(f"small file ready {waited.total_seconds():.1f}s after its upload")
    services.delete_document(huge_document)  # rather than wait for it


@pytest.mark.django_db
def test_a_bot_dropping_one_file_waits_one_turn_not_for_another_bots_backlog(owner, bot, settings):
    settings.DOCENT_INGEST_SLICE_SECONDS = 60  # a turn finishes a small file
    other_bot = bots.create_bot(owner, "Travel", "Answers travel questions.")

    def queued(target, name: str) -> Document:
        return services.add_document(target, SimpleUploadedFile(name, b"Some text " + name.encode()), False).document

    backlog = [queued(bot, f"policy-{n}.txt") for n in range(5)]
    services.ingest_next(backlog[0].current_version_id)  # the busy bot has had its turn
    queued(other_bot, "visa.txt")

    # The next message in the broker is the busy bot's, but the turn goes to the other bot.
    services.ingest_next(backlog[1].current_version_id)
    statuses = {document.filename: document.status for document in Document.objects.all()}
    assert statuses["visa.txt"] == "ready"
    assert statuses["policy-0.txt"] == "ready"
    assert [statuses[f"policy-{n}.txt"] for n in range(1, 5)] == ["queued"] * 4
    # The message that gave its turn away was queued again for its own document.
    backlog[1].refresh_from_db()
    assert backlog[1].pending_version_id == backlog[1].current_version_id


@pytest.mark.django_db
def test_a_file_over_the_passage_budget_fails_with_a_reason_before_anything_is_embedded(bot, settings):
    settings.DOCENT_MAX_CHUNKS_PER_DOCUMENT = 20
    small_passages(bot)
    document = services.add_document(bot, SimpleUploadedFile("huge.txt", long_text(4_000)), enqueue=False).document
    services.ingest_version(document.current_version_id)
    document.refresh_from_db()
    assert document.status == "failed"
    assert document.error_kind == "input"
    assert "passages; the limit is 20 per document. Split it into" in document.error
    estimate = int(document.error.split("about ")[1].split(" passages")[0].replace(",", ""))
    assert 60 < estimate < 200  # 4,000 words in 64-token passages: about a hundred
    assert not Chunk.objects.filter(document=document).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_document_mid_ingestion_stops_its_task_quietly(celery_worker, owner_api, bot):
    small_passages(bot)
    log_offset = worker_log_size(celery_worker)
    (huge,) = upload(owner_api, bot.id, "huge.txt", long_text(20_000)).json()
    version = Document.objects.get(pk=huge["id"]).current_version
    stored = version.file.path

    def embedding_underway():
        document = Document.objects.get(pk=huge["id"])
        return document.status == "embedding" and document.chunks_done > 0

    wait_for(embedding_underway, timeout=180, message="embedding to start")
    assert owner_api.delete(f"/api/v1/documents/{huge['id']}").status_code == 204

    def task_stopped():
        return huge["id"] not in ingestion_locks_held()

    wait_for(task_stopped, timeout=120, message="the task to let go of the deleted document")
    time.sleep(1)  # the task's last log lines
    log = worker_log_since(celery_worker, log_offset)
    assert "Traceback" not in log and "DatabaseError" not in log, log
    assert not DocumentVersion.objects.filter(pk=version.pk).exists()
    assert not Chunk.objects.filter(document_id=huge["id"]).exists()
    assert not Page.objects.filter(version_id=version.pk).exists()
    assert not __import__("os").path.exists(stored)


@pytest.fixture
def stopped_worker(celery_worker):
    """No worker takes messages: whatever is queued stays in the broker for the test to count.

    The next test that needs the worker starts it again (conftest's celery_worker)."""
    celery_worker.stop()
    purge_ingest_queue()
    yield
    purge_ingest_queue()  # the rows these messages name are gone with the test


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stopped_worker")
def test_the_sweeper_requeues_only_documents_whose_message_is_lost(bot, settings):
    settings.DOCENT_STALE_SECONDS = 0  # everything waiting counts as old
    for n in range(30):
        services.add_document(bot, SimpleUploadedFile(f"memo-{n}.txt", f"Memo {n}.".encode()))
    assert ingest_queue_length() == 30

    # Waiting behind a busy (here: absent) worker is not being stuck.
    assert services.sweep_stuck_documents() == 0
    assert ingest_queue_length() == 30

    # Enqueueing again, by whichever path, never sends a second message for a version.
    document = Document.objects.get(filename="memo-0.txt")
    assert services.enqueue_ingest(document.current_version_id) is False
    assert ingest_queue_length() == 30

    # A document whose message never reached the broker is re-queued, once.
    lost = services.add_document(bot, SimpleUploadedFile("lost.txt", b"Lost memo."), enqueue=False).document
    assert services.sweep_stuck_documents() == 1
    assert services.sweep_stuck_documents() == 0
    assert ingest_queue_length() == 31
    lost.refresh_from_db()
    assert lost.pending_version_id == lost.current_version_id

    # The broker lost every message (restarted without its data): each document once more.
    purge_ingest_queue()
    assert services.sweep_stuck_documents() == 31
    assert services.sweep_stuck_documents() == 0
    assert ingest_queue_length() == 31
