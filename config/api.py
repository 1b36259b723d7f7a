"""The NinjaAPI at /api/v1/: mounts each app's router and renders every error as {"detail": ...}."""

from django.core.exceptions import PermissionDenied, ValidationError
from ninja import NinjaAPI

from bots.api import router as bots_router
from bots.auth import api_auth

api = NinjaAPI(
    title="Docent API",
    version="1",
    description="Bots, documents, search and chat. Authenticate with `Authorization: Bearer <token>`.",
    auth=api_auth,
    urls_namespace="api",
)
api.add_router("", bots_router)


@api.exception_handler(ValueError)
def bad_value(request, exc: ValueError):
    return api.create_response(request, {"detail": str(exc)}, status=400)


@api.exception_handler(ValidationError)
def invalid(request, exc: ValidationError):
    return api.create_response(request, {"detail": " ".join(exc.messages)}, status=400)


@api.exception_handler(PermissionDenied)
def forbidden(request, exc: PermissionDenied):
    return api.create_response(request, {"detail": str(exc) or "You may not do this."}, status=403)
