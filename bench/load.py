"""Load: many users asking one bot questions at once while a worker ingests documents.

Over the REST API only, with one API token: creates a bot and fills it with generated
policy handbooks until it holds --chunks passages (or asks a bot an earlier run filled,
--bot), waits for them to be ingested, then runs one window of --seconds per --think
value. In each, --ingest more documents are uploaded to a new bot and --users users ask
questions: with --think 0 each asks again the moment an answer arrives (a closed loop:
what the server can do flat out); with --think T a user reads for T/2 to 3T/2 seconds
between questions, as people do. Half the questions (--answerable) name a section the
handbooks have, the rest are broad questions they don't answer (a refusal costs the
same search). Prints JSON lines per window: the chat figures ({"bench": "load",
"requests_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", ...}), the ingestion rate
under that load, and, when it started the server itself, the web and worker memory.

Against a running Docent:
    .venv/bin/python bench/load.py --base https://docent.example.com --token TOKEN --users 50 --seconds 60
Without --base it starts `manage.py serve --web-workers 2` (web server + one worker, as
`make run`) on a free port in $DOCENT_DATA_DIR and makes its own token; it then also
waits until the worker has stored the answerer's sentence vectors, so the window
measures the steady state rather than the first minutes after an ingestion:
    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/load.py --users 50 --seconds 60 --think 0 10

An error is any answer that is not a 200, or no answer within --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
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


def handbook(number: int, sentences: int = SENTENCES_PER_HANDBOOK) -> tuple[str, bytes]:
    """Generated handbook `number`: the same text every time, so a kept bot's sections can be known again."""
    rng = random.Random(number)
    text = "\n\n".join(synthetic_text(rng, number * 1000 + i) for i in range(sentences))
    return f"handbook-{number:04d}.txt", text.encode()


SECTION = re.compile(r"The (\w+) policy [^.]* in section ([A-Z]{3}-\d{7})\.")


