"""Server-sent events for streamed answers, under ASGI (production) and WSGI (test server) alike.

Django streams an async iterator under ASGI and a sync one under WSGI; handed the
other kind it first collects the whole body, which would defeat streaming. The
answer pipeline is synchronous (ORM, torch), so under ASGI each step runs on one
dedicated thread: Django's database connections are per thread, and one thread
keeps the stream's queries on one connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connections
from django.http import StreamingHttpResponse

logger = logging.getLogger(__name__)

_DONE = object()

# What a reader is told when an answer breaks off mid-stream (the database restarted, the model
# server went away): the 200 status and the first tokens are already sent, so only an event can say it.
INTERRUPTED = "The answer was interrupted by a problem on the server. Ask again in a moment."


def sse(event: str, data) -> str:
    """One SSE message; `data` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data)
    lines = "".join(f"data: {line}\n" for line in payload.split("\n"))
    return f"event: {event}\n{lines}\n"


def ending_on_failure(messages: Iterator[str], last_message: Callable[[], str]) -> Iterator[str]:
    """`messages`, but if producing them fails, `last_message()` ends the stream instead of a cut connection."""
    try:
        yield from messages
    except Exception:
        logger.exception("A streamed answer failed")
        yield last_message()


def sse_response(request, messages: Iterator[str]) -> StreamingHttpResponse:
    body = _async_messages(messages) if isinstance(request, ASGIRequest) else messages
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx not to buffer the stream
    return response


async def _async_messages(messages: Iterator[str]):
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sse") as thread:
        try:
            while (message := await loop.run_in_executor(thread, next, messages, _DONE)) is not _DONE:
                yield message
        finally:
            await loop.run_in_executor(thread, _close, messages)


def _close(messages) -> None:
    close = getattr(messages, "close", None)
    if close:
        close()
    close_old_connections()
    connections.close_all()
