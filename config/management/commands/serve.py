"""Run the whole of Docent in the foreground: migrate, worker, web server; Ctrl-C stops all.

SIGTERM (docker stop, systemd, kill) and SIGHUP (the terminal closing) stop it the same way:
uvicorn finishes its requests, the worker finishes its task, and the embedded Postgres and Redis
(when DATABASE_URL / CELERY_BROKER_URL are unset: started by settings on import) stop when the
last process using them exits.

While it runs a worker, serve holds serve.lock in the data directory, with the worker's pid in
it: a second serve on the same directory refuses to start, and a serve started after a crash
(SIGKILL leaves the worker running) stops the worker left behind before starting its own. The
beat inside the worker has a lock of its own (config/celery.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from config.database import use_pool
from config.embedded import process_alive

ADMIN_USERNAME = "admin"
# How long a worker gets to finish its current task when asked to stop; then it is killed
# (its task is acked late, so another worker runs it again).
WORKER_STOP_SECONDS = 30
# The worker's niceness (0 to 19): the web server's requests win the CPU when both want it.
WORKER_NICENESS = 10
# How long an idle keep-alive connection stays open. uvicorn's default (5 s) is shorter than
# the idle timeout of the proxies in front of it (60 s for nginx and AWS's load balancers), so
# a proxy would reuse connections uvicorn is just closing, and its clients would see errors.
KEEP_ALIVE_SECONDS = 75


class Command(BaseCommand):
    help = "Migrate, ensure an admin account, start a Celery worker and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("DOCENT_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="Don't start a Celery worker here.")
        parser.add_argument(
            "--web-workers",
            type=int,
            default=int(os.environ.get("DOCENT_WEB_WORKERS", "1")),
            help="Web server processes (each answers one request at a time; about one per core).",
        )
        parser.add_argument(
            "--no-warm-up", action="store_true", help="Load the embedding model on the first question, not at start."
        )

    def handle(self, *args, host: str, port: int, no_worker: bool, no_warm_up: bool, web_workers: int, **options):
        # Python's default for SIGTERM and SIGHUP is to die on the spot, skipping the finally below
        # and the atexit handlers that stop the embedded servers. uvicorn replaces the SIGTERM
        # handler while it serves and, once it has shut down, re-raises the signal to this one.
        if web_workers < 1:
            raise CommandError("--web-workers needs at least 1.")
        signal.signal(signal.SIGTERM, _exit_cleanly)
        signal.signal(signal.SIGHUP, _as_sigterm)
        lock = None
        if not no_worker:
            lock = ServeLock(settings.DATA_DIR)
            if orphan := lock.worker_left_behind():
                self.stdout.write(f"Stopping the worker (pid {orphan}) left running by a serve that did not exit.")
                stop_worker(orphan, threading.Event())
            lock.record()
        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()
        worker = None
        metrics_dir = ""
        try:
            if lock is not None:
                worker = self.start_worker()
                lock.record(worker=worker.pid)
            if not no_warm_up:
                # Each web process loads the question encoder as it starts (config/asgi.py).
                os.environ["DOCENT_WARM_UP"] = "1"
            if web_workers > 1:
                # The web processes count requests in files here, so /metrics adds them up (config/metrics.py).
                metrics_dir = tempfile.mkdtemp(prefix="docent-metrics-")
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
                # They start afresh, so their settings can give them a pool of database connections.
                os.environ["DOCENT_DATABASE_POOL"] = "1"
            else:
                # uvicorn serves in this process, whose settings are loaded: switch them to the pool.
                connections.close_all()
                use_pool(settings.DATABASES["default"])
            import uvicorn

            self.stdout.write(self.style.SUCCESS(f"Docent is ready at http://{host}:{port}/  (Ctrl-C stops it)"))
            # log_config=None: uvicorn's own lines go through settings.LOGGING (JSON or plain) like the rest.
            uvicorn.run(
                "config.asgi:application",
                host=host,
                port=port,
                workers=web_workers,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                log_level="warning",
                log_config=None,
                lifespan="off",
            )
        finally:
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            if worker is not None:
                # A second Ctrl-C or SIGTERM while the worker finishes its task means "now".
                hurry = threading.Event()
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(signum, lambda *_: hurry.set())
                stop_worker(worker.pid, hurry)
                worker.wait()
                lock.record()
            self.stdout.write("Docent stopped.")

    def ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(username=ADMIN_USERNAME).exists():
            return
        password = os.environ.get("DOCENT_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
        if generated:
            path = settings.DATA_DIR / "admin-password.txt"
            path.write_text(password + "\n")
            path.chmod(0o600)
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin account: username {ADMIN_USERNAME}, password {password}\n"
                    f"(also saved in {path}; change it after logging in)"
                )
            )
        else:
            self.stdout.write(f"Created the admin account {ADMIN_USERNAME} with DOCENT_ADMIN_PASSWORD.")

    def start_worker(self) -> subprocess.Popen:
        # --beat runs the sweeper that re-queues documents whose task was lost. One beat per
        # installation: with more workers elsewhere, run `celery beat` once instead (platform/README.md).
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--beat", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule"),
            "--queues", "ingest,default",
            "--concurrency", os.environ.get("DOCENT_WORKER_CONCURRENCY", "1"),
            "--loglevel", "INFO",
        ]  # fmt: skip
        # Its own session, so Ctrl-C reaches only us and we stop it in order. At a lower CPU
        # priority: on one machine, people waiting for an answer go first and ingestion takes
        # the CPU they leave idle.
        return subprocess.Popen(command, start_new_session=True, preexec_fn=lambda: os.nice(WORKER_NICENESS))


def _exit_cleanly(signum, frame):
    raise SystemExit(0)  # runs handle()'s finally, then atexit stops the embedded servers


def _as_sigterm(signum, frame):
    # While uvicorn serves, its SIGTERM handler shuts it down gracefully; otherwise ours exits.
    signal.raise_signal(signal.SIGTERM)


def stop_worker(pid: int, hurry: threading.Event) -> None:
    """Warm shutdown (finish the current task), then SIGKILL what is left of its process group.

    The worker leads its own process group (start_new_session), which holds its pool
    processes and its beat.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    while process_alive(pid) and time.monotonic() < deadline and not hurry.is_set():
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class ServeLock:
    """serve.lock in the data directory: held by the serve that runs the installation's worker.

    It records that serve's pid and its worker's pid and start time (so a reused pid is never
    taken for the worker). The kernel frees an flock when its holder dies, so whoever gets the
    lock knows that the serve recorded in it is gone, and that its worker, if alive, is an orphan.
    """

    def __init__(self, data_dir: Path):
        self.handle = open(data_dir / "serve.lock", "a+")  # noqa: SIM115 - held until the process exits
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.read().get("serve", "unknown")
            self.handle.close()
            raise CommandError(
                f"Docent is already running from {data_dir} (serve pid {holder}). "
                "Stop it first, or set DOCENT_DATA_DIR to another directory."
            ) from None

    def read(self) -> dict:
        self.handle.seek(0)
        try:
            return json.loads(self.handle.read() or "{}")
        except ValueError:
            return {}

    def record(self, worker: int | None = None) -> None:
        entry: dict = {"serve": os.getpid()}
        if worker is not None:
            entry |= {"worker": worker, "worker_started": psutil.Process(worker).create_time()}
        self.handle.truncate(0)
        self.handle.write(json.dumps(entry))
        self.handle.flush()

    def worker_left_behind(self) -> int | None:
        """The pid of the previous serve's worker if it still runs, else None."""
        entry = self.read()
        if not entry.get("worker"):
            return None
        try:
            started = psutil.Process(entry["worker"]).create_time()
        except psutil.NoSuchProcess:
            return None
        if abs(started - entry.get("worker_started", 0)) > 0.01 or not process_alive(entry["worker"]):
            return None  # the pid now belongs to another process
        return entry["worker"]