def sections(files: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """(topic, section code) of every policy sentence in the generated handbooks."""
    return [match.groups() for _, text in files for match in SECTION.finditer(text.decode())]


def question(rng: random.Random, known: list[tuple[str, str]], answerable: float) -> str:
    """A question naming a section the handbooks have (share `answerable`), or a broad one they don't answer."""
    if known and rng.random() < answerable:
        topic, code = rng.choice(known)
        return f"What does the {topic} policy in section {code} say?"
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


def fill_bot(api: Api, bot_id: int, chunks: int) -> tuple[int, list[tuple[str, str]]]:
    """Upload handbooks until the bot holds at least `chunks` passages; how many it holds, and their sections."""
    first = [handbook(number) for number in range(UPLOAD_BATCH)]
    api.upload(bot_id, first)
    held = sum(document["chunk_count"] for document in wait_ingested(api, bot_id, len(first), "first handbooks"))
    per_handbook = max(1, held // len(first))
    remaining = max(0, -(-(chunks - held) // per_handbook))
    files = [handbook(number) for number in range(len(first), len(first) + remaining)]
    for start in range(0, len(files), UPLOAD_BATCH):
        api.upload(bot_id, files[start : start + UPLOAD_BATCH])
    documents = wait_ingested(api, bot_id, len(first) + len(files), f"ingesting ~{chunks:,} passages")
    failed = [document["filename"] for document in documents if document["status"] == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} handbooks failed to ingest, e.g. {failed[0]}")
    return sum(document["chunk_count"] for document in documents), sections(first + files)


def kept_bot(api: Api, bot_id: int) -> tuple[int, list[tuple[str, str]]]:
    """A bot an earlier run filled (--bot): how many passages it holds, and its handbooks' sections."""
    documents = [document for document in api.documents(bot_id) if document["status"] == "ready"]
    numbers = [int(match.group(1)) for d in documents if (match := re.fullmatch(r"handbook-(\d+)\.txt", d["filename"]))]
    if not numbers:
        raise SystemExit(f"Bot {bot_id} holds no handbooks of this benchmark; leave out --bot to make one.")
    return sum(document["chunk_count"] for document in documents), sections([handbook(n) for n in numbers])


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


async def users(
    base: str,
    token: str,
    bot_id: int,
    count: int,
    seconds: float,
    timeout: float,
    think: float,
    known: list[tuple[str, str]],
    answerable: float,
) -> dict:
    """`count` users asking questions for `seconds`; latencies of the answers that started in time.

    With think=0 each user asks again the moment an answer arrives (a closed loop: the
    server's capacity). Otherwise a user reads for think/2 to 3*think/2 seconds before the
    next question, and the users start spread over the first `think` seconds, as people do.
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    cited = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, limits=limits) as client:

        async def user(number: int) -> None:
            nonlocal cited
            rng = random.Random(number)
            if think:
                await asyncio.sleep(rng.uniform(0, think))
            while time.monotonic() < deadline:
                started = time.perf_counter()
                body = {"message": question(rng, known, answerable)}
                try:
                    reply = await client.post(f"/api/v1/bots/{bot_id}/chat", json=body)
                    outcome = "ok" if reply.status_code == 200 else f"http {reply.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                if outcome == "ok":
                    latencies.append((time.perf_counter() - started) * 1000)
                    cited += bool(reply.json()["citations"])
                else:
                    errors[outcome] = errors.get(outcome, 0) + 1
                if think:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * think)

        started = time.monotonic()
        await asyncio.gather(*(user(number) for number in range(count)))
        elapsed = time.monotonic() - started
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "cited": cited}


def percentile(ordered: list[float], share: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1) if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="a running Docent, e.g. http://127.0.0.1:8000 (default: start one)")
    parser.add_argument("--token", help="an API token of a builder there (with --base)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--chunks", type=int, default=10_000, help="passages in the bot the users ask")
    parser.add_argument("--bot", type=int, help="ask this bot, filled by an earlier run, instead of making one")
    parser.add_argument("--ingest", type=int, default=200, help="documents uploaded for ingestion during the window")
    parser.add_argument("--timeout", type=float, default=30, help="seconds an answer may take before it is an error")
    parser.add_argument(
        "--think",
        type=float,
        nargs="+",
        default=[0.0],
        help="mean seconds a user reads before asking again; one window per value (0: ask back to back)",
    )
    parser.add_argument(
        "--answerable", type=float, default=0.5, help="share of questions naming a section the documents have"
    )
    parser.add_argument("--web-workers", type=int, default=2, help="web processes of the server it starts")
    args = parser.parse_args()
    if bool(args.base) != bool(args.token):
        parser.error("--base and --token go together")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request

    server = None
    if args.base:
        base, token = args.base.rstrip("/"), args.token
    else:
        base, token, server = start_server(args.web_workers)
    api = Api(base, token)
    try:
        if args.bot:
            bot_id = args.bot
            chunks, known = kept_bot(api, bot_id)
        else:
            bot_id = api.call("POST", "/bots", json={"name": f"load-{time.strftime('%Y%m%d-%H%M%S')}"})["id"]
            chunks, known = fill_bot(api, bot_id, args.chunks)
        if server is not None:
            wait_sentence_vectors(bot_id)
        for window, think in enumerate(args.think):
            window_figures(api, base, token, bot_id, chunks, known, think, window, args, server)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def window_figures(api, base, token, bot_id, chunks, known, think, window, args, server) -> None:
    """One measured window: upload --ingest documents to a new bot, let the users ask, print the figures."""
    target = api.call("POST", "/bots", json={"name": f"load-ingest-{time.strftime('%Y%m%d-%H%M%S')}-{window}"})
    first = 5000 + 1000 * window
    small = [handbook(first + number, SENTENCES_PER_SMALL_DOCUMENT) for number in range(args.ingest)]

    window_started = time.monotonic()
    for start in range(0, len(small), UPLOAD_BATCH):
        api.upload(target["id"], small[start : start + UPLOAD_BATCH])
    uploaded_seconds = time.monotonic() - window_started
    result = asyncio.run(
        users(base, token, bot_id, args.users, args.seconds, args.timeout, think, known, args.answerable)
    )
    ready_in_window = sum(1 for document in api.documents(target["id"]) if document["status"] == "ready")
    window_seconds = time.monotonic() - window_started
    memory = _memory(server) if server is not None else {}

    ordered = sorted(result["latencies"])
    errors = sum(result["errors"].values())
    emit(
        bench="load",
        users=args.users,
        think_s=think,
        seconds=round(result["elapsed"], 1),
        chunks=chunks,
        requests=len(ordered) + errors,
        requests_per_s=round(len(ordered) / result["elapsed"], 2),
        p50_ms=round(statistics.median(ordered), 1) if ordered else 0.0,
        p95_ms=percentile(ordered, 0.95),
        p99_ms=percentile(ordered, 0.99),
        errors=errors,
        error_kinds=result["errors"],
        cited_share=round(result["cited"] / len(ordered), 2) if ordered else 0.0,
        answerer="extractive",
        web_workers=args.web_workers if server is not None else None,
        cpus=os.cpu_count(),
        **memory,
    )
    wait_ingested(api, target["id"], args.ingest, "the rest of the uploads")
    emit(
        bench="load_ingestion",
        think_s=think,
        documents=args.ingest,
        upload_seconds=round(uploaded_seconds, 1),
        ready_during_window=ready_in_window,
        documents_per_s_under_load=round(ready_in_window / window_seconds, 2),
        all_ready_seconds=round(time.monotonic() - window_started, 1),
    )


def start_server(web_workers: int) -> tuple[str, str, subprocess.Popen]:
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
        [sys.executable, "manage.py", "serve", "--port", str(port), "--web-workers", str(web_workers)],
        cwd=ROOT,
        env={**os.environ, "DOCENT_DATA_DIR": str(settings.DATA_DIR)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(base, 180)
    return base, token, server


def _memory(server: subprocess.Popen) -> dict:
    """RSS of the largest web process, of all web processes, and of the worker's largest process."""
    import psutil

    serve = psutil.Process(server.pid)
    children = serve.children(recursive=True)
    workers = [process for process in children if "celery" in " ".join(process.cmdline())]
    # With --web-workers > 1, uvicorn serves from spawned children and `serve` only supervises them.
    web = [process for process in children if "spawn_main" in " ".join(process.cmdline())] or [serve]
    return {
        "web_mb": mb(max(process.memory_info().rss for process in web)),
        "web_total_mb": mb(sum(process.memory_info().rss for process in {serve, *web})),
        "worker_mb": mb(max((process.memory_info().rss for process in workers), default=0)),
        "web_imported_torch": any(imports_torch(process) for process in web),
    }


if __name__ == "__main__":
    main()
