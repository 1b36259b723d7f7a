"""Probes for load balancers and orchestrators: /healthz (the process is up) and /readyz (it can serve).

Both answer JSON, without authentication, before the session, CSRF, login and host
checks run (PlatformEndpointsMiddleware): a probe comes from the orchestrator by IP
address, not a browser by the site's name. /readyz says which check failed and why in
a few words; the full error goes to the log, never to the unauthenticated caller.
"""

from __future__ import annotations

import logging
import time

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.urls import resolve

from config.metrics import broker_channel, metrics

logger = logging.getLogger(__name__)

# How long /readyz waits for the broker: a load balancer's probe times out in a few seconds.
BROKER_CHECK_TIMEOUT_SECONDS = 2.0
_migrations_applied = False  # once true, stays true: new migrations come with a new process


class NotReady(Exception):
    """A readiness check failed; the message is safe to show anyone."""


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks = {}
    for name, check in READINESS_CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except NotReady as exc:
            result = {"status": "error", "reason": str(exc)}
        else:
            result = {"status": "ok"}
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        checks[name] = result
    ready = all(result["status"] == "ok" for result in checks.values())
    if not ready:
        failed = [f"{name}: {result['reason']}" for name, result in checks.items() if result["status"] != "ok"]
        logger.warning("Not ready: %s", "; ".join(failed))
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        logger.warning("Readiness: the database did not answer: %r", exc)
        raise NotReady(f"the database did not answer ({type(exc).__name__})") from exc


def check_migrations() -> None:
    global _migrations_applied
    if _migrations_applied:
        return
    try:
        executor = MigrationExecutor(connection)
        unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        logger.warning("Readiness: could not read the migrations: %r", exc)
        raise NotReady(f"could not read the applied migrations ({type(exc).__name__})") from exc
    if unapplied:
        raise NotReady(f"{len(unapplied)} migration(s) not applied: run `python manage.py migrate`")
    _migrations_applied = True


def check_broker() -> None:
    try:
        with broker_channel(BROKER_CHECK_TIMEOUT_SECONDS) as channel:
            if hasattr(channel, "client"):  # Redis: the channel may not have talked to it yet
                channel.client.ping()
    except Exception as exc:
        logger.warning("Readiness: the broker did not answer: %r", exc)
        raise NotReady(f"the broker did not answer ({type(exc).__name__})") from exc


def check_embedding_model() -> None:
    """The default model's question encoder can load without an export first (its files are in place)."""
    from retrieval.services import query_embedder_problem

    try:
        problem = query_embedder_problem()
    except Exception as exc:
        logger.warning("Readiness: could not check the embedding model: %r", exc)
        raise NotReady(f"could not check the embedding model ({type(exc).__name__})") from exc
    if problem:
        raise NotReady(problem)


READINESS_CHECKS = {
    "database": check_database,
    "migrations": check_migrations,
    "broker": check_broker,
    "embedding_model": check_embedding_model,
}

# Served by PlatformEndpointsMiddleware; listed in config/urls.py too, for reverse() and route names.
ENDPOINTS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class PlatformEndpointsMiddleware:
    """Answers /healthz, /readyz and /metrics ahead of sessions, CSRF, host checks and HTTPS redirects.

    Probes and scrapers call by IP address over plain HTTP inside the cluster; none of
    these endpoints builds a URL from the Host header or reads a session.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path not in ENDPOINTS or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        request.resolver_match = resolve(request.path)  # its route names the request in logs and metrics
        return request.resolver_match.func(request)
