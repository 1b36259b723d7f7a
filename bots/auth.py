"""Authentication: API bearer tokens, login throttling (django-axes) and password resets.

The REST and OpenAI-compatible APIs take a bearer token or the session cookie. A token
that is wrong or revoked is a 401 on every method; the session's CSRF check only
applies to requests that carry no Authorization header.

Logins through the login page are throttled (settings: DOCENT_LOGIN_*): too many
failures for one username from one address, or from one address overall, refuse
further logins from there for a cool-off period, even with the right password. API
tokens never go through `authenticate()`, so they are not throttled.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max, Sum
from django.shortcuts import render
from django.utils import timezone
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer, SessionAuth

from bots import services

# --- API authentication -------------------------------------------------------------------


class BearerToken(HttpBearer):
    """A valid `Authorization: Bearer <token>`; any other Authorization header is a 401.

    A request that sends credentials means those credentials: it never falls back to the
    session cookie, whose CSRF check would answer a misleading 403 on writes.
    """

    def __call__(self, request):
        if not request.headers.get(self.header):
            return None  # no credentials sent: the session may authenticate
        if (user := super().__call__(request)) is None:
            raise AuthenticationError(401, "Send a valid API token as `Authorization: Bearer <token>`.")
        return user

    def authenticate(self, request, token: str):
        user = services.user_for_token(token.strip())
        if user is None:
            raise AuthenticationError(401, "The API token is not valid: it may be mistyped or revoked.")
        request.user = user
        return user


# Session auth checks CSRF on unsafe methods, as every browser form does.
api_auth = [BearerToken(), SessionAuth(csrf=True)]


# --- Login throttling -----------------------------------------------------------------------


class ThrottledLogins(AxesStandaloneBackend):
    """django-axes' check, for logins that come with an HTTP request.

    `authenticate()` without a request (a management command, the test client's
    login()) is not a login attempt from the network, so there is nothing to throttle.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def failure_limit(request, credentials) -> int:
    return settings.DOCENT_LOGIN_FAILURES_PER_USER


class LockoutHandler(AxesDatabaseHandler):
    """axes' database handler with its own limit per lockout parameter.

    axes compares one failure count with one limit (AXES_FAILURE_LIMIT, the per-user
    limit). The per-address count is scaled to that limit, so 20 failures from an
    address weigh as much as 5 for one username from it.
    """

    def get_failures(self, request, credentials=None) -> int:
        per_user, per_address = self.get_user_attempts(request, credentials)
        user_failures = per_user.aggregate(n=Sum("failures_since_start"))["n"] or 0
        address_failures = per_address.aggregate(n=Sum("failures_since_start"))["n"] or 0
        scaled = address_failures * settings.DOCENT_LOGIN_FAILURES_PER_USER // settings.DOCENT_LOGIN_FAILURES_PER_IP
        return max(user_failures, scaled)

    def user_logged_in(self, sender, request, user, **kwargs):
        """A successful login forgets that username's failures from this address, and nobody else's.

        axes' own reset (AXES_RESET_ON_SUCCESS) deletes by every lockout parameter, the
        address alone included: anyone with an account could log into it between guesses
        at someone else's password and never reach the limit.
        """
        super().user_logged_in(sender, request, user, **kwargs)
        AccessAttempt.objects.filter(username=user.get_username(), ip_address=request.axes_ip_address).delete()


def locked_until(username: str | None, ip_address: str) -> datetime:
    """When logins for `username` from `ip_address` are accepted again (each try restarts the wait)."""
    from_address = AccessAttempt.objects.filter(ip_address=ip_address)
    mine = from_address.filter(username=username)
    user_failures = mine.aggregate(n=Sum("failures_since_start"))["n"] or 0
    # Locked as this user from here, or (after fewer failures of theirs) as the whole address.
    attempts = mine if user_failures >= settings.DOCENT_LOGIN_FAILURES_PER_USER else from_address
    latest = attempts.aggregate(latest=Max("attempt_time"))["latest"] or timezone.now()
    return latest + get_cool_off()


def lockout_response(request, original_response=None, credentials=None):
    """The login page again, saying why the login was refused and when to try again (axes' lockout view)."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    until = timezone.localtime(locked_until(username, request.axes_ip_address))
    minutes = max(1, round((until - timezone.now()).total_seconds() / 60))
    message = (
        f"Too many failed logins. Try again after {until:%H:%M} ({until:%Z}), "
        f"in about {minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator to unlock your account."
    )
    form = AuthenticationForm(request, initial={"username": username})
    context = {"form": form, "lockout": message, "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)


@dataclass(frozen=True)
class Lockout:
    """A username (from one address) or a whole address that may not log in now."""

    username: str | None
    ip_address: str
    failures: int
    until: datetime


def lockouts() -> list[Lockout]:
    """Every lockout in force, usernames first, for the Console."""
    since = timezone.now() - get_cool_off()
    recent = AccessAttempt.objects.filter(attempt_time__gte=since)
    found = []
    per_user = (
        recent.exclude(username=None)
        .values("username", "ip_address")
        .annotate(failures=Sum("failures_since_start"), latest=Max("attempt_time"))
        .filter(failures__gte=settings.DOCENT_LOGIN_FAILURES_PER_USER)
        .order_by("username", "ip_address")
    )
    for row in per_user:
        found.append(Lockout(row["username"], row["ip_address"], row["failures"], row["latest"] + get_cool_off()))
    per_address = (
        recent.values("ip_address")
        .annotate(failures=Sum("failures_since_start"), latest=Max("attempt_time"))
        .filter(failures__gte=settings.DOCENT_LOGIN_FAILURES_PER_IP)
        .order_by("ip_address")
    )
    for row in per_address:
        found.append(Lockout(None, row["ip_address"], row["failures"], row["latest"] + get_cool_off()))
    return found


def unlock(*, username: str | None = None, ip_address: str | None = None) -> int:
    """Forget the failed logins of `username` (from anywhere) or from `ip_address`; the number removed."""
    if username:
        attempts = AccessAttempt.objects.filter(username=username)
    elif ip_address and _is_address(ip_address):
        attempts = AccessAttempt.objects.filter(ip_address=ip_address)
    else:
        return 0
    removed, _ = attempts.delete()
    return removed


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- Password reset -------------------------------------------------------------------------


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset by email, only when Docent can send email; otherwise it says whom to ask."""

    def dispatch(self, request, *args, **kwargs):
        if not settings.DOCENT_EMAIL_ENABLED:
            return render(request, "registration/password_reset_form.html", {"email_enabled": False})
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"email_enabled": True}
