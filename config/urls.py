from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from bots.auth import PasswordResetView
from config.api import api
from config.health import healthz, readyz
from config.metrics import metrics

urlpatterns = [
    # Before Django's auth URLs: says whom to ask when this installation can't send email.
    path("accounts/password_reset/", PasswordResetView.as_view(), name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico wherever a page names no icon (JSON, files, error pages).
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.svg"), permanent=True)),
    path("api/v1/", api.urls),
    # Answered by config.health.PlatformEndpointsMiddleware before host and session checks.
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("v1/", include("bots.openai_urls")),
    path("console/", include("bots.console_urls")),
    path("", include("bots.urls")),
]
