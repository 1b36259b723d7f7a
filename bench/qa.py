"""Answer quality on SQuAD articles, through Docent's own services: does the answer hold the gold span?

Uploads the articles of a QA folder (docs/<Title>.txt, questions.jsonl with gold answers;
see its README) into a bot with documents.services and ingests them in-process with the
real pipeline, then asks a seeded sample of questions with retrieval.answer() and prints
JSON lines:

- answerable questions (of articles the bot holds): answer_contains_gold (a gold answer
  appears in the answer text), citation_contains_gold (in a passage the answer cites),
  wrong_refusals (said the documents don't cover it);
- unanswerable questions (of held-out articles, which the bot never gets): correct_refusals.

    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/qa.py --reuse [--n 300] [--seed 0] [--record]

The folder defaults to ../shared/data/qa/squad-dev-disjoint beside the checkout
($DOCENT_SHARED_DATA/qa/... when set), or --data DIR. `--held-out` articles (chosen by
--seed) stay out of the bot. `--reuse` keeps the bot, named after the folder, hold-out and
seed, for the next run, so a second run measures at once without re-ingesting.
`--record` also imports the sampled questions as a test set (gold answers as reference
answers) and records the same questions as an evaluation run through evaluation.services,
so the Quality tab tracks it; the JSON figures then come from that run's stored results.

Gold answers are matched after SQuAD's normalisation (lower case, no punctuation, no
articles). A crowd-written question can often be answered by a sentence that states the
fact differently, so answer_contains_gold is a lower bound on correct answers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The shared corpus is not in the repository: $DOCENT_SHARED_DATA, or shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("DOCENT_SHARED_DATA") or ROOT.parent / "shared" / "data")
DEFAULT_DATA = SHARED_DATA / "qa" / "squad-dev-disjoint"


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def normalized(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(char for char in text.lower() if char not in string.punctuation and char not in "‘’“”–—")
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_gold(text: str, golds: list[str]) -> bool:
    text = f" {normalized(text)} "
    return any(f" {normalized(gold)} " in text for gold in golds if normalized(gold))


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]
    document: str


@dataclass
class Outcome:
    question: Question
    answerable: bool
    refused: bool
    answer: str
    cited_texts: list[str]


def load(folder: Path) -> tuple[dict[str, Path], list[Question]]:
    documents = {path.name: path for path in sorted((folder / "docs").glob("*.txt"))}
    with (folder / "questions.jsonl").open(encoding="utf-8") as lines:
        questions = [Question(**{key: row[key] for key in ("id", "question", "answers", "document")})
                     for row in map(json.loads, lines)]  # fmt: skip
    return documents, questions


def sample(questions: list[Question], documents: list[str], n: int, rng: random.Random) -> list[Question]:
    pool = [question for question in questions if question.document in documents]
    return rng.sample(pool, min(n, len(pool)))


def ingest(bot, paths: list[Path]) -> dict:
    """Upload the files the bot lacks, then ingest every document not yet final, in this process."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from tqdm import tqdm

    from documents import services as documents
    from documents.models import Document

    held = set(bot.documents.values_list("filename", flat=True))
    for path in paths:
        if path.name not in held:
            documents.add_document(bot, SimpleUploadedFile(path.name, path.read_bytes()), enqueue=False)
    versions = list(
        bot.documents.exclude(status__in=Document.FINAL_STATUSES).values_list("current_version_id", flat=True)
    )
    for version_id in tqdm(versions, desc="ingest", file=sys.stderr):
        documents.ingest_version(version_id)
    return {"documents": bot.documents.count(), "ingested": len(versions),
            "failed": bot.documents.exclude(status="ready").count()}  # fmt: skip


def ask_directly(bot, user, cases: list[tuple[Question, bool]], set_name: str = "") -> list[Outcome]:
    from tqdm import tqdm

    from retrieval import services as retrieval

    outcomes = []
    for question, answerable in tqdm(cases, desc="questions", file=sys.stderr):
        answer, _ = retrieval.answer(bot, question.question, asked_by=user, origin="evaluation")
        cited = [citation.chunk.text for citation in answer.citations]
        outcomes.append(Outcome(question, answerable, answer.refused, answer.text, cited))
    return outcomes


def ask_through_evaluation(bot, user, cases: list[tuple[Question, bool]], set_name: str) -> list[Outcome]:
    """The same questions as a test set and an evaluation run, executed here; outcomes from its stored results."""
    from tqdm import tqdm

    from documents.models import Chunk
    from evaluation import services as evaluation
    from evaluation.models import TestSet

    test_set = TestSet.objects.filter(bot=bot, name=set_name).first()
    if test_set is None:
        drafts = [
            {"question": question.question, "reference_answer": question.answers[0], "answerable": answerable,
             "expected_documents": [question.document] if answerable else []}
            for question, answerable in cases
        ]  # fmt: skip
        test_set = evaluation.create_test_set(bot, set_name, drafts, created_by=user)
    run = evaluation.start_run(test_set, started_by=user)
    with tqdm(total=len(cases), desc=f"evaluation run {run.id}", file=sys.stderr) as bar:
        evaluation.execute_run(run.id, on_case=lambda row: bar.update(row.cases_done - bar.n))
    run.refresh_from_db()
    if run.status != run.Status.DONE:
        raise SystemExit(f"The evaluation run failed: {run.error}")
    results = list(run.results.select_related("case"))
    chunk_texts = Chunk.objects.in_bulk([citation["chunk_id"] for result in results for citation in result.citations])
    outcomes = []
    for result in results:
        question, answerable = cases[result.case.position]  # cases are stored in order
        cited = [chunk_texts[c["chunk_id"]].text for c in result.citations if c["chunk_id"] in chunk_texts]
        outcomes.append(Outcome(question, answerable, result.refused, result.answer, cited))
    emit(metric="evaluation_run", run=run.id, test_set=test_set.name, config_version=run.config_version,
         **{key: value for key, value in run.metrics.items() if isinstance(value, int | float)})  # fmt: skip
    return outcomes


