"""Evaluation's public entry points: test sets, their imports, runs, and comparisons.

The application layer calls only these functions. A run asks the bot every question
of a test set through retrieval.services (search for the ranking, answer for the
answer), stores what happened per case, and ends with the metrics of
evaluation.metrics. Every bad input raises ValueError with a sentence a person can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from documents import services as documents
from evaluation import judge as judging
from evaluation import metrics as measures
from evaluation import tracking
from evaluation.cases import (  # noqa: F401 - re-exported: the application layer's one door
    FEEDBACK_SET_NAME,
    add_case,
    add_feedback_case,
    cases_needing_documents,
    default_test_set,
    delete_case,
    delete_test_set,
    set_default_test_set,
    update_case,
)
from evaluation.drafts import CaseDraft, draft_of
from evaluation.fine_tunes import (  # noqa: F401 - re-exported: the application layer's one door
    FineTuneConflict,
    delete_fine_tune,
    fail_fine_tune,
    fine_tunes_of_bots,
    promote_fine_tune,
    run_fine_tune,
    start_fine_tune,
)
from evaluation.imports import BeirSet, beir_from_zip, parse_csv, parse_jsonl, read_beir_folder  # noqa: F401
from evaluation.models import CaseResult, EvaluationRun, TestCase, TestSet
from retrieval import services as retrieval

logger = logging.getLogger(__name__)

MAX_CASES = 10_000
# Metrics where a drop is an improvement (the Quality tab colours deltas by it).
LOWER_IS_BETTER = measures.LOWER_IS_BETTER
# Search depth per case: recall@100 needs a hundred candidates (fusion may return fewer).
SEARCH_DEPTH = 100
# How long a queued run waits for its bot's re-indexing before it gives up.
INDEX_WAIT_SECONDS = 3600
# --- Test sets -------------------------------------------------------------------------


def test_sets_of_bots(bots):
    return TestSet.objects.filter(bot__in=bots)


def runs_of_bots(bots):
    return EvaluationRun.objects.filter(bot__in=bots)


def create_test_set(
    bot,
    name: str,
    cases: Iterable[CaseDraft | Mapping],
    *,
    created_by=None,
    generator: str = TestCase.Generator.TYPED,
    is_default: bool = False,
) -> TestSet:
    """A test set of `cases` (CaseDrafts or dicts with the same keys) for `bot`, all or nothing.

    Expected documents are named by file name and must be documents of the bot.
    """
    name = (name or "").strip()
    if not name:
        raise ValueError("A test set needs a name.")
    drafts = [draft_of(case, number) for number, case in enumerate(cases, start=1)]
    if not drafts:
        raise ValueError("A test set needs at least one case.")
    if len(drafts) > MAX_CASES:
        raise ValueError(f"A test set holds at most {MAX_CASES} cases; this one has {len(drafts)}.")
    if generator not in TestCase.Generator.values:
        raise ValueError(f"Unknown case generator {generator!r}.")
    names = {name for draft in drafts for name in draft.expected_documents}
    by_name = dict(documents.documents_of_bots([bot]).filter(filename__in=names).values_list("filename", "id"))
    for number, draft in enumerate(drafts, start=1):
        missing = [name for name in draft.expected_documents if name not in by_name]
        if missing:
            raise ValueError(f"Case {number}: this bot has no document named {', '.join(map(repr, missing))}.")
    try:
        with transaction.atomic():
            if is_default:
                TestSet.objects.filter(bot=bot, is_default=True).update(is_default=False)
            test_set = TestSet.objects.create(bot=bot, name=name, created_by=created_by, is_default=is_default)
            stored = TestCase.objects.bulk_create(
                [
                    TestCase(
                        test_set=test_set,
                        question=draft.question,
                        pages=draft.pages,
                        reference_answer=draft.reference_answer,
                        answerable=draft.answerable,
                        generator=generator,
                        external_id=draft.external_id,
                        position=position,
                        grades={str(by_name[name]): grade for name, grade in draft.grades.items()},
                    )
                    for position, draft in enumerate(drafts)
                ]
            )
            links = TestCase.expected_documents.through
            links.objects.bulk_create(
                [
                    links(testcase_id=case.id, document_id=by_name[name])
                    for case, draft in zip(stored, drafts, strict=True)
                    for name in dict.fromkeys(draft.expected_documents)
                ]
            )
    except IntegrityError as exc:
        raise ValueError(f"This bot already has a test set named {name!r}.") from exc
    return test_set


# --- Imports ---------------------------------------------------------------------------


def import_test_set(bot, filename: str, data: bytes, *, name: str = "", created_by=None) -> TestSet:
    """A test set from an uploaded file: CSV, JSONL, or a BEIR zip (which also adds its corpus).

    The kind is told by the file's extension; the set is named after the file unless `name` is given.
    """
    suffix = PurePosixPath(filename or "").suffix.lower()
    name = name.strip() or PurePosixPath(filename or "imported").stem or "imported"
    if suffix == ".csv":
        return create_test_set(bot, name, parse_csv(data), created_by=created_by, generator="csv")
    if suffix in {".jsonl", ".ndjson"}:
        return create_test_set(bot, name, parse_jsonl(data), created_by=created_by, generator="jsonl")
    if suffix == ".zip":
        return import_beir(bot, beir_from_zip(data), name=name, created_by=created_by)
    raise ValueError("Import a .csv, .jsonl or BEIR .zip file.")


def beir_filename(corpus_id: str) -> str:
    return documents.clean_filename(f"{corpus_id}.txt")


def import_beir(bot, beir: BeirSet, *, name: str, created_by=None, enqueue: bool = True) -> TestSet:
    """Add a BEIR corpus to `bot` (one text document `<_id>.txt` per entry) and its judged queries as cases.

    Only queries with a relevant corpus entry become cases; their qrels grades are kept for nDCG.
    Entries already in the bot with the same text are left as they are.
    """
    name = name.strip()
    if not name:
        raise ValueError("A test set needs a name.")
    if TestSet.objects.filter(bot=bot, name=name).exists():
        raise ValueError(f"This bot already has a test set named {name!r}.")
    names = {beir_filename(corpus_id) for corpus_id in beir.corpus}
    room = settings.DOCENT_MAX_DOCUMENTS_PER_BOT - bot.documents.exclude(filename__in=names).count()
    if len(names) > room:
        # Checked before storing anything: a corpus added in batches must not stop half-way.
        raise ValueError(
            f"The BEIR corpus has {len(names)} entries; this bot has room for {max(room, 0)} more documents."
        )
    uploads = [
        SimpleUploadedFile(beir_filename(corpus_id), text.encode(), content_type="text/plain")
        for corpus_id, text in beir.corpus.items()
    ]
    batch = settings.DOCENT_MAX_FILES_PER_UPLOAD
    for start in range(0, len(uploads), batch):
        try:
            results = documents.add_documents(bot, uploads[start : start + batch], enqueue=enqueue)
        except documents.UploadRefused as exc:
            raise ValueError(f"The BEIR corpus could not be added: {exc}") from exc
        refused = [result for result in results if isinstance(result, documents.Refused)]
        if refused:
            raise ValueError(f"The BEIR corpus could not be added: {refused[0].message}")
    cases = [
        CaseDraft(
            question=beir.queries[query_id],
            expected_documents=[beir_filename(corpus_id) for corpus_id in judged],
            grades={beir_filename(corpus_id): grade for corpus_id, grade in judged.items()},
            external_id=query_id,
        )
        for query_id, judged in beir.qrels.items()
    ]
    return create_test_set(bot, name, cases, created_by=created_by, generator=TestCase.Generator.BEIR)


# --- Runs ------------------------------------------------------------------------------


def start_run(test_set: TestSet, started_by=None) -> EvaluationRun:
    """Queue a run of `test_set` against its bot's current config version (on the `default` queue)."""
    from evaluation.tasks import run_evaluation

    if not test_set.cases.exists():
        raise ValueError("This test set has no cases to run.")
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            test_set=test_set,
            bot=test_set.bot,
            config_version=test_set.bot.config_version,
            cases_total=test_set.cases.count(),
            started_by=started_by,
        )
        transaction.on_commit(lambda: run_evaluation.apply_async((run.id,), queue="default"))
    return run


