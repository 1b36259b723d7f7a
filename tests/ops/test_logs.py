"""Structured logs: JSON lines with the request's ids, and the request id carried into the worker's task."""

import io
import json
import logging
import time
import uuid

import pytest

from config import logs
from tests.conftest import api_client_for, wait_until_final


@pytest.fixture
def request_log():
    """What the docent.request logger writes through the JSON formatter of settings.LOGGING."""
    spec = dict(logs.formatters()["json"])
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(spec.pop("()")(**spec))
    logger = logging.getLogger("docent.request")
    logger.addHandler(handler)
    yield handler.stream
    logger.removeHandler(handler)


def json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # Celery's start-up banner is printed, not logged
    return lines


@pytest.mark.django_db
def test_a_request_logs_a_json_line_with_its_request_and_user_ids(owner_api, owner, bot, request_log):
    response = owner_api.get(f"/api/v1/bots/{bot.id}/documents", headers={"X-Request-ID": "req-abc.123"})
    assert response["X-Request-ID"] == "req-abc.123"
    (line,) = json_lines(request_log.getvalue())
    assert line["request_id"] == "req-abc.123"
    assert line["user_id"] == owner.id
    assert str(line["bot_id"]) == str(bot.id)
    assert line["status"] == 200
    assert line["route"] == "api/v1/bots/<bot_id>/documents"


@pytest.mark.django_db
def test_an_insane_request_id_is_replaced(client, request_log):
    response = client.get("/accounts/login/", headers={"X-Request-ID": 'evil"\n{"level": "critical"}'})
    generated = response["X-Request-ID"]
    assert generated and "evil" not in generated
    assert json_lines(request_log.getvalue())[0]["request_id"] == generated


@pytest.mark.django_db(transaction=True)
def test_the_request_id_travels_into_the_task_the_request_enqueues(owner, bot, celery_worker):
    request_id = f"upload-{uuid.uuid4().hex}"
    response = api_client_for(owner).post(
        f"/api/v1/bots/{bot.id}/documents",
        {"file": io.BytesIO(b"The parking garage opens at seven.")},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 202
    wait_until_final(response.json()[0]["id"])
    deadline = time.monotonic() + 10  # the task's last lines may follow the document's final status
    while True:
        lines = [line for line in json_lines(celery_worker.log) if line.get("request_id") == request_id]
        if any("succeeded" in line["event"] for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert lines, "no worker log line carries the request id"
    assert {line["task_name"] for line in lines} == {"documents.tasks.ingest"}
    assert all(line["task_id"] for line in lines)


@pytest.mark.django_db
def test_lines_logged_while_the_worker_handles_a_document_name_it_and_its_bot(bot, index_texts):
    from documents import services
    from documents.models import DocumentVersion

    index_texts(bot, {"menu.txt": "Soup on Mondays."})
    version = DocumentVersion.objects.select_related("document").get(document__bot=bot)
    spec = dict(logs.formatters()["json"])
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(spec.pop("()")(**spec))
    logger = logging.getLogger("documents.services")
    logger.addHandler(handler)
    try:
        with services._on_its_own(version):
            logger.warning("Parsing a page")
        with services._on_its_own(version):
            raise RuntimeError("a bug")  # logged with its traceback
        logger.warning("Between turns")
    finally:
        logger.removeHandler(handler)

    parsing, failed, between = json_lines(handler.stream.getvalue())
    for line in (parsing, failed):
        assert (line["document_id"], str(line["bot_id"])) == (version.document_id, str(bot.id)), line
    assert "failed" in failed["event"] and "a bug" in failed["exception"]
    assert "document_id" not in between and "bot_id" not in between
