"""Retrieval quality on a BEIR set, through Docent's own services.

Imports a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) into a bot with
evaluation.services (one text document per corpus entry), ingests it in-process with
the real pipeline, then prints JSON lines with nDCG@10, MRR@10 and recall@100 of the
judged queries for vector-only, keyword-only and hybrid search.

    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/beir.py ../shared/data/beir/nfcorpus --reuse [--split dev]

Tune on the dev split (`--split dev`, qrels/dev.tsv), report the test split (the
default): retrieval defaults chosen by looking at test figures would overstate them.

Ingestion runs one document at a time (~1 document/s on a busy 2-core machine, an
hour for nfcorpus). `--reuse` keeps the bot (named after the folder and --corpus) and
picks it up on the next run, ingesting only documents not yet ready, so an interrupted
ingest resumes and later runs (another split, another setting) measure at once;
`--ingest-only` stops after ingesting. `--corpus`/`--queries` bound a quick run; their
figures are not comparable to published ones.

`--keyword-bench` is make bench's keyword line: the corpus is parsed and chunked by the
real pipeline stages but never embedded (about 5 minutes for nfcorpus on a busy 2-core
machine, against an hour with the encoder), then keyword-only search is measured and
printed as {"bench": "keyword", "ndcg10", "reference_bm25_ndcg10"}; a missing folder
prints a skip line instead.

On the full nfcorpus, test split (nDCG@10): vector-only 0.318, keyword-only 0.333,
hybrid 0.353 (reference points measured outside Docent: BM25 0.307, exact dense
all-MiniLM-L6-v2 0.317, their RRF 0.335). Keyword-only is Docent's keyword side: BM25
(retrieval.keyword) fused with the identifier list.

Search takes max(100, k) candidates per method before fusion (retrieval.search) and
evaluation asks for 100 chunks, so recall@100 counts the distinct documents among 100
chunks (fewer than 100 documents when a document has several matching chunks). A
method weighted 0 still adds its candidates (ranked last), so recall@100 is the same
for all three configurations. Each configuration is one call of measure().

`--fine-tune` adds a fourth line: the bot's embedding model is fine-tuned on the set's
train split (qrels/train.tsv, imported as its own test set; never the measured split)
through evaluation.services, exactly as the Quality tab does it: 70% of those queries
train, 30% decide whether the new model is better. If it is, it is promoted through
the ordinary settings change, the bot is re-indexed in-process, and hybrid search is
measured again. Every line names the embedding model it measured.
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


# nDCG@10 of BM25 (bm25s, its defaults) on nfcorpus test, measured outside Docent.
REFERENCE_BM25_NDCG10 = 0.307


def chunk_without_embedding(version_id: int) -> None:
    """Parse and chunk a version with the real pipeline stages and activate its chunks unembedded.

    Keyword search needs only the text: the keyword bench skips the encoder (an hour for nfcorpus).
    """
    from documents import services as documents
    from documents.models import DocumentVersion

    version = DocumentVersion.objects.select_related("document__bot").get(pk=version_id)
    progress = documents.QuietProgress(version.document)
    bot = version.document.bot
    documents.parse_stage(version, progress)  # False: done by an earlier, interrupted run
    documents.chunk_stage(version, bot, progress)
    documents.activate(version, bot.index_version)


def bot_chunk_count(bot) -> int:
    from retrieval import services as retrieval

    return retrieval.active_chunks(bot).count()


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def measure(test_set, bot, user, config: str, changes: dict, *, set_name: str) -> dict:
    """Apply `changes` to `bot` (fusion weights, or later a fine-tuned model), measure `test_set`, print a line.

    One line per configuration: new configurations (say, hybrid with a fine-tuned model)
    call this with their own `changes`.
    """
    from bots import services as bots
    from evaluation import services as evaluation

    bot = bots.update_bot(bot, user, changes)
    started = time.perf_counter()
    metrics = evaluation.evaluate_retrieval(test_set, bot)
    figures = dict(
        metric="retrieval", set=set_name, split=test_set.name.rsplit("-", 1)[-1], config=config,
        queries=metrics["retrieval_cases"], ndcg_10=round(metrics["ndcg@10"], 4), mrr_10=round(metrics["mrr@10"], 4),
        recall_100=round(metrics["recall@100"], 4), model=str(bot.embedding_model or "installation default"),
        seconds=round(time.perf_counter() - started, 1),
    )  # fmt: skip
    emit(**figures)
    return figures


def fine_tuned_line(bot, user, folder: Path, test_set, *, set_name: str, epochs: int) -> None:
    """Fine-tune the bot's model on the BEIR train split, promote it, re-index, and measure hybrid search.

    The pairs come from qrels/train.tsv (imported as its own test set, never the measured
    split); the fine-tune holds back 30% of those cases to decide whether the new model
    is better, exactly as in the Quality tab. Promotion goes through the ordinary
    settings change; the re-index runs here, in-process, instead of in a worker.
    A bot kept with --reuse stays on the fine-tuned model: a later run measures it again
    without training (its lines name the model).
    """
    from tqdm import tqdm

    from bots import services as bots
    from documents import services as documents
    from evaluation import services as evaluation
    from evaluation.models import TestSet

    fine_tunes = evaluation.fine_tunes_of_bots([bot])
    promoted = bot.embedding_model_id and fine_tunes.filter(embedding_model=bot.embedding_model_id).first()
    if not promoted:
        train_name = f"{folder.name}-train"
        train_set = TestSet.objects.filter(bot=bot, name=train_name).first()
        if train_set is None:
            train = evaluation.read_beir_folder(folder, split="train")
            # Only the corpus this bot holds (all of it, unless --corpus made a subset).
            held = set(bot.documents.values_list("filename", flat=True))
            train.corpus = {key: text for key, text in train.corpus.items() if evaluation.beir_filename(key) in held}
            kept = {query: {key: grade for key, grade in judged.items() if key in train.corpus}
                    for query, judged in train.qrels.items()}  # fmt: skip
            train.qrels = {query: judged for query, judged in kept.items() if judged}
            train_set = evaluation.import_beir(bot, train, name=train_name, created_by=user, enqueue=False)
        started = time.perf_counter()
        # A finished fine-tune of an earlier run that was not promoted yet is used as it is.
        fine_tune = fine_tunes.filter(test_set=train_set, status="done", promoted_at__isnull=True).last()
        if fine_tune is None:
            fine_tune = evaluation.start_fine_tune(bot, test_set=train_set, epochs=epochs, started_by=user)
            with tqdm(total=100, desc="fine-tune", unit="%", file=sys.stderr) as bar:
                fine_tune = evaluation.run_fine_tune(
                    fine_tune.id, on_progress=lambda row: bar.update(round(row.progress * 100) - bar.n)
                )
        emit(metric="fine-tune", set=folder.name, status=fine_tune.status, error=fine_tune.error,
             pairs=fine_tune.pair_count, held_out=fine_tune.held_out_count, epochs=fine_tune.epochs,
             baseline=fine_tune.baseline, candidate=fine_tune.candidate, promotable=fine_tune.promotable,
             seconds=round(time.perf_counter() - started, 1))  # fmt: skip
        if not fine_tune.promotable:
            emit(metric="retrieval", set=set_name, config="hybrid+fine-tuned", skipped="not better on held-out cases")
            return
        evaluation.promote_fine_tune(
            fine_tune, switch_bot=lambda model: bots.update_bot(bot, user, {"embedding_model": model})
        )
        started = time.perf_counter()
        documents.reindex_bot(bot.id)
        emit(metric="reindex", set=folder.name, seconds=round(time.perf_counter() - started, 1))
        bot.refresh_from_db()
    measure(test_set, bot, user, "hybrid+fine-tuned", CONFIGS["hybrid"], set_name=set_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--split", default="test", help="qrels/<split>.tsv: tune on dev, report test.")
    parser.add_argument("--queries", type=int, default=0, help="Only the first N judged queries (0: all).")
    parser.add_argument(
        "--corpus", type=int, default=0,
        help="At most N documents: those judged for the chosen queries, then others in file order (0: all). "
        "A smaller corpus is easier: figures are then not comparable to published ones.",
    )  # fmt: skip
    parser.add_argument(
        "--reuse", action="store_true",
        help="Keep the bot (named after the folder and --corpus) for the next run, and reuse it if it exists: "
        "only documents not yet ready are ingested. Without it a fresh bot is made and deleted afterwards.",
    )  # fmt: skip
    parser.add_argument("--ingest-only", action="store_true", help="Import and ingest, measure nothing.")
    parser.add_argument(
        "--fine-tune", action="store_true",
        help="Also fine-tune the embedding model on the train split, promote it if it is better on held-out train "
        "queries, re-index, and measure hybrid search with it. It embeds the corpus three times and trains: for all "
        "of nfcorpus, hours on a busy 2-core machine; use --corpus for a quick run.",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=1, help="Fine-tuning epochs (with --fine-tune).")
    parser.add_argument(
        "--keyword-bench", action="store_true",
        help="Only the keyword line of make bench: the corpus is parsed and chunked by the real pipeline but not "
        "embedded (minutes, not an hour), keyword-only search is measured, and one JSON line compares it with BM25 "
        "measured outside Docent. Its bot (with --reuse) is its own. A missing folder prints a skip line.",
    )  # fmt: skip
    args = parser.parse_args()
    if not (args.folder / "corpus.jsonl").is_file():
        if args.keyword_bench:
            emit(bench="keyword", skipped=f"no BEIR corpus at {args.folder}")
            return
        parser.error(f"{args.folder} holds no corpus.jsonl: pass a BEIR folder")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from tqdm import tqdm

    from bots import services as bots
    from bots.models import Bot
    from documents import services as documents
    from documents.models import Document
    from evaluation import services as evaluation
    from evaluation.models import TestSet

    call_command("migrate", verbosity=0)
    beir = evaluation.read_beir_folder(args.folder, split=args.split)
    if args.queries:
        beir.qrels = dict(list(beir.qrels.items())[: args.queries])
    if args.corpus:
        judged = dict.fromkeys(corpus_id for judgements in beir.qrels.values() for corpus_id in judgements)
        keep = list(dict.fromkeys([*judged, *beir.corpus]))[: max(args.corpus, len(judged))]
        beir.corpus = {corpus_id: beir.corpus[corpus_id] for corpus_id in keep}
    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    bot_name = f"beir-{args.folder.name}" + (f"-corpus{args.corpus}" if args.corpus else "")
    bot_name += "-keyword" if args.keyword_bench else ""
    bot = Bot.objects.filter(owner=user, name=bot_name).first() if args.reuse else None
    if bot is None:
        bot = bots.create_bot(user, bot_name if args.reuse else f"{bot_name}-{time.time_ns()}")
    set_name = f"{args.folder.name}" + (f"-q{args.queries}" if args.queries else "") + f"-{args.split}"

    started = time.perf_counter()
    test_set = TestSet.objects.filter(bot=bot, name=set_name).first()
    if test_set is None:
        # Entries the bot already holds with the same text are left as they are (another split, say).
        test_set = evaluation.import_beir(bot, beir, name=set_name, created_by=user, enqueue=False)
    versions = list(
        bot.documents.exclude(status__in=Document.FINAL_STATUSES).values_list("current_version_id", flat=True)
    )
    for version_id in tqdm(versions, desc="chunk" if args.keyword_bench else "ingest", file=sys.stderr):
        if args.keyword_bench:
            chunk_without_embedding(version_id)
        else:
            documents.ingest_version(version_id)
    failed = bot.documents.exclude(status="ready").count()
    emit(metric="import", set=args.folder.name, documents=bot.documents.count(), ingested=len(versions),
         failed=failed, subset=bool(args.corpus), cases=test_set.cases.count(),
         seconds=round(time.perf_counter() - started, 1))  # fmt: skip
    if args.keyword_bench and not args.ingest_only:
        figures = measure(test_set, bot, user, "keyword-only", CONFIGS["keyword-only"], set_name=args.folder.name)
        emit(bench="keyword", ndcg10=figures["ndcg_10"], reference_bm25_ndcg10=REFERENCE_BM25_NDCG10,
             set=args.folder.name, split=args.split, queries=figures["queries"],
             subset=bool(args.corpus or args.queries),
             chunks=bot_chunk_count(bot), seconds=figures["seconds"])  # fmt: skip
    elif not args.ingest_only:
        for name, weights in CONFIGS.items():
            measure(test_set, bot, user, name, weights, set_name=args.folder.name)
        if args.fine_tune:
            fine_tuned_line(bot, user, args.folder, test_set, set_name=args.folder.name, epochs=args.epochs)
        else:
            emit(metric="retrieval", set=args.folder.name, config="hybrid+fine-tuned", skipped="pass --fine-tune")
    if not args.reuse:
        bot.delete()


if __name__ == "__main__":
    main()
