"""Structured logs: JSON lines (or plain text for a terminal) carrying who and what each line is about.

Every log line, from Docent's own loggers and from Django's, Celery's and libraries',
goes through structlog's ProcessorFormatter (settings.LOGGING), which adds the context
bound for the current request or task: `request_id`, `user_id`, `bot_id`, `document_id`,
`task_id`, `task_name`. Code may add fields of its own with `extra={...}`.

The request id comes from the client's X-Request-ID header when it looks like an id,
or is generated; it is sent back in the response's X-Request-ID header, and it travels
in the message of every Celery task the request enqueues, so the worker's lines for that
task carry it too (and the tasks that task enqueues in turn).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import structlog
from celery import signals

logger = logging.getLogger("docent.request")

REQUEST_ID_HEADER = "X-Request-ID"
# The task message header the request id travels in.
TASK_HEADER = "docent_request_id"
# What a client's own request id may look like: UUIDs, hex trace ids, base64 tokens. Anything
# else (too long, spaces, control characters) could forge log lines and is replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
# URL arguments that name a bot or a document, under the names Docent's routes use.
_BOT_ARGUMENTS = ("bot_id", "slug")
_DOCUMENT_ARGUMENTS = ("document_id",)
# Probes and scrapes come every few seconds; their lines are DEBUG so they don't drown the rest.
QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}


class QuietProbes(logging.Filter):
    """Drops django.request's line for a probe's error status (a 503 from /readyz while a dependency is down).

    A load balancer probes every few seconds; Django would log each failing probe at ERROR as
    if the server had crashed. /readyz logs which check failed, once per probe, at WARNING.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        return getattr(request, "path", None) not in QUIET_PATHS


_SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def default_format() -> str:
    """Plain text for a person at a terminal, JSON lines for everything else (containers, files, collectors)."""
    return "plain" if sys.stderr.isatty() else "json"


def formatters() -> dict[str, dict]:
    """The `formatters` of settings.LOGGING: "json" and "plain", both with the bound context.

    Docent's code logs through the standard library; structlog only formats the records.
    """

    def formatter(renderer) -> dict:
        return {
            "()": structlog.stdlib.ProcessorFormatter,
            "foreign_pre_chain": _SHARED_PROCESSORS,
            "processors": [
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        }

    return {
        "json": formatter(structlog.processors.JSONRenderer(ensure_ascii=False)),
        "plain": formatter(structlog.dev.ConsoleRenderer(colors=False)),
    }


def request_id_of(request) -> str:
    """The client's X-Request-ID if it looks like an id, else a new one."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex


class RequestContextMiddleware:
    """Binds the request id (and, once known, user, bot and document) to every log line of a request.

    Ends with one line per request: method, path, route, status and milliseconds. The
    context is cleared when the next request starts, not when this one's response is
    returned, so a streamed answer's lines still carry it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        request.request_id = request_id_of(request)
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        _bind_user(request)
        match = getattr(request, "resolver_match", None)
        logger.log(
            logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "route": match.route if match else None,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        """After URL resolution and the session's authentication: bind what the view is about."""
        _bind_user(request)
        for names, field in ((_BOT_ARGUMENTS, "bot_id"), (_DOCUMENT_ARGUMENTS, "document_id")):
            for name in names:
                if name in view_kwargs:
                    structlog.contextvars.bind_contextvars(**{field: view_kwargs[name]})
                    break
        return None


def _bind_user(request) -> None:
    # An API token's user is set by the view's authentication, so this runs again after it.
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        structlog.contextvars.bind_contextvars(user_id=user.pk)


@signals.before_task_publish.connect
def send_request_id(headers=None, **kwargs):
    """Put the current request id (a web request's, or the running task's) in the task's message."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id and headers is not None:
        headers[TASK_HEADER] = request_id


@signals.task_prerun.connect
def bind_task_context(task_id=None, task=None, **kwargs):
    """In the worker: the task's lines carry its id, name and the request id it was enqueued under."""
    structlog.contextvars.clear_contextvars()
    context = {"task_id": task_id, "task_name": task.name}
    if request_id := getattr(task.request, TASK_HEADER, None):
        context["request_id"] = request_id
    structlog.contextvars.bind_contextvars(**context)


@signals.task_postrun.connect
def clear_task_context(**kwargs):
    structlog.contextvars.clear_contextvars()


@signals.setup_logging.connect
def use_django_logging(**kwargs):
    """The worker logs through settings.LOGGING (already applied by django.setup()), not Celery's own format.

    Celery leaves logging alone when this signal has a receiver.
    """
