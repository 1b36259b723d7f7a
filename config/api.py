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

from bots.api import router as bots_router
from bots.auth import api_auth
from bots.evaluation_api import router as evaluation_router
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


api = NinjaAPI(
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
