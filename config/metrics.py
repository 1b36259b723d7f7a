"""Prometheus metrics at /metrics: what a platform team graphs and alerts on.

Each web process counts its own requests and answers (prometheus-client); scrape every
replica. The web processes of one `serve --web-workers N` share a port, so there they
count in files under PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode,
set up by serve) and a scrape adds up all of them. What lives elsewhere is read at
scrape time, so any web process reports the same installation-wide values:

- from Postgres: documents by status, evaluation runs by status;
- from the broker (Redis): messages waiting per queue, and two values the workers
  write there because Prometheus never scrapes a worker: the total of chunks embedded
  (one INCRBY per embedding batch) and each worker's last heartbeat.

Readable with an admin's API token (`Authorization: Bearer ...`) or from the networks
in DOCENT_METRICS_ALLOWED_NETWORKS (default: loopback only).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time

from celery import bootsteps
from django.apps import apps
from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from kombu import Connection
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

logger = logging.getLogger(__name__)

# Redis keys the workers write (the broker's database; "docent:" keeps them apart from Celery's).
CHUNKS_EMBEDDED_KEY = "docent:chunks-embedded"
HEARTBEATS_KEY = "docent:worker-heartbeats"  # sorted set: worker hostname → last heartbeat (unix time)
# A worker silent this long is dropped from the heartbeat series (it was killed, not stopped).
HEARTBEAT_RETENTION_SECONDS = 3600
# How long a scrape waits for the broker before leaving its series out.
BROKER_TIMEOUT_SECONDS = 2.0
QUEUES = ("ingest", "default")

disable_created_metrics()  # `_created` series double the output and nothing here graphs them
REGISTRY = CollectorRegistry()
ProcessCollector(namespace="docent", registry=REGISTRY)
HTTP_REQUESTS = Counter(
    "docent_http_requests",
    "HTTP requests answered, by route pattern (not raw path), method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "docent_http_request_duration_seconds",
    "Time until the response (a streamed answer's first byte), by route pattern and method.",
    ["route", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ANSWERS = Counter(
    "docent_answers",
    "Answers given to people (browser, API, /v1/) by outcome: answered, refused, error (the LLM failed),"
    " or no_documents (the bot has none yet, so nothing was searched).",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("answered", "refused", "error", "no_documents"):
    ANSWERS.labels(_outcome)  # present at 0 before the first answer

UNMATCHED_ROUTE = "unmatched"


class MetricsMiddleware:
    """Counts and times every request under its URL pattern, so cardinality is bounded by the routes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match else UNMATCHED_ROUTE
        method = request.method if request.method in _METHODS else "other"
        HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def count_answer(sender, instance, created, **kwargs):
    """post_save of retrieval's Trace: every answer stores one, saying whether it refused or the LLM failed."""
    if not created or instance.origin != "chat":
        return  # evaluation runs' answers are counted by their runs
    if "error" in instance.tokens:
        outcome = "error"
    elif instance.refused:
        outcome = "refused"
    else:
        outcome = "answered"
    ANSWERS.labels(outcome).inc()


# --- What workers write to the broker -----------------------------------------------------------


@contextlib.contextmanager
def broker_channel(timeout: float = BROKER_TIMEOUT_SECONDS):
    """A channel on a fresh broker connection that gives up after `timeout` seconds."""
    options = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_retries": 0,
    }
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout, transport_options=options) as connection:
        yield connection.default_channel


def count_chunks_embedded(sender, count: int, **kwargs):
    """documents' chunks_embedded signal, in the worker: add the batch to the installation's total."""
    try:
        with broker_channel() as channel:
            channel.client.incrby(CHUNKS_EMBEDDED_KEY, count)
    except Exception as exc:  # a metric is never worth failing ingestion for
        logger.warning("Could not count %d embedded chunks: %r", count, exc)


def record_heartbeat(worker: str) -> None:
    with broker_channel() as channel:
        channel.client.zadd(HEARTBEATS_KEY, {worker: time.time()})


def forget_heartbeat(worker: str) -> None:
    with broker_channel() as channel:
        channel.client.zrem(HEARTBEATS_KEY, worker)


class Heartbeat(bootsteps.StartStopStep):
    """A worker's liveness for /metrics: its hostname and the time, every DOCENT_HEARTBEAT_SECONDS.

    Written from the worker's event loop (its timer), so a hung worker stops beating even
    though its process lives. A worker stopped on purpose removes its entry.
    """

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.timer_entry = None

    def start(self, worker):
        self.beat(worker.hostname)
        self.timer_entry = worker.timer.call_repeatedly(
            settings.DOCENT_HEARTBEAT_SECONDS, self.beat, (worker.hostname,), priority=10
        )

    def stop(self, worker):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        with contextlib.suppress(Exception):
            forget_heartbeat(worker.hostname)

    @staticmethod
    def beat(hostname: str) -> None:
        try:
            record_heartbeat(hostname)
        except Exception as exc:
            logger.warning("Could not record the worker's heartbeat: %r", exc)


