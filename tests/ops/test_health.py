"""/healthz and /readyz: JSON, no login, past the host check, and 503 naming the dependency that is down."""

import logging
import socket

import pytest

from retrieval.services import warm_up


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthz_answers_without_dependencies_or_a_known_host(client):
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")  # an orchestrator probes by IP address
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_with_a_timed_check_per_dependency(client):
    warm_up()  # the question encoder's ONNX export is in place, as `serve` makes sure at start
    response = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "migrations", "broker", "embedding_model"}
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert isinstance(check["ms"], float)


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_it_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = f"redis://:s3cret-broker-pass@127.0.0.1:{closed_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["status"] == "error"
    assert "broker did not answer" in body["checks"]["broker"]["reason"]
    assert body["checks"]["database"]["status"] == "ok"
    assert "s3cret-broker-pass" not in response.content.decode()


@pytest.mark.django_db
def test_a_failing_probe_logs_which_check_failed_as_a_warning_not_a_server_error(client, settings, caplog):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    with caplog.at_level(logging.INFO):
        assert client.get("/readyz").status_code == 503
        assert client.get("/no-such-page-xyz/").status_code == 404  # other requests are still logged
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    (summary,) = [record for record in caplog.records if record.getMessage().startswith("Not ready")]
    assert summary.levelno == logging.WARNING and "broker: the broker did not answer" in summary.getMessage()
    not_found = [record for record in caplog.records if record.name == "django.request"]
    assert any("no-such-page-xyz" in record.getMessage() for record in not_found)


@pytest.mark.django_db
def test_readyz_is_503_when_the_embedding_model_export_is_missing(client, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # a data directory whose models/ folder holds no export
    response = client.get("/readyz")
    assert response.status_code == 503
    check = response.json()["checks"]["embedding_model"]
    assert check["status"] == "error"
    assert "export" in check["reason"]