def report(outcomes: list[Outcome], *, set_name: str, seconds: float, examples: int) -> None:
    answerable = [outcome for outcome in outcomes if outcome.answerable]
    unanswerable = [outcome for outcome in outcomes if not outcome.answerable]

    def share(count: int, total: int) -> float | None:
        return round(count / total, 4) if total else None

    answer_hits = sum(contains_gold(o.answer, o.question.answers) for o in answerable)
    citation_hits = sum(any(contains_gold(text, o.question.answers) for text in o.cited_texts) for o in answerable)
    wrong_refusals = sum(o.refused for o in answerable)
    correct_refusals = sum(o.refused for o in unanswerable)
    emit(metric="qa_answerable", set=set_name, questions=len(answerable),
         answer_contains_gold=share(answer_hits, len(answerable)),
         citation_contains_gold=share(citation_hits, len(answerable)),
         wrong_refusals=share(wrong_refusals, len(answerable)))  # fmt: skip
    emit(metric="qa_unanswerable", set=set_name, questions=len(unanswerable),
         correct_refusals=share(correct_refusals, len(unanswerable)))  # fmt: skip
    emit(metric="qa_time", set=set_name, questions=len(outcomes), seconds=round(seconds, 1),
         ms_per_question=round(seconds * 1000 / max(1, len(outcomes)), 1))  # fmt: skip
    misses = [o for o in answerable if not o.refused and not contains_gold(o.answer, o.question.answers)]
    wrongly_answered = [o for o in unanswerable if not o.refused]
    wrongly_refused = [o for o in answerable if o.refused]
    kinds = [("answer_without_gold", misses), ("answered_unanswerable", wrongly_answered), ("refused", wrongly_refused)]
    for kind, rows in kinds:
        for outcome in rows[:examples]:
            emit(example=kind, question=outcome.question.question, gold=outcome.question.answers,
                 answer=outcome.answer[:400])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="A QA folder: docs/*.txt and questions.jsonl.")
    parser.add_argument("--n", type=int, default=300, help="Answerable questions to ask (and as many unanswerable).")
    parser.add_argument("--held-out", type=int, default=4, help="Articles kept out of the bot (unanswerable).")
    parser.add_argument("--seed", type=int, default=0, help="Chooses the held-out articles and the questions.")
    parser.add_argument(
        "--reuse", action="store_true",
        help="Keep the bot for the next run and reuse it if it exists (no re-ingest). "
        "Without it a fresh bot is made and deleted afterwards.",
    )  # fmt: skip
    parser.add_argument("--record", action="store_true", help="Ask through an evaluation run, stored for the bot.")
    parser.add_argument("--examples", type=int, default=0, help="Also print this many failures of each kind.")
    args = parser.parse_args()
    if not (args.data / "questions.jsonl").is_file():
        parser.error(f"{args.data} holds no questions.jsonl: pass --data DIR or set DOCENT_SHARED_DATA")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from bots import services as bots
    from bots.models import Bot

    call_command("migrate", verbosity=0)
    documents, questions = load(args.data)
    rng = random.Random(args.seed)
    held_out = sorted(rng.sample(sorted(documents), args.held_out))
    held = [name for name in sorted(documents) if name not in held_out]
    cases = [(question, True) for question in sample(questions, held, args.n, rng)]
    cases += [(question, False) for question in sample(questions, held_out, args.n, rng)]

    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    bot_name = f"qa-{args.data.name}-holdout{args.held_out}-seed{args.seed}"
    bot = Bot.objects.filter(owner=user, name=bot_name).first() if args.reuse else None
    if bot is None:
        bot = bots.create_bot(user, bot_name if args.reuse else f"{bot_name}-{time.time_ns()}")
    started = time.perf_counter()
    figures = ingest(bot, [documents[name] for name in held])
    emit(metric="import", set=args.data.name, held_out=held_out, seconds=round(time.perf_counter() - started, 1),
         **figures)  # fmt: skip

    set_name = f"{args.data.name}-n{args.n}-seed{args.seed}"
    started = time.perf_counter()
    ask = ask_through_evaluation if args.record else ask_directly
    outcomes = ask(bot, user, cases, set_name)
    report(outcomes, set_name=set_name, seconds=time.perf_counter() - started, examples=args.examples)
    if not args.reuse:
        bot.delete()


if __name__ == "__main__":
    main()