def execute_run(run_id: int, on_case: Callable[[EvaluationRun], None] | None = None) -> None:
    """Ask every case's question, store a CaseResult each, then the run's metrics.

    A redelivered task (the worker died mid-run) goes on from the cases without a result.
    A run already final is left alone. Any error ends the run failed, with the reason.
    `on_case` is called with the run after each case (the command line's progress bar).
    """
    run = EvaluationRun.objects.select_related("bot", "test_set").filter(pk=run_id).first()
    if run is None or run.is_final:
        return
    try:
        cases = list(run.test_set.cases.prefetch_related("expected_documents"))
        if run.status == EvaluationRun.Status.QUEUED:
            run.config_version = run.bot.config_version
            run.judge = judging.judge_of(run.bot)  # fixed for the run, as its config version is
            run.save(update_fields=["config_version", "judge"])
            run.start(len(cases))
        done = set(run.results.values_list("case_id", flat=True))
        if run.cases_done != len(done):  # resumed after a crash between a result and its count
            run.cases_done = len(done)
            run.save(update_fields=["cases_done"])
        for case in cases:
            if case.id not in done:
                _record_case(run, case)
                if on_case is not None:
                    on_case(run)
        run.finish(run_metrics(run))
        tracking.log_run(run)  # never raises: a tracking failure is noted on the run
    except Exception as exc:
        logger.exception("Evaluation run %s failed", run_id)
        run.refresh_from_db()
        if not run.is_final:
            run.fail(f"The run stopped: {exc}")


