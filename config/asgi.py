import logging
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

# Imported after Django is set up: the limits resolve URLs and read settings.
from config.limits import LimitRequestBody  # noqa: E402

# Django reads a request's whole body before any middleware runs; refuse oversized ones first.
application = LimitRequestBody(django_application)


def _warm_up() -> None:
    from retrieval.services import warm_up, warm_up_llm_client

    for step, what in [(warm_up, "the question encoder"), (warm_up_llm_client, "the LLM client")]:
        try:
            step()
        except Exception as exc:  # the first question loads it instead (or the server stopped meanwhile)
            logging.getLogger(__name__).warning("Could not load %s ahead of time: %s", what, exc)


if os.environ.get("DOCENT_WARM_UP") == "1":
    # Set by `manage.py serve` (unless --no-warm-up): each web process loads the question encoder
    # (and the LLM client, if providers are set up) as it starts, so its first question doesn't wait.
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
