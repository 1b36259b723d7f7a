"""The NinjaAPI at /api/v1/: mounts each app's router and renders every error as {"detail": ...}."""

import json
import logging

from csp.decorators import csp_update
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DataError
from django.shortcuts import render
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.openapi.docs import Swagger
from ninja.openapi.schema import REF_TEMPLATE
from pydantic.json_schema import models_json_schema

from bots.api import router as bots_router
from bots.auth import api_auth
from bots.evaluation_api import router as evaluation_router
from bots.schemas import ErrorOut, InvalidRequestOut
from retrieval.services import UnknownChoice

logger = logging.getLogger(__name__)


class LocalSwagger(Swagger):
    """Swagger UI from our own static files (npm swagger-ui-dist), started by a static script.

    ninja's default page loads it from a public CDN at a floating version with an inline
    script: blank offline, foreign code on our origin, and blocked by our CSP.
    """

    def render_page(self, request, api, **kwargs):
        openapi_url = self.get_openapi_url(api, kwargs)
        context = {
            "api": api,
            "openapi_url": openapi_url,
            "swagger_settings": json.dumps({**self.settings, "url": openapi_url}),
            # Session-authenticated "Try it out" requests must carry the CSRF token.
            "add_csrf": any(getattr(auth, "csrf", False) for auth in api_auth),
        }
        return render(request, "api/docs.html", context)


# The refusals any operation may give, beside those it declares itself (409, 415, 503, ...).
# (status, applies to the operation, description, body)
COMMON_ERRORS = [
    (400, lambda op: True, "Malformed input: unreadable JSON, or a value the server refuses.", ErrorOut),
    (401, lambda op: True, "No valid API token or session.", ErrorOut),
    (403, lambda op: True, "Not allowed, or a session request without its CSRF token.", ErrorOut),
    (404, lambda op: bool(op.get("parameters")), "No such object among those the caller may see.", ErrorOut),
    (413, lambda op: "requestBody" in op, "The request body is over the size limit.", ErrorOut),
    (
        422,
        lambda op: bool(op.get("parameters")) or "requestBody" in op,
        "A parameter or body field doesn't fit the schema (each problem listed with its place), "
        "or names a model, reranker or provider no admin registered (one sentence).",
        InvalidRequestOut,
    ),
]


class DocentAPI(NinjaAPI):
    """A NinjaAPI whose schema documents the errors every operation may answer with.

    ninja lists only the answers an endpoint declares, but the exception handlers below and
    ninja's own validation answer any operation with 400, 401, 403, 404, 413 or 422; clients
    (and tests/bots/test_api_schema.py) read the schema to know which answers to expect.
    """

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        models = [ErrorOut, InvalidRequestOut]
        _, definitions = models_json_schema([(model, "serialization") for model in models], ref_template=REF_TEMPLATE)
        schema["components"]["schemas"].update(definitions["$defs"])
        for path in schema["paths"].values():
            for operation in path.values():
                _document_errors(operation)
        return schema


def _document_errors(operation: dict) -> None:
    responses = operation["responses"]
    for status, applies, description, model in COMMON_ERRORS:
        if not applies(operation):
            continue
        body = {"$ref": REF_TEMPLATE.format(model=model.__name__)}
        if model is InvalidRequestOut:
            # ninja's list of invalid fields, or one sentence (UnknownChoice, or the operation's own 422).
            declared = responses.get(status, {}).get("content", {}).get("application/json", {}).get("schema")
            body = {"anyOf": [body, declared or {"$ref": REF_TEMPLATE.format(model=ErrorOut.__name__)}]}
        if status not in responses:
            responses[status] = {"description": description, "content": {"application/json": {"schema": body}}}
        elif model is InvalidRequestOut:
            responses[status]["content"]["application/json"]["schema"] = body


api = DocentAPI(
    title="Docent API",
    version="1",
    description="Bots, documents, search and chat. Authenticate with `Authorization: Bearer <token>`.",
    auth=api_auth,
    urls_namespace="api",
    docs=LocalSwagger(),
    # Swagger UI's stylesheet draws its icons from data: URLs; only this page allows them.
    docs_decorator=csp_update({"img-src": ["data:"]}),
)
api.add_router("", bots_router)
api.add_router("", evaluation_router)


@api.exception_handler(ValueError)
def bad_value(request, exc: ValueError):
    return api.create_response(request, {"detail": str(exc)}, status=400)


@api.exception_handler(UnknownChoice)
def unknown_choice(request, exc: UnknownChoice):
    # Well-formed, but names a model, reranker or provider no admin registered.
    return api.create_response(request, {"detail": str(exc)}, status=422)


@api.exception_handler(ValidationError)
def invalid(request, exc: ValidationError):
    return api.create_response(request, {"detail": " ".join(exc.messages)}, status=400)


@api.exception_handler(PermissionDenied)
def forbidden(request, exc: PermissionDenied):
    return api.create_response(request, {"detail": str(exc) or "You may not do this."}, status=403)


@api.exception_handler(AuthenticationError)
def unauthenticated(request, exc: AuthenticationError):
    # RFC 9110: a 401 names the scheme the client should use.
    message = exc.message if exc.message != "Unauthorized" else "Log in, or send `Authorization: Bearer <token>`."
    response = api.create_response(request, {"detail": message}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(DataError)
def unstorable(request, exc: DataError):
    # Input the schemas let through but Postgres cannot store (a number out of range, say).
    logger.warning("API request refused by the database: %s", exc)
    message = "A value in the request cannot be stored (a number out of range, or a NUL character)."
    return api.create_response(request, {"detail": message}, status=400)


@api.exception_handler(Exception)
def unexpected(request, exc: Exception):
    # ninja re-raises unknown errors to Django, whose 500 page is HTML; API clients get JSON.
    logger.exception("API request failed: %s %s", request.method, request.path)
    return api.create_response(request, {"detail": "Something went wrong on our side; it has been logged."}, status=500)
