"""Time from question to the first streamed sentence of the built-in (extractive) answer.

Builds a bot of N synthetic chunks as bench/search.py does (its generated policy text,
real embeddings, loaded by COPY), stores their sentence vectors as the worker does in
the background (retrieval.sentences), then asks questions through
retrieval.services.answer_stream and prints JSON lines: p50/p95 milliseconds to the
first "token" event (the first chosen sentence, or the refusal) and to the finished,
stored answer, and the issue's summary line {"bench": "answer", ...}. Server time only:
no HTTP, no browser. `--no-sentence-vectors` measures answers that embed the passages'
sentences themselves (chunks the background fill has not reached yet).

Before sentence vectors, on a busy 2-core machine, 10,000 chunks, 40 questions: first
sentence p50 310 ms, p95 354 ms, ~70 ms of it embedding the candidate sentences.

    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/first_sentence.py [--n 10000] [--queries 40]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="chunks in the bot")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the synthetic bot afterwards")
    parser.add_argument("--no-sentence-vectors", action="store_true", help="don't store sentence vectors first")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from search import OBJECTS, TOPICS, build, emit, percentiles  # bench/search.py
    from tqdm import tqdm

    from retrieval import services
    from retrieval.sentences import fill_sentence_vectors

    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    bot, sample = build(args.n, False, rng)  # real embeddings of bench/search.py's generated text
    if not args.no_sentence_vectors:
        with tqdm(total=args.n, desc="sentence vectors", file=sys.stderr) as bar:
            fill_sentence_vectors(yield_to_ingestion=False, progress=bar.update, bot_id=bot.pk)
    questions = [f"Which {rng.choice(TOPICS)} rules apply to {rng.choice(OBJECTS)}?" for _ in range(args.queries // 2)]
    questions += [f"What does section {text.split(' in section ')[1].split('.')[0]} cover?"
                  for text in rng.sample(sample, args.queries - len(questions))]  # fmt: skip
    services.answer_stream(bot, "warm up")  # a generator: nothing runs yet
    list(services.answer_stream(bot, "Which vacation rules apply to interns?"))  # model and connections warm

    first, whole, refused = [], [], 0
    for question in questions:
        started = time.perf_counter()
        for event in services.answer_stream(bot, question):
            if event.kind == "token" and len(first) < len(whole) + 1:
                first.append((time.perf_counter() - started) * 1000)
            elif event.kind == "done":
                whole.append((time.perf_counter() - started) * 1000)
                refused += event.answer.refused
    emit(metric="time_to_first_sentence", answerer="extractive", chunks=args.n, queries=len(first),
         **percentiles(first))  # fmt: skip
    emit(metric="time_to_whole_answer", answerer="extractive", chunks=args.n, queries=len(whole),
         refused=refused, **percentiles(whole))  # fmt: skip
    first_figures = percentiles(first)
    emit(bench="answer", chunks=args.n, sentence_vectors=not args.no_sentence_vectors,
         extractive_first_sentence_p50_ms=first_figures["p50_ms"],
         extractive_first_sentence_p95_ms=first_figures["p95_ms"])  # fmt: skip
    if not args.keep:
        bot.delete()


if __name__ == "__main__":
    main()
