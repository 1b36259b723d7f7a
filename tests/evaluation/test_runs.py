"""Runs in the real worker, stored per case, and comparisons between two runs."""

import time

import pytest

from bots import services as bots
from evaluation import services
from evaluation.models import CaseResult, EvaluationRun

HANDBOOK = {
    "canteen.txt": "The canteen opens at 11:30 on weekdays and serves lunch until 14:00.",
    "vacation.txt": "Full-time employees receive 25 days of paid vacation per calendar year.",
    "printer.txt": "Printer error E-4417 means the toner cartridge is empty; replace the cartridge.",
}
CASES = [
    {"question": "When does the canteen open?", "expected_documents": ["canteen.txt"]},
    {"question": "How many days of paid vacation do employees receive?", "expected_documents": ["vacation.txt"]},
    {"question": "What does printer error E-4417 mean?", "expected_documents": ["printer.txt"]},
    {"question": "Which football club won the 1954 World Cup final?", "answerable": False},
]


def wait_for_run(run_id: int, timeout: float = 90) -> EvaluationRun:
    deadline = time.monotonic() + timeout
    while True:
        run = EvaluationRun.objects.get(pk=run_id)
        if run.is_final:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run still {run.status} ({run.cases_done}/{run.cases_total}) after {timeout}s")
        time.sleep(0.25)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_run_in_the_worker_stores_each_case_and_the_metrics(bot, owner, index_texts):
    index_texts(bot, HANDBOOK)
    test_set = services.create_test_set(bot, "Handbook basics", CASES, created_by=owner)

    run = wait_for_run(services.start_run(test_set, started_by=owner).id)

    assert run.status == "done", run.error
    assert (run.progress, run.cases_done, run.config_version) == (1.0, 4, bot.config_version)
    results = {result.case.question: result for result in run.results.select_related("case")}
    for case in CASES[:3]:
        result = results[case["question"]]
        assert result.first_relevant_rank == 1
        assert result.retrieved_documents[0] == bot.documents.get(filename=case["expected_documents"][0]).id
        assert not result.refused and result.citations and result.answer
        assert result.metrics["mrr@10"] == 1
    unanswerable = results[CASES[3]["question"]]
    assert unanswerable.refused and unanswerable.first_relevant_rank is None
    assert run.metrics["hit@1"] == run.metrics["mrr@10"] == run.metrics["ndcg@10"] == 1
    assert run.metrics["recall@10"] == 1
    assert run.metrics["refusal_accuracy"] == 1 and run.metrics["wrong_refusals"] == 0
    assert run.metrics["citation_precision"] == 1
    assert (run.metrics["cases"], run.metrics["retrieval_cases"]) == (4, 3)


@pytest.mark.django_db
def test_running_again_after_a_settings_change_compares_metrics_config_and_cases(bot, owner, index_texts):
    index_texts(bot, HANDBOOK)
    # Few cases: each costs three embeddings on a shared CPU.
    cases = [CASES[0], CASES[3], {"question": "When is lunch served?", "expected_documents": ["vacation.txt"]}]
    test_set = services.create_test_set(bot, "Handbook basics", cases, created_by=owner)
    first = services.start_run(test_set)
    services.execute_run(first.id)  # in-process: the worker's path is tested above
    bots.update_bot(bot, owner, {"vector_weight": 0.0, "refusal_threshold": 0.99})
    second = services.start_run(test_set)
    services.execute_run(second.id)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.config_version, second.config_version) == (1, 2)

    comparison = services.compare_runs(first, second)

    assert comparison["config_diff"] == {"refusal_threshold": [0.25, 0.99], "vector_weight": [1.0, 0.0]}
    # A threshold of 0.99 refuses everything: answerable cases now refused, so wrong refusals rise.
    assert comparison["metric_deltas"]["wrong_refusals"] == pytest.approx(1.0)
    assert comparison["metric_deltas"]["refusal_accuracy"] == 0  # the unanswerable one was refused before too
    assert CASES[0]["question"] in {entry["question"] for entry in comparison["regressed"]}
    assert comparison["improved"] == []


@pytest.mark.django_db
def test_cases_that_moved_up_or_were_rightly_refused_count_as_improved(bot, owner, index_texts):
    index_texts(bot, HANDBOOK)
    test_set = services.create_test_set(bot, "Ranks", CASES, created_by=owner)
    cases = list(test_set.cases.all())
    runs = []
    # Hand-made results: case 0 moves from rank 3 to 1, case 1 falls out, case 2 stays, case 3 stops refusing.
    for ranks, refusals in [([3, 1, 1, None], [False, False, False, True]), ([1, None, 1, None], [False] * 4)]:
        run = EvaluationRun.objects.create(test_set=test_set, bot=bot, config_version=1)
        run.start(len(cases))
        for case, rank, refused in zip(cases, ranks, refusals, strict=True):
            CaseResult.objects.create(run=run, case=case, first_relevant_rank=rank, refused=refused)
        run.finish({"hit@1": 0.5, "refusal_accuracy": 1.0} if not runs else {"hit@1": 0.75, "refusal_accuracy": 0.0})
        runs.append(run)

    comparison = services.compare_runs(*runs)

    assert [entry["case_id"] for entry in comparison["improved"]] == [cases[0].id]
    assert [entry["case_id"] for entry in comparison["regressed"]] == [cases[1].id, cases[3].id]
    assert comparison["metric_deltas"]["hit@1"] == 0.25
    assert comparison["metric_deltas"]["refusal_accuracy"] == -1.0
    assert comparison["config_diff"] == {}


@pytest.mark.django_db
def test_runs_refuse_impossible_transitions_and_unfinished_comparisons(bot, owner, index_texts):
    index_texts(bot, HANDBOOK)
    test_set = services.create_test_set(bot, "Basics", CASES)
    run = services.start_run(test_set)
    with pytest.raises(ValueError, match="Cannot finish an evaluation run that is queued"):
        run.finish({})
    with pytest.raises(ValueError, match="Both runs must be done"):
        services.compare_runs(run, run)
    other = services.create_test_set(bot, "Other", CASES[:1])
    with pytest.raises(ValueError, match="same test set"):
        services.compare_runs(run, services.start_run(other))
    run.fail("stopped")
    services.execute_run(run.id)  # a failed run is final: a late task leaves it alone
    run.refresh_from_db()
    assert run.status == "failed" and not run.results.exists()


@pytest.mark.django_db
def test_a_run_redelivered_after_a_crash_goes_on_from_the_cases_without_a_result(bot, owner, index_texts):
    index_texts(bot, HANDBOOK)
    test_set = services.create_test_set(bot, "Basics", [CASES[0], CASES[3]])
    first_case, second_case = test_set.cases.all()
    run = services.start_run(test_set)
    # The worker stored the first case's result and died before counting it.
    run.start(2)
    CaseResult.objects.create(run=run, case=first_case, first_relevant_rank=7, refused=False)

    services.execute_run(run.id)  # the redelivered task

    run.refresh_from_db()
    assert run.status == "done" and run.cases_done == 2 and run.progress == 1.0
    assert run.results.get(case=first_case).first_relevant_rank == 7  # kept, not asked again
    assert run.results.get(case=second_case).refused


@pytest.mark.django_db
def test_retrieval_can_be_measured_without_answering_or_storing_anything(bot, index_texts):
    index_texts(bot, HANDBOOK)
    test_set = services.create_test_set(bot, "Basics", CASES)
    metrics = services.evaluate_retrieval(test_set)
    assert metrics["hit@1"] == metrics["recall@100"] == 1 and metrics["retrieval_cases"] == 3
    assert not EvaluationRun.objects.exists()
