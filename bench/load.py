"""Load: many users asking one bot questions at once while a worker ingests documents.

Over the REST API only, with one API token: creates a bot and fills it with generated
policy handbooks until it holds --chunks passages, waits for them to be ingested, then
for --seconds runs --users concurrent users (each asks a question, waits for the whole
answer, asks the next) while --ingest more documents are uploaded to a second bot at
the start of the window. Prints JSON lines: the chat figures
({"bench": "load", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", ...}),
the ingestion rate under that load, and, when it started the server itself, the
web and worker memory.

Against a running Docent:
    .venv/bin/python bench/load.py --base https://docent.example.com --token TOKEN --users 50 --seconds 60
Without --base it starts `manage.py serve` (web server + one worker, as `make run`) on a
free port in $DOCENT_DATA_DIR and makes its own token; it then also waits until the
worker has stored the answerer's sentence vectors, so the window measures the steady
state rather than the first minutes after an ingestion:
    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/load.py --users 50 --seconds 60

An error is any answer that is not a 200, or no answer within --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from rss import emit, free_port, imports_torch, mb, wait_for  # noqa: E402  (bench/rss.py)
from search import OBJECTS, TOPICS, synthetic_text  # noqa: E402  (bench/search.py)

# Policy sentences per generated handbook: ~45 passages of the default chunking each.
SENTENCES_PER_HANDBOOK = 250
SENTENCES_PER_SMALL_DOCUMENT = 12
UPLOAD_BATCH = 20


def handbook(rng: random.Random, number: int, sentences: int) -> tuple[str, bytes]:
    text = "\n\n".join(synthetic_text(rng, number * 1000 + i) for i in range(sentences))
    return f"handbook-{number:04d}.txt", text.encode()


def question(rng: random.Random) -> str:
    return f"Which {rng.choice(TOPICS)} rules apply to {rng.choice(OBJECTS)}?"


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def call(self, method: str, path: str, **kwargs) -> dict | list:
        reply = self.client.request(method, f"/api/v1{path}", **kwargs)
        if reply.status_code >= 400:
            raise SystemExit(f"{method} {path} answered {reply.status_code}: {reply.text[:300]}")
        return reply.json() if reply.content else {}

    def upload(self, bot_id: int, files: list[tuple[str, bytes]]) -> list[int]:
        entries = self.call("POST", f"/bots/{bot_id}/documents", files=[("file", file) for file in files])
        return [entry["id"] for entry in entries if entry.get("id")]

    def documents(self, bot_id: int) -> list[dict]:
        return list(self.call("GET", f"/bots/{bot_id}/documents"))


def wait_ingested(api: Api, bot_id: int, expected: int, what: str) -> list[dict]:
    from tqdm import tqdm

    with tqdm(total=expected, desc=what, file=sys.stderr) as bar:
        while True:
            documents = api.documents(bot_id)
            final = [document for document in documents if document["status"] in ("ready", "failed")]
            bar.update(len(final) - bar.n)
            if len(final) >= expected:
                return documents
            time.sleep(2)


def fill_bot(api: Api, bot_id: int, chunks: int, rng: random.Random) -> int:
    """Upload handbooks until the bot holds at least `chunks` passages; how many it holds."""
    first = [handbook(rng, number, SENTENCES_PER_HANDBOOK) for number in range(UPLOAD_BATCH)]
    api.upload(bot_id, first)
    held = sum(document["chunk_count"] for document in wait_ingested(api, bot_id, len(first), "first handbooks"))
    per_handbook = max(1, held // len(first))
    remaining = max(0, -(-(chunks - held) // per_handbook))
    files = [handbook(rng, number, SENTENCES_PER_HANDBOOK) for number in range(len(first), len(first) + remaining)]
    for start in range(0, len(files), UPLOAD_BATCH):
        api.upload(bot_id, files[start : start + UPLOAD_BATCH])
    documents = wait_ingested(api, bot_id, len(first) + len(files), f"ingesting ~{chunks:,} passages")
    failed = [document["filename"] for document in documents if document["status"] == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} handbooks failed to ingest, e.g. {failed[0]}")
    return sum(document["chunk_count"] for document in documents)


def wait_sentence_vectors(bot_id: int) -> None:
    """Wait until the worker has stored sentence vectors for every passage of the bot (local server only)."""
    from tqdm import tqdm

    from documents.models import Chunk

    chunks = Chunk.objects.filter(bot_id=bot_id, is_active=True)
    total = chunks.count()
    with tqdm(total=total, desc="sentence vectors", file=sys.stderr) as bar:
        while (missing := chunks.filter(sentence_vectors__isnull=True).count()) > 0:
            bar.update(total - missing - bar.n)
            time.sleep(2)
        bar.update(total - bar.n)


async def users(base: str, token: str, bot_id: int, count: int, seconds: float, timeout: float) -> dict:
    """`count` users asking questions back to back for `seconds`; latencies of the answers that started in time."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, limits=limits) as client:

        async def user(number: int) -> None:
            rng = random.Random(number)
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    reply = await client.post(f"/api/v1/bots/{bot_id}/chat", json={"message": question(rng)})
                    outcome = "ok" if reply.status_code == 200 else f"http {reply.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                if outcome == "ok":
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors[outcome] = errors.get(outcome, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(user(number) for number in range(count)))
        elapsed = time.monotonic() - started
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


