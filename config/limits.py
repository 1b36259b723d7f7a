"""Request body limits, enforced before anything reads the body.

Django's ASGIHandler spools the whole body to a temporary file before any middleware
runs, so a limit checked in a view or middleware comes after a 2 GiB upload has been
written to disk. `LimitRequestBody` wraps the ASGI application instead: it refuses on
the Content-Length header without reading a byte, and for a body without one
(chunked) it counts bytes as they stream and stops at the limit.
`LimitRequestBodyMiddleware` is the same check for the WSGI path, where the server
hands Django a stream with a known length (WSGI bodies without Content-Length are
read as empty by Django).

Document uploads may be large (DOCENT_MAX_UPLOAD_REQUEST_MB for the whole request,
every file included); every other request is small (DATA_UPLOAD_MAX_MEMORY_SIZE).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponse
from django.urls import Resolver404, get_resolver, resolve

# The routes that accept document uploads: the API endpoint and the knowledge tab's form.
UPLOAD_ROUTES = {"api:upload_documents", "bots:upload"}


def upload_limit_bytes() -> int:
    return settings.DOCENT_MAX_UPLOAD_REQUEST_MB * 1024 * 1024


def is_upload(path: str, method: str) -> bool:
    if method != "POST":
        return False
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.view_name in UPLOAD_ROUTES


def limit_for(path: str, method: str) -> int:
    """The most bytes of body a request to `path` may carry."""
    return upload_limit_bytes() if is_upload(path, method) else settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _size(limit: int) -> str:
    megabytes = limit / 1024 / 1024
    return f"{megabytes:g} MB" if megabytes >= 1 else f"{limit // 1024} KB"


def refusal(path: str, method: str, limit: int, htmx: bool = False) -> tuple[dict[str, str], bytes]:
    """Headers and body of the 413 answer: JSON for the APIs, a short message for pages."""
    if is_upload(path, method):
        message = f"This upload is too large: at most {_size(limit)} can be sent at once. Send fewer or smaller files."
    else:
        message = f"The request is too large: the limit is {_size(limit)}."
    if path.startswith("/v1/"):
        # The OpenAI-compatible endpoint answers in OpenAI's error shape, which its clients read.
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}
        return {"Content-Type": "application/json"}, json.dumps({"error": error}).encode()
    if path.startswith("/api/"):
        return {"Content-Type": "application/json"}, json.dumps({"detail": message}).encode()
    headers = {"Content-Type": "text/html; charset=utf-8"}
    if htmx and is_upload(path, method):
        # The knowledge tab's drop zone shows the reason where upload errors go.
        headers |= {"HX-Retarget": "#upload-message", "HX-Reswap": "innerHTML"}
    return headers, f'<p class="error" role="alert">{message}</p>'.encode()


class LimitRequestBody:
    """ASGI wrapper: answer 413 to a body over the route's limit before Django reads it."""

    def __init__(self, app):
        self.app = app
        # Import the URLconf now: the first request's limit must not wait for the whole app to load.
        get_resolver().url_patterns  # noqa: B018

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        method = scope["method"]
        headers = dict(scope.get("headers") or [])
        limit = limit_for(path, method)
        htmx = headers.get(b"hx-request") == b"true"

        async def refuse():
            extra, body = refusal(path, method, limit, htmx)
            # Connection: close, because the rest of the body is never read.
            raw = [(name.lower().encode(), value.encode()) for name, value in extra.items()]
            raw += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 413, "headers": raw})
            await send({"type": "http.response.body", "body": body})

        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length > limit:
                return await refuse()
            # A server checks that the body matches its Content-Length; nothing more to count.
            return await self.app(scope, receive, send)

        received = 0
        refused = False

        async def counting_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await refuse()
                    # Django stops reading and answers nothing when the client "disconnects".
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, counting_receive, send)


class LimitRequestBodyMiddleware:
    """The same limit for the WSGI path (and Django's test client), on CONTENT_LENGTH."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = limit_for(request.path_info, request.method)
        if length > limit:
            htmx = request.headers.get("HX-Request") == "true"
            headers, body = refusal(request.path_info, request.method, limit, htmx)
            response = HttpResponse(body, status=413, content_type=headers.pop("Content-Type"))
            for name, value in headers.items():
                response[name] = value
            return response
        return self.get_response(request)
