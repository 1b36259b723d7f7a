"""The Celery application. Settings come from Django settings prefixed CELERY_."""

import fcntl
import logging
import os

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("docent")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Each worker records a heartbeat in the broker for /metrics (config/metrics.py).
app.steps["worker"].add("config.metrics:Heartbeat")

logger = logging.getLogger(__name__)

# The open lock file of this process's beat: closing it (or the process dying) frees the lock.
_beat_lock = []


@beat_init.connect
def refuse_a_second_beat(sender=None, **kwargs):
    """One beat per data directory: a second would run every periodic task twice.

    Runs in the beat process, whether `celery beat` or a `worker --beat`'s embedded one. The lock
    is an flock, so the kernel frees it when the beat dies, even by SIGKILL.
    """
    from django.conf import settings

    path = settings.DATA_DIR / "beat.lock"
    handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        message = (
            f"Refusing to start celery beat: another beat (pid {holder}) already runs for the data directory "
            f"{settings.DATA_DIR}. Run exactly one beat per installation."
        )
        logger.critical(message)
        raise SystemExit(message) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _beat_lock.append(handle)