# --- Read at scrape time ----------------------------------------------------------------------------


class InstallationCollector:
    """The series read from Postgres and the broker on each scrape; a source that fails is left out."""

    def collect(self):
        try:
            yield from self._database()
        except Exception as exc:
            logger.warning("Metrics: could not read the database: %r", exc)
        try:
            yield from self._broker()
        except Exception as exc:
            logger.warning("Metrics: could not read the broker: %r", exc)

    def _database(self):
        Document = apps.get_model("documents", "Document")
        EvaluationRun = apps.get_model("evaluation", "EvaluationRun")
        for name, model, help_text in (
            ("docent_documents", Document, "Documents by ingestion status."),
            ("docent_evaluation_runs", EvaluationRun, "Evaluation runs by status."),
        ):
            counts = dict.fromkeys(model.Status.values, 0)
            counts.update(model.objects.order_by().values_list("status").annotate(n=Count("id")))
            family = GaugeMetricFamily(name, help_text, labels=["status"])
            for status, count in counts.items():
                family.add_metric([status], count)
            yield family

    def _broker(self):
        with broker_channel() as channel:
            waiting = GaugeMetricFamily(
                "docent_queue_messages", "Task messages waiting in the broker, by queue.", labels=["queue"]
            )
            for queue in QUEUES:
                waiting.add_metric([queue], _queue_length(channel, queue))
            client = channel.client
            embedded = int(client.get(CHUNKS_EMBEDDED_KEY) or 0)
            client.zremrangebyscore(HEARTBEATS_KEY, "-inf", time.time() - HEARTBEAT_RETENTION_SECONDS)
            heartbeats = client.zrange(HEARTBEATS_KEY, 0, -1, withscores=True)
        yield waiting
        yield CounterMetricFamily(
            "docent_chunks_embedded", "Chunks embedded by all workers (rate() gives chunks per second).", embedded
        )
        last = GaugeMetricFamily(
            "docent_worker_last_heartbeat_seconds",
            "Unix time of each worker's last heartbeat; alert when time() minus this grows.",
            labels=["worker"],
        )
        for worker, beat in heartbeats:
            last.add_metric([worker.decode() if isinstance(worker, bytes) else worker], beat)
        yield last


def _queue_length(channel, queue: str) -> int:
    try:
        return channel.queue_declare(queue, passive=True).message_count
    except channel.connection.channel_errors:
        return 0  # never declared yet (RabbitMQ): nothing waits in it


INSTALLATION = InstallationCollector()
REGISTRY.register(INSTALLATION)


def scrape_registry() -> CollectorRegistry:
    """This process's series, or with several web processes (serve --web-workers), all of theirs added up."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # the counters and histograms of every web process
    registry.register(INSTALLATION)
    return registry  # (without process_* series: each web process has its own)


# --- The endpoint ------------------------------------------------------------------------------------


def metrics(request):
    """GET /metrics: the Prometheus text format, for an admin's token or an allowed network."""
    if refusal := _refusal(request):
        return refusal
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)


def _refusal(request) -> JsonResponse | None:
    if request.headers.get("Authorization"):
        return _token_refusal(request.headers["Authorization"])
    if _from_allowed_network(request):
        return None
    return JsonResponse(
        {"detail": "Metrics are readable from an allowed network or with an admin's API token (Bearer)."}, status=403
    )


def _token_refusal(header: str) -> JsonResponse | None:
    from bots.services import user_for_token

    scheme, _, token = header.partition(" ")
    user = user_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if user is None:
        return JsonResponse({"detail": "Send a valid API token as `Authorization: Bearer <token>`."}, status=401)
    if not user.is_superuser:
        return JsonResponse({"detail": "Only an admin's API token may read the metrics."}, status=403)
    return None


def _from_allowed_network(request) -> bool:
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(address in network for network in allowed_networks())


def client_address(request) -> str:
    """The client's address: the connection's, or with DOCENT_PROXY_COUNT proxies, the one they forwarded."""
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if settings.DOCENT_PROXY_COUNT and forwarded:
        return forwarded[-min(settings.DOCENT_PROXY_COUNT, len(forwarded))]
    return request.META.get("REMOTE_ADDR", "")


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(network, strict=False) for network in settings.DOCENT_METRICS_ALLOWED_NETWORKS]