def _relevant(case: TestCase) -> dict[int, int]:
    if not case.answerable:
        return {}
    grades = {int(document_id): grade for document_id, grade in case.grades.items()}
    return {document.id: grades.get(document.id, 1) for document in case.expected_documents.all()}


def _record_case(run: EvaluationRun, case: TestCase) -> None:
    """Ask one case and store its result together with the run's count, so the two never disagree."""
    result = _run_case(run, case)
    try:
        with transaction.atomic():
            result.save()
            run.advance()
    except IntegrityError:
        # Another delivery of the same task stored this case meanwhile: its result stands.
        run.refresh_from_db()


def search_depth(bot) -> int:
    return max(SEARCH_DEPTH, bot.top_k)


def evaluate_retrieval(test_set: TestSet, bot=None) -> dict:
    """Retrieval metrics of `test_set` against `bot` (its own bot by default), searching only: nothing stored.

    For benchmarks and quick checks of a setting; runs answer and store each case as well.
    """
    bot = bot or test_set.bot
    cases = []
    for case in test_set.cases.prefetch_related("expected_documents"):
        found = retrieval.search(bot, case.question, k=search_depth(bot))
        cases.append(measures.RetrievalCase(case.id, [chunk.document_id for chunk in found.chunks], _relevant(case)))
    return {**measures.retrieval_metrics(cases), "retrieval_cases": sum(case.has_relevant for case in cases)}


