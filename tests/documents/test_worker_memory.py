"""A worker pool process grown past DOCENT_WORKER_MAX_MEMORY_MB is replaced after its task, and work goes on."""

import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents import services
from tests.conftest import Worker, wait_until_final, worker_instead
from tests.documents.test_pipeline import wait_for


@pytest.fixture
def small_memory_worker(celery_worker, tmp_path):
    """The session's worker makes way for one whose pool processes may hold only 1 MB (so every task is their last)."""
    with worker_instead(
        celery_worker, {"DOCENT_WORKER_MAX_MEMORY_MB": "1"}, tmp_path, name="small", beat=False
    ) as worker:
        yield worker


def pool_processes(worker: Worker) -> set[int]:
    return {child.pid for child in psutil.Process(worker.process.pid).children()}


@pytest.mark.django_db(transaction=True)
def test_a_pool_process_over_its_memory_bound_is_replaced_after_its_task(small_memory_worker, bot):
    before = pool_processes(small_memory_worker)
    for name in ["canteen.txt", "parking.txt"]:
        upload = services.add_document(bot, SimpleUploadedFile(name, f"The {name[:-4]} rules are posted.".encode()))
        assert wait_until_final(upload.document.id).status == "ready"
    # The last task's process has exited; its replacement may still be starting.
    wait_for(lambda: len(pool_processes(small_memory_worker)) == 1, 30, "the replacement pool process")
    after = pool_processes(small_memory_worker)
    assert len(before) == len(after) == 1
    assert before != after  # each finished its task and made way for a fresh process
    assert "WorkerLostError" not in small_memory_worker.log  # replaced, not lost
