"""Refuse requests carrying NUL characters before any view sees them.

Postgres text cannot hold NUL (0x00): a NUL that reaches a query or an INSERT is a 500
from the database. Django's form fields already refuse it, but paths, query strings
and POST fields that views read directly do not. This middleware covers all of those
for every route at once; JSON bodies are checked by the API schemas (bots.schemas.Input)
and the OpenAI endpoint's reader, which know their shapes.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse

REASON = "The request contains a NUL (\\x00) character, which Docent does not accept in any text."


class RejectNulCharactersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _carries_nul(request):
            return _refusal(request)
        return self.get_response(request)


def _carries_nul(request) -> bool:
    if "\x00" in request.path:
        return True
    if _has_nul(request.GET):
        return True
    # Only url-encoded forms: parsing a multipart body here would read uploads before the
    # view's own limits apply, and file fields are not stored as text anyway.
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        return _has_nul(request.POST)
    return False


def _has_nul(query_dict) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in query_dict.lists())


def _refusal(request) -> HttpResponse:
    if request.path.startswith("/v1/"):
        error = {"message": REASON, "type": "invalid_request_error", "param": None, "code": "nul_character"}
        return JsonResponse({"error": error}, status=400)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": REASON}, status=400)
    return HttpResponse(REASON, status=400, content_type="text/plain; charset=utf-8")