def _run_case(run: EvaluationRun, case: TestCase) -> CaseResult:
    started = time.perf_counter()
    found = retrieval.search(run.bot, case.question, k=search_depth(run.bot))
    search_ms = round((time.perf_counter() - started) * 1000, 2)
    answer, trace = retrieval.answer(run.bot, case.question, asked_by=run.started_by, origin="evaluation")
    ranked = [chunk.document_id for chunk in found.chunks]
    relevant = _relevant(case)
    per_case = measures.retrieval_per_case([measures.RetrievalCase(case.id, ranked, relevant)])
    result = CaseResult(
        run=run,
        case=case,
        retrieved_chunks=[chunk.chunk_id for chunk in found.chunks],
        retrieved_documents=ranked,
        first_relevant_rank=measures.first_relevant_rank(ranked, relevant),
        answer=answer.text,
        citations=[
            {"n": c.n, "chunk_id": c.chunk.chunk_id, "document_id": c.chunk.document_id, "page": c.chunk.page}
            for c in answer.citations
        ],
        refused=answer.refused,
        trace=trace,
        timings_ms={"search": search_ms, "answer": trace.timings_ms.get("total")},
        metrics=per_case.get(case.id, {}),
    )
    result.judgement = judging.judge_case(run, case.question, answer, found.chunks)
    return result


def run_metrics(run: EvaluationRun) -> dict:
    """The run's metrics from its stored results (retrieval over answerable cases; see evaluation.metrics)."""
    results = list(run.results.select_related("case").prefetch_related("case__expected_documents"))
    retrieval_cases, answer_cases = [], []
    for result in results:
        relevant = _relevant(result.case)
        retrieval_cases.append(measures.RetrievalCase(result.case_id, result.retrieved_documents, relevant))
        answer_cases.append(
            measures.AnswerCase(
                answerable=result.case.answerable,
                refused=result.refused,
                cited_documents=[citation["document_id"] for citation in result.citations],
                expected_documents=frozenset(relevant),
            )
        )
    return {
        **measures.retrieval_metrics(retrieval_cases),
        **measures.answer_metrics(answer_cases),
        "cases": len(results),
        "retrieval_cases": sum(case.has_relevant for case in retrieval_cases),
        **(judging.judge_metrics((result.judgement, result.refused) for result in results) if run.judge else {}),
    }


# --- Comparisons -----------------------------------------------------------------------


def config_snapshot(bot, number: int) -> dict:
    """The bot's settings as saved in config version `number` (empty if that version was not recorded)."""
    version = bot.config_versions.filter(number=number).first()
    return dict(version.snapshot) if version else {}


def config_diff(bot, before: int, after: int) -> dict[str, list]:
    """{setting: [value at `before`, value at `after`]} for each setting that differs."""
    old, new = config_snapshot(bot, before), config_snapshot(bot, after)
    keys = sorted(old.keys() | new.keys())
    return {key: [old.get(key), new.get(key)] for key in keys if old.get(key) != new.get(key)}


def compare_runs(a: EvaluationRun, b: EvaluationRun) -> dict:
    """How run `b` differs from run `a`: metric deltas (b − a), config diff, and the cases that changed.

    A case improved when its first relevant document moved up (or was found at all) or
    its refusal became right; it regressed when either went the other way.
    """
    if a.test_set_id != b.test_set_id:
        raise ValueError("Only runs of the same test set can be compared.")
    if a.status != EvaluationRun.Status.DONE or b.status != EvaluationRun.Status.DONE:
        raise ValueError("Both runs must be done before they can be compared.")
    names = [*measures.RETRIEVAL_MEASURES, *measures.ANSWER_METRICS]
    names += [name for name in judging.JUDGE_METRICS if name in a.metrics or name in b.metrics]
    deltas = measures.metric_deltas(
        {name: a.metrics.get(name) for name in names}, {name: b.metrics.get(name) for name in names}
    )
    before = {result.case_id: result for result in a.results.all()}
    improved, regressed = [], []
    for result in b.results.select_related("case"):
        old = before.get(result.case_id)
        if old is None:
            continue
        change = _case_change(result.case, old, result)
        entry = {
            "case_id": result.case_id,
            "question": result.case.question,
            "a": {"first_relevant_rank": old.first_relevant_rank, "refused": old.refused},
            "b": {"first_relevant_rank": result.first_relevant_rank, "refused": result.refused},
        }
        if change < 0:
            regressed.append(entry)
        elif change > 0:
            improved.append(entry)
    return {
        "a": a.id,
        "b": b.id,
        "metric_deltas": deltas,
        "config_diff": config_diff(a.bot, a.config_version, b.config_version),
        "improved": improved,
        "regressed": regressed,
    }