def percentile(ordered: list[float], share: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1) if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="a running Docent, e.g. http://127.0.0.1:8000 (default: start one)")
    parser.add_argument("--token", help="an API token of a builder there (with --base)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--chunks", type=int, default=10_000, help="passages in the bot the users ask")
    parser.add_argument("--ingest", type=int, default=200, help="documents uploaded for ingestion during the window")
    parser.add_argument("--timeout", type=float, default=30, help="seconds an answer may take before it is an error")
    args = parser.parse_args()
    if bool(args.base) != bool(args.token):
        parser.error("--base and --token go together")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request

    server = None
    if args.base:
        base, token = args.base.rstrip("/"), args.token
    else:
        base, token, server = start_server()
    api = Api(base, token)
    rng = random.Random(7)
    try:
        bot = api.call("POST", "/bots", json={"name": f"load-{time.strftime('%Y%m%d-%H%M%S')}"})
        chunks = fill_bot(api, bot["id"], args.chunks, rng)
        if server is not None:
            wait_sentence_vectors(bot["id"])
        target = api.call("POST", "/bots", json={"name": f"load-ingest-{time.strftime('%Y%m%d-%H%M%S')}"})
        small = [handbook(rng, 5000 + number, SENTENCES_PER_SMALL_DOCUMENT) for number in range(args.ingest)]

        window_started = time.monotonic()
        for start in range(0, len(small), UPLOAD_BATCH):
            api.upload(target["id"], small[start : start + UPLOAD_BATCH])
        uploaded_seconds = time.monotonic() - window_started
        result = asyncio.run(users(base, token, bot["id"], args.users, args.seconds, args.timeout))
        ready_in_window = sum(1 for document in api.documents(target["id"]) if document["status"] == "ready")
        window_seconds = time.monotonic() - window_started
        memory = _memory(server) if server is not None else {}

        ordered = sorted(result["latencies"])
        errors = sum(result["errors"].values())
        emit(
            bench="load",
            users=args.users,
            seconds=round(result["elapsed"], 1),
            chunks=chunks,
            requests=len(ordered) + errors,
            requests_per_s=round(len(ordered) / result["elapsed"], 2),
            p50_ms=round(statistics.median(ordered), 1) if ordered else 0.0,
            p95_ms=percentile(ordered, 0.95),
            p99_ms=percentile(ordered, 0.99),
            errors=errors,
            error_kinds=result["errors"],
            answerer="extractive",
            cpus=os.cpu_count(),
            **memory,
        )
        wait_ingested(api, target["id"], args.ingest, "the rest of the uploads")
        all_done_seconds = time.monotonic() - window_started
        emit(
            bench="load_ingestion",
            documents=args.ingest,
            upload_seconds=round(uploaded_seconds, 1),
            ready_during_window=ready_in_window,
            documents_per_s_under_load=round(ready_in_window / window_seconds, 2),
            all_ready_seconds=round(all_done_seconds, 1),
        )
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def start_server() -> tuple[str, str, subprocess.Popen]:
    """`manage.py serve` on a free port in $DOCENT_DATA_DIR, and an API token of a builder there."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from bots.services import create_token

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.update_or_create(username="bench-load", defaults={"is_superuser": True})
    _, token = create_token(user, f"load-{time.time_ns()}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "DOCENT_DATA_DIR": str(settings.DATA_DIR)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(base, 180)
    return base, token, server


def _memory(server: subprocess.Popen) -> dict:
    import psutil

    web = psutil.Process(server.pid)
    workers = [process for process in web.children(recursive=True) if "celery" in " ".join(process.cmdline())]
    return {
        "web_mb": mb(web.memory_info().rss),
        "worker_mb": mb(max((process.memory_info().rss for process in workers), default=0)),
        "web_imported_torch": imports_torch(web),
    }


if __name__ == "__main__":
    main()
