"""Search latency and HNSW recall at scale.

Builds N synthetic chunks in one bot (real 384-d embeddings of generated text, or
random unit vectors with --random-vectors, the default from 1M up, stated in the
output), then prints JSON lines: p50/p95 latency of vector, keyword and hybrid
search, HNSW recall@10 against exact search (ties at the 10th distance count as
hits), and the server time before the first token of an answer.

    .venv/bin/python bench/search.py --n 10000            # make bench runs this size
    .venv/bin/python bench/search.py --n 100000 --n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for config/ and, for the local LLM protocol server, tests/
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

TOPICS = [
    "vacation",
    "expense",
    "travel",
    "laptop",
    "password",
    "pension",
    "salary",
    "contract",
    "invoice",
    "security",
    "training",
    "office",
]
VERBS = [
    "requires",
    "allows",
    "covers",
    "explains",
    "limits",
    "describes",
    "approves",
    "reimburses",
    "schedules",
    "protects",
]
OBJECTS = [
    "employees",
    "managers",
    "contractors",
    "visitors",
    "customers",
    "suppliers",
    "interns",
    "auditors",
    "teams",
    "departments",
]


def synthetic_text(rng: random.Random, i: int) -> str:
    topic, other = rng.sample(TOPICS, 2)
    code = f"{topic[:3].upper()}-{i:07d}"
    return (
        f"The {topic} policy {rng.choice(VERBS)} {rng.choice(OBJECTS)} in section {code}. "
        f"It {rng.choice(VERBS)} {other} rules for {rng.choice(OBJECTS)} and {rng.choice(OBJECTS)}."
    )


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
    }


def build(n: int, random_vectors: bool, rng: random.Random):
    """Create a bot with n active chunks via COPY; returns (bot, texts sample)."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.db import connection
    from tqdm import tqdm

    from bots.services import create_bot
    from documents.models import Document, DocumentVersion
    from retrieval.services import embed_texts, ensure_vector_index

    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    bot = create_bot(user, f"search-bench-{n}-{time.time_ns()}")
    document = Document.objects.create(bot=bot, filename=f"synthetic-{n}.txt", status="ready")
    version = DocumentVersion(document=document, number=1, content_hash="0" * 64, size_bytes=0)
    version.file.save("synthetic.txt", ContentFile(b""), save=False)
    version.save()
    document.current_version = document.active_version = version
    document.save()

    batch = 2_000
    texts_sample = []
    started = time.perf_counter()
    with connection.cursor() as cursor, tqdm(total=n, desc=f"building {n:,} chunks", file=sys.stderr) as bar:
        # Bulk loads build the HNSW index once at the end: far faster than n index inserts.
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw_384")
        raw = cursor.connection
        for start in range(0, n, batch):
            texts = [synthetic_text(rng, i) for i in range(start, min(n, start + batch))]
            if random_vectors:
                vectors = np.random.default_rng(start).standard_normal((len(texts), 384)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            else:
                vectors = embed_texts(texts)
            texts_sample.extend(texts[:: max(1, len(texts) // 20)])
            with raw.cursor().copy(
                "COPY documents_chunk (bot_id, document_id, version_id, index_version, ordinal, page, heading_path,"
                " location, text, token_count, embedding, dimensions, is_active) FROM STDIN"
            ) as copy:
                for offset, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
                    vector_text = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
                    copy.write_row(
                        (
                            bot.id,
                            document.id,
                            version.id,
                            1,
                            start + offset,
                            1,
                            "",
                            "page 1",
                            text,
                            40,
                            vector_text,
                            384,
                            True,
                        )
                    )
            bar.update(len(texts))
        loaded = time.perf_counter()
        # The whole graph must fit in memory, or pgvector builds it on disk, many times slower.
        cursor.execute("SET maintenance_work_mem = '4GB'")
        ensure_vector_index(384)
        cursor.execute("ANALYZE documents_chunk")
    emit(
        metric="build",
        chunks=n,
        load_seconds=round(loaded - started, 1),
        hnsw_build_seconds=round(time.perf_counter() - loaded, 1),
    )
    return bot, texts_sample


def measure(bot, queries: list[str], random_vectors: bool, n: int) -> None:
    from retrieval import services

    model = services.embedding_model_for(bot)
    chunks = services.active_chunks(bot)
    vectors = services.embed_texts(queries)
    if random_vectors:  # queries near stored vectors, so recall is measured where results are dense
        vectors = np.random.default_rng(1).standard_normal((len(queries), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    timings: dict[str, list[float]] = {"vector": [], "keyword": [], "hybrid": []}
    recalls = []
    for query, vector in zip(queries, vectors, strict=True):
        started = time.perf_counter()
        approximate = services.vector_search(chunks, model, vector, 10)
        timings["vector"].append((time.perf_counter() - started) * 1000)
        exact = services.vector_search(chunks, model, vector, 10, exact=True)
        # Generated text has many equally distant neighbours: an approximate hit as close as the
        # exact 10th is a correct one, whichever of the tied ids it happens to be.
        tenth = min(similarity for _, similarity in exact) - 1e-6
        recalls.append(sum(1 for _, similarity in approximate if similarity >= tenth) / max(1, len(exact)))

        started = time.perf_counter()
        services.keyword_search(chunks, query, 10)
        timings["keyword"].append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        services.search(bot, query, k=10)  # includes embedding the query
        timings["hybrid"].append((time.perf_counter() - started) * 1000)

    vectors_kind = "random unit vectors" if random_vectors else "all-MiniLM-L6-v2 embeddings of generated text"
    for kind, samples in timings.items():
        emit(metric=f"{kind}_search", chunks=n, vectors=vectors_kind, queries=len(queries), **percentiles(samples))
    emit(metric="hnsw_recall_at_10", chunks=n, vectors=vectors_kind, recall=round(sum(recalls) / len(recalls), 4))


def first_token(bot, queries: list[str], n: int) -> None:
    """Server time from question to the first streamed token: built-in answerer, and an LLM provider.

    The provider is a local server speaking the OpenAI protocol (tests/chat_server.py) that
    answers at once, so the figure is Docent's own time: rewrite, search, prompt, HTTP.
    """
    import threading

    from retrieval import services
    from retrieval.models import LLMProvider
    from tests.chat_server import API_KEY, MODEL, ChatServer

    server = ChatServer()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    provider = LLMProvider(name=f"bench-{time.time_ns()}", base_url=server.base_url, model_names=[MODEL])
    provider.set_api_key(API_KEY)
    provider.save()
    for label, configured in [("extractive", None), ("openai_compatible_local", provider)]:
        bot.provider = configured
        samples = []
        for query in queries:
            started = time.perf_counter()
            for event in services.answer_stream(bot, query):
                if event.kind == "token":
                    samples.append((time.perf_counter() - started) * 1000)
                    break
        emit(metric="time_to_first_token", answerer=label, chunks=n, queries=len(samples), **percentiles(samples))
    server.shutdown()
    provider.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="chunks to build (repeatable); default 10000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--random-vectors", action="store_true", help="random unit vectors instead of embeddings")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic bots afterwards")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rng = random.Random(42)
    for n in args.n or [10_000]:
        random_vectors = args.random_vectors or n >= 1_000_000
        bot, sample = build(n, random_vectors, rng)
        queries = [
            f"Which {rng.choice(TOPICS)} rules apply to {rng.choice(OBJECTS)}?" for _ in range(args.queries // 2)
        ] + [text.split(" in section ")[1].split(".")[0] for text in rng.sample(sample, args.queries // 2)]
        measure(bot, queries, random_vectors, n)
        first_token(bot, queries[:20], n)
        if not args.keep:
            bot.delete()


if __name__ == "__main__":
    main()