def _case_change(case: TestCase, old: CaseResult, new: CaseResult) -> int:
    """+1 better, -1 worse (any worse aspect wins, so a mixed change is looked at), 0 the same."""
    signs = []
    if case.answerable:
        old_rank, new_rank = old.first_relevant_rank or 10**9, new.first_relevant_rank or 10**9
        signs.append((old_rank > new_rank) - (old_rank < new_rank))
    right_before, right_after = old.refused != case.answerable, new.refused != case.answerable
    signs.append(int(right_after) - int(right_before))
    if -1 in signs:
        return -1
    return 1 if 1 in signs else 0


def waiting_for_index(run_id: int) -> bool:
    """True while a queued run's bot is still re-indexing for its current settings.

    A run measures the bot's current config version, so after a chunking or
    embedding-model change it waits until the new index answers (the old one would be
    measured under the new version's name), and it waits for documents still being
    ingested (a BEIR import queues its whole corpus just before its first run). After
    INDEX_WAIT_SECONDS the run is failed with the reason instead of waiting for ever.
    """
    run = EvaluationRun.objects.select_related("bot").filter(pk=run_id).first()
    if run is None or run.status != EvaluationRun.Status.QUEUED:
        return False
    indexed, total = documents.reindex_progress(run.bot)
    ingesting = documents.documents_of_bots([run.bot]).exclude(status__in=documents.Document.FINAL_STATUSES).count()
    if indexed >= total and not ingesting:
        return False
    if (timezone.now() - run.created_at).total_seconds() > INDEX_WAIT_SECONDS:
        minutes = INDEX_WAIT_SECONDS // 60
        run.fail(f"The bot's documents were still being indexed after {minutes} minutes, so the run did not start.")
        return False
    return True


def fail_run(run_id: int, reason: str) -> None:
    """End a run that is not final as failed (a task died outside execute_run's own handling)."""
    run = EvaluationRun.objects.filter(pk=run_id).first()
    if run is not None and not run.is_final:
        run.fail(reason)


def case_results(run: EvaluationRun) -> list[dict]:
    """Each case of a run as plain data: the question, what was expected, what was found and answered."""
    results = list(run.results.select_related("case").prefetch_related("case__expected_documents"))
    ids = {document_id for result in results for document_id in result.retrieved_documents}
    names = dict(documents.documents_of_bots([run.bot]).filter(pk__in=ids).values_list("id", "filename"))
    return [
        {
            "case_id": result.case_id,
            "question": result.case.question,
            "answerable": result.case.answerable,
            "expected_documents": [
                {"id": document.id, "filename": document.filename} for document in result.case.expected_documents.all()
            ],
            "first_relevant_rank": result.first_relevant_rank,
            "retrieved_documents": [
                {"id": document_id, "filename": names.get(document_id, "(deleted)")}
                for document_id in measures.unique_in_order(result.retrieved_documents)
            ],
            "answer": result.answer,
            "citations": result.citations,
            "refused": result.refused,
            "trace_id": result.trace_id,
            "timings_ms": result.timings_ms,
            "metrics": result.metrics,
            "judgement": result.judgement,
        }
        for result in results
    ]


def generate_test_set(bot, name: str, *, count: int = 20, unanswerable: int = 3, seed: int = 0, created_by=None):
    """Cases written from the bot's own passages, by its LLM or by rule, plus held-out unanswerable ones.

    See evaluation.generation.
    """
    from evaluation import generation

    return generation.generate_test_set(
        bot, name, count=count, unanswerable=unanswerable, seed=seed, created_by=created_by
    )
