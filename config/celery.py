"""The Celery application. Settings come from Django settings prefixed CELERY_."""

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

# This process's beat lock: a database connection holding an advisory lock. Closing it
# (or the process dying, or the database restarting) frees the lock.
_beat_lock = []
# pg_advisory_lock key of the beat lock: "docent b" as a 64-bit integer.
BEAT_LOCK_KEY = int.from_bytes(b"docent b", "big") & 0x7FFF_FFFF_FFFF_FFFF


@beat_init.connect
def refuse_a_second_beat(sender=None, **kwargs):
    """One beat per installation: a second would run every periodic task twice.

    Runs in the beat process, whether `celery beat` or a `worker --beat`'s embedded one. The
    lock is a Postgres session advisory lock on a connection of its own, so it holds across
    machines (every beat of an installation shares its database) and the server frees it
    when the beat dies, even by SIGKILL.
    """
    import socket

    from django.db import connections

    database = connections["default"]
    params = database.get_connection_params()
    params["application_name"] = f"docent beat, pid {os.getpid()} on {socket.gethostname()}"
    lock = database.get_new_connection(params)
    lock.autocommit = True
    if not lock.execute("SELECT pg_try_advisory_lock(%s)", [BEAT_LOCK_KEY]).fetchone()[0]:
        holder = lock.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
            [BEAT_LOCK_KEY],
        ).fetchone()
        lock.close()
        message = (
            f"Refusing to start celery beat: another beat ({holder[0] if holder else 'unknown'}) already runs "
            f"for the database {params.get('dbname', '')}. Run exactly one beat per installation."
        )
        logger.critical(message)
        raise SystemExit(message) from None
    _beat_lock.append(lock)
