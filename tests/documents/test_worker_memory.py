"""A worker pool process grown past DOCENT_WORKER_MAX_MEMORY_MB is replaced after its task, and work goes on."""

import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents import services
from tests.conftest import Worker, wait_until_final


@pytest.fixture
def small_memory_worker(celery_worker, tmp_path):
    """The session's worker makes way for one whose pool processes may hold only 1 MB (so every task is their last).

    The next test that needs the session's worker starts it again (conftest's celery_worker)."""
    worker = Worker({**celery_worker.env, "DOCENT_WORKER_MAX_MEMORY_MB": "1"}, tmp_path, name="small", beat=False)
    celery_worker.stop()
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


def pool_processes(worker: Worker) -> set[int]:
    return {child.pid for child in psutil.Process(worker.process.pid).children()}


@pytest.mark.django_db(transaction=True)
def test_a_pool_process_over_its_memory_bound_is_replaced_after_its_task(small_memory_worker, bot):
    before = pool_processes(small_memory_worker)
    for name in ["canteen.txt", "parking.txt"]:
        upload = services.add_document(bot, SimpleUploadedFile(name, f"The {name[:-4]} rules are posted.".encode()))
        assert wait_until_final(upload.document.id).status == "ready"
    after = pool_processes(small_memory_worker)
    assert len(before) == len(after) == 1
    assert before != after  # each finished its task and made way for a fresh process
    assert "WorkerLostError" not in small_memory_worker.log  # replaced, not lost
