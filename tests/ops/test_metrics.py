"""/metrics: who may read it, and series that follow what happens in the installation."""

import time

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from bots import services as bots
from bots.models import ApiToken
from documents.models import Document
from retrieval import services as retrieval
from tests.conftest import api_client_for, wait_until_final
from tests.documents.test_pipeline import long_text, upload
from tests.ops.test_health import closed_port

OUTSIDE = "203.0.113.7"  # TEST-NET-3: never in the allowed networks


def scrape(client: Client | None = None) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of one scrape, from the loopback address the test client uses."""
    response = (client or Client()).get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.django_db
def test_anonymous_outside_the_allowed_networks_is_refused(client):
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    assert "detail" in response.json()


@pytest.mark.django_db
def test_a_member_token_is_refused_and_a_wrong_token_is_401(member):
    _, key = ApiToken.issue(member)
    assert Client().get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 403
    wrong = Client().get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer dct_not-a-token")
    assert wrong.status_code == 401
    assert "detail" in wrong.json()


@pytest.mark.django_db
def test_an_admin_token_reads_the_metrics_from_anywhere(django_user_model):
    admin = django_user_model.objects.create_superuser("ada", password="admin-pass-123")
    _, key = ApiToken.issue(admin)
    response = Client().get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    assert b"docent_documents" in response.content


@pytest.mark.django_db
def test_allowed_networks_come_from_the_setting_and_proxies_are_accounted_for(client, settings):
    settings.DOCENT_METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    # Behind one proxy, the address is the one it forwarded, not the proxy's own.
    settings.DOCENT_PROXY_COUNT = 1
    assert client.get("/metrics", REMOTE_ADDR="10.20.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.20.9.9").status_code == 200


@pytest.mark.django_db
def test_requests_are_counted_by_route_pattern_method_and_status(owner_api, bot):
    route = "api/v1/bots/<bot_id>/documents"
    before = scrape()
    for _ in range(3):
        assert owner_api.get(f"/api/v1/bots/{bot.id}/documents").status_code == 200
    assert owner_api.get("/api/v1/bots/999999/documents").status_code == 404
    after = scrape()
    counted = "docent_http_requests_total"
    assert (
        value(after, counted, route=route, method="GET", status="200")
        - value(before, counted, route=route, method="GET", status="200")
        == 3
    )
    assert (
        value(after, counted, route=route, method="GET", status="404")
        - value(before, counted, route=route, method="GET", status="404")
        == 1
    )
    timed = "docent_http_request_duration_seconds_count"
    assert value(after, timed, route=route, method="GET") - value(before, timed, route=route, method="GET") == 4
    # Raw paths never become labels.
    assert not any(("999999" in dict(labels).get("route", "")) for _, labels in after)


@pytest.mark.django_db
def test_documents_by_status_are_counted_at_scrape_time(bot):
    before = scrape()
    Document.objects.create(bot=bot, filename="a.txt", status="ready")
    Document.objects.create(bot=bot, filename="b.txt", status="ready")
    Document.objects.create(bot=bot, filename="c.txt", status="failed")
    after = scrape()
    assert value(after, "docent_documents", status="ready") - value(before, "docent_documents", status="ready") == 2
    assert value(after, "docent_documents", status="failed") - value(before, "docent_documents", status="failed") == 1
    assert ("docent_documents", frozenset({("status", "parsing")})) in after  # every status, even at 0


@pytest.mark.django_db
def test_answers_are_counted_by_outcome(owner, bot, index_texts):
    index_texts(bot, {"canteen.txt": "The canteen opens at 11:30 and closes at 14:00 on weekdays."})
    before = scrape()
    _, answered = bots.ask(bot, owner, "When does the canteen open?")
    assert answered.citations
    _, refused = bots.ask(bot, owner, "Quantum chromodynamics of gluon plasma?")
    assert refused.trace.refused
    bot.provider = retrieval.create_provider(
        name="Gone", base_url=f"http://127.0.0.1:{closed_port()}/v1", model_names=["m"], context_tokens=8192
    )
    bot.save()
    _, failed = bots.ask(bot, owner, "When does the canteen close?")
    assert "error" in failed.trace.tokens
    after = scrape()
    for outcome in ("answered", "refused", "error"):
        counted = "docent_answers_total"
        assert value(after, counted, outcome=outcome) - value(before, counted, outcome=outcome) == 1, outcome


@pytest.mark.django_db
def test_a_reply_of_a_bot_without_documents_is_counted(owner, bot):
    before = scrape()
    _, reply = bots.ask(bot, owner, "When does the canteen open?")
    assert reply.trace is None
    after = scrape()
    counted = "docent_answers_total"
    assert value(after, counted, outcome="no_documents") - value(before, counted, outcome="no_documents") == 1
    assert value(after, counted, outcome="refused") == value(before, counted, outcome="refused")


@pytest.mark.django_db(transaction=True)
def test_worker_series_move_with_ingestion(owner, bot, celery_worker):
    before = scrape()
    response = upload(api_client_for(owner), bot.id, "policy.txt", long_text(600))
    assert response.status_code == 202
    document = wait_until_final(response.json()[0]["id"])
    assert document.status == "ready"
    after = scrape()
    embedded = value(after, "docent_chunks_embedded_total") - value(before, "docent_chunks_embedded_total")
    assert embedded >= document.chunk_count > 1
    heartbeats = {
        dict(labels)["worker"]: beat
        for (name, labels), beat in after.items()
        if name == "docent_worker_last_heartbeat_seconds"
    }
    assert any(worker.startswith("test-") and time.time() - beat < 60 for worker, beat in heartbeats.items())
    assert value(after, "docent_queue_messages", queue="ingest") == 0
    assert ("docent_queue_messages", frozenset({("queue", "default")})) in after


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_web_processes_of_one_serve_answer_and_metrics_add_up_both(django_user_model, tmp_path):
    """`serve --web-workers 2`: two processes share the port; a scrape reaches one, and counts both."""
    import concurrent.futures
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    import psutil
    from django.conf import settings
    from django.db import connection

    from tests.conftest import ROOT, database_url
    from tests.test_serve_lifecycle import free_port

    admin = django_user_model.objects.create_superuser("metrics-admin", password="x")
    _, key = ApiToken.issue(admin)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DOCENT_DATA_DIR": str(tmp_path),
        "DOCENT_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "manage.py", "serve", "--no-worker", "--no-warm-up", "--web-workers", "2"]
    server = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=30) as response:  # a new connection each time
            return response.status, response.read()

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get("/healthz")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.5)
        web = [child for child in psutil.Process(server.pid).children() if "spawn_main" in " ".join(child.cmdline())]
        assert len(web) == 2, [child.cmdline() for child in psutil.Process(server.pid).children()]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: get("/api/v1/bots")[0], range(40)))
        assert statuses == [200] * 40
        for _ in range(4):  # each scrape lands on either process
            samples = {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(get("/metrics")[1].decode())
                for sample in family.samples
            }
            route = {"route": "api/v1/bots", "method": "GET", "status": "200"}
            assert value(samples, "docent_http_requests_total", **route) == 40
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
