import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

# Imported after Django is set up: the limits resolve URLs and read settings.
from config.limits import LimitRequestBody  # noqa: E402

# Django reads a request's whole body before any middleware runs; refuse oversized ones first.
application = LimitRequestBody(django_application)
