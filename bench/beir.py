"""Retrieval quality on a BEIR set, through Docent's own services.

Imports a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) into a fresh bot
with evaluation.services (one text document per corpus entry), ingests it in-process
with the real pipeline, then prints JSON lines with nDCG@10, MRR@10 and recall@100 of
the judged queries for vector-only, keyword-only and hybrid search.

    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/beir.py ../shared/data/beir/nfcorpus [--queries 100 --corpus 500]

Search keeps 40 candidates per method before fusion (retrieval.services), so recall@100
is over at most 80 fused chunks; a method weighted 0 still adds its candidates (ranked
last), so recall@100 is the same for all three. Ingestion runs one document at a time
(~1-2 documents/s on a busy 2-core machine): --corpus bounds it. Fine-tuned models are
not built yet: that line says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# name → the bot's fusion weights
CONFIGS = {
    "vector-only": {"vector_weight": 1.0, "keyword_weight": 0.0},
    "keyword-only": {"vector_weight": 0.0, "keyword_weight": 1.0},
    "hybrid": {"vector_weight": 1.0, "keyword_weight": 1.0},
}


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=0, help="Only the first N judged queries (0: all).")
    parser.add_argument(
        "--corpus", type=int, default=0,
        help="At most N documents: those judged for the chosen queries, then others in file order (0: all). "
        "A smaller corpus is easier: figures are then not comparable to published ones.",
    )  # fmt: skip
    args = parser.parse_args()
    if not (args.folder / "corpus.jsonl").is_file():
        parser.error(f"{args.folder} holds no corpus.jsonl: pass a BEIR folder")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from tqdm import tqdm

    from bots import services as bots
    from documents import services as documents
    from evaluation import services as evaluation

    call_command("migrate", verbosity=0)
    beir = evaluation.read_beir_folder(args.folder, split=args.split)
    if args.queries:
        beir.qrels = dict(list(beir.qrels.items())[: args.queries])
    if args.corpus:
        judged = dict.fromkeys(corpus_id for judgements in beir.qrels.values() for corpus_id in judgements)
        keep = list(dict.fromkeys([*judged, *beir.corpus]))[: max(args.corpus, len(judged))]
        beir.corpus = {corpus_id: beir.corpus[corpus_id] for corpus_id in keep}
    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    bot = bots.create_bot(user, f"beir-{args.folder.name}-{time.time_ns()}")

    started = time.perf_counter()
    test_set = evaluation.import_beir(bot, beir, name=args.folder.name, created_by=user, enqueue=False)
    versions = list(bot.documents.values_list("current_version_id", flat=True))
    for version_id in tqdm(versions, desc="ingest", file=sys.stderr):
        documents.ingest_version(version_id)
    failed = bot.documents.exclude(status="ready").count()
    emit(metric="import", set=args.folder.name, documents=len(versions), failed=failed, subset=bool(args.corpus),
         cases=test_set.cases.count(), seconds=round(time.perf_counter() - started, 1))  # fmt: skip

    for name, weights in CONFIGS.items():
        bot = bots.update_bot(bot, user, weights)
        started = time.perf_counter()
        metrics = evaluation.evaluate_retrieval(test_set, bot)
        emit(
            metric="retrieval", set=args.folder.name, config=name, queries=metrics["retrieval_cases"],
            ndcg_10=round(metrics["ndcg@10"], 4), mrr_10=round(metrics["mrr@10"], 4),
            recall_100=round(metrics["recall@100"], 4), seconds=round(time.perf_counter() - started, 1),
        )  # fmt: skip
    emit(metric="retrieval", set=args.folder.name, config="hybrid+fine-tuned", skipped="fine-tuning is not built yet")
    bot.delete()


if __name__ == "__main__":
    main()
