"""Memory of a running Docent: the web process and the worker after one ingestion and 100 questions.

Starts `manage.py serve` (web server and worker, as `make run` does) on a free port in
its own data directory, has its worker ingest one document, asks 100 questions over
the REST API with an API token (the built-in extractive answerer), then prints one JSON
line: the resident memory (RSS) of the web process, of the worker's process that ran
the tasks, and the proportional memory (PSS) of the whole worker tree, in MB.

    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/rss.py [--questions 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(base + path, data, headers, method=method), timeout=60) as reply:
        return dict(json.loads(reply.read()))


def wait_for(base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(base + "/accounts/login/", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"The server at {base} did not answer within {seconds:.0f} s.") from None
            time.sleep(0.5)


def mb(value: int) -> float:
    return round(value / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=100)
    args = parser.parse_args()

    import django

    django.setup()
    import psutil
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from search import OBJECTS, TOPICS, synthetic_text  # bench/search.py
    from tqdm import tqdm

    from bots.services import create_bot, create_token
    from documents import services as documents
    from documents.models import Document

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.update_or_create(username="bench-rss", defaults={"is_superuser": True})
    _, token = create_token(user, f"rss-{time.time_ns()}")
    bot = create_bot(user, f"rss-bench-{time.time_ns()}")
    rng = random.Random(3)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DOCENT_DATA_DIR": str(settings.DATA_DIR)}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(base, 180)
        text = "\n\n".join(synthetic_text(rng, i) for i in range(400))
        upload = documents.add_document(bot, SimpleUploadedFile("handbook.txt", text.encode()))
        deadline = time.monotonic() + 600
        while not Document.objects.get(pk=upload.document.pk).is_final:
            if time.monotonic() > deadline:
                raise SystemExit("The worker did not ingest the document within 10 minutes.")
            time.sleep(0.5)
        for _ in tqdm(range(args.questions), desc="questions", file=sys.stderr):
            question = f"Which {rng.choice(TOPICS)} rules apply to {rng.choice(OBJECTS)}?"
            request(base, token, "POST", f"/api/v1/bots/{bot.pk}/chat", {"message": question})

        web = psutil.Process(server.pid)
        worker_tree = [process for process in web.children(recursive=True) if "celery" in " ".join(process.cmdline())]
        worker_rss = max((process.memory_info().rss for process in worker_tree), default=0)
        worker_pss = sum(process.memory_full_info().pss for process in worker_tree)
        emit(
            bench="rss",
            web_mb=mb(web.memory_info().rss),
            worker_mb=mb(worker_rss),
            worker_tree_pss_mb=mb(worker_pss),
            questions=args.questions,
            web_imported_torch=imports_torch(web),
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        bot.delete()


def imports_torch(process) -> bool:
    """Whether torch's native library is mapped into `process` (it is, once torch is imported)."""
    return any("libtorch" in Path(mapping.path).name for mapping in process.memory_maps())


if __name__ == "__main__":
    main()
