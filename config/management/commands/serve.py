"""Run the whole of Docent in the foreground: migrate, worker, web server; Ctrl-C stops all.

The embedded Postgres and Redis (when DATABASE_URL / CELERY_BROKER_URL are unset)
were started by settings on import; they stop when the last process using them exits.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from retrieval.services import warm_up

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Migrate, ensure an admin account, start a Celery worker and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("DOCENT_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="Don't start a Celery worker here.")

    def handle(self, *args, host: str, port: int, no_worker: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()
        worker = None if no_worker else self.start_worker()
        # Load the embedding model now, in the background, so the first question doesn't wait for it.
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
        try:
            import uvicorn

            self.stdout.write(self.style.SUCCESS(f"Docent is ready at http://{host}:{port}/  (Ctrl-C stops it)"))
            uvicorn.run("config.asgi:application", host=host, port=port, log_level="warning", lifespan="off")
        finally:
            if worker is not None:
                self.stop_worker(worker)
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
        # Its own session, so Ctrl-C reaches only us and we stop it in order.
        return subprocess.Popen(command, start_new_session=True)

    def stop_worker(self, worker: subprocess.Popen) -> None:
        if worker.poll() is not None:
            return
        worker.send_signal(signal.SIGTERM)  # warm shutdown: finish the current task
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
