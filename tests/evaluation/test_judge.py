"""The LLM judge: grades per case over real HTTP, robust parsing, run metrics, failures kept per case."""

import json

import pytest

from evaluation import judge, services
from retrieval.models import LLMProvider
from tests.chat_server import API_KEY, MODEL
from tests.conftest import api_client_for
from tests.evaluation.test_runs import CASES, HANDBOOK
from tests.retrieval.test_llms import unused_port


@pytest.mark.parametrize(
    "reply",
    [
        '{"faithfulness": 0.75, "relevance": 1, "reasoning": "Mostly supported."}',
        'Grade:\n```json\n{"Faithfulness": "0.75", "answer_relevance": 1.0, "reasoning": "Mostly supported."}\n```',
        '{"faithfulness": "75%", "relevancy": "100%", "explanation": "Mostly supported."}',
        "Faithfulness: 0.75\nRelevance = 1\nThe answer is mostly supported.",
    ],
)
def test_a_verdict_is_read_from_json_fences_strings_percentages_or_plain_lines(reply):
    verdict = judge.parse_verdict(reply)
    assert (verdict["faithfulness"], verdict["relevance"]) == (0.75, 1.0)
    if "Mostly" in reply:
        assert verdict["reasoning"] == "Mostly supported."


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("I think the answer is fine.", "gives no faithfulness"),
        ('{"faithfulness": 0.5}', "gives no relevance"),
        ('{"faithfulness": 7, "relevance": 1}', "not between 0 and 1"),
        ('{"faithfulness": "high", "relevance": 1}', "not a number"),
        ('{"faithfulness": true, "relevance": 1}', "not a number"),
    ],
)
def test_an_unusable_verdict_says_what_is_wrong(reply, problem):
    with pytest.raises(judge.UnusableVerdict, match=problem):
        judge.parse_verdict(reply)


def test_judge_metrics_average_only_graded_answered_cases():
    graded = {"faithfulness": 1.0, "relevance": 0.5, "reasoning": ""}
    judgements = [
        (graded, False),
        ({"faithfulness": 0.5, "relevance": 1.0, "reasoning": ""}, False),
        ({"error": "timeout"}, False),
        ({}, True),  # a refusal is not graded
    ]
    assert judge.judge_metrics(judgements) == {
        "faithfulness": 0.75,
        "answer_relevance": 0.75,
        "judged_cases": 2,
        "judge_errors": 1,
    }
    assert judge.judge_metrics([({"error": "x"}, False)])["faithfulness"] is None


def judged_bot(bot, base_url: str):
    provider = LLMProvider(name="grader", base_url=base_url, model_names=[MODEL])
    provider.set_api_key(API_KEY)
    provider.save()
    bot.judge_provider, bot.judge_model = provider, MODEL
    bot.save()
    return bot


def grade(body) -> str:
    """The test judge: garbage for the canteen question, a verdict naming the question for the others."""
    prompt = body["messages"][-1]["content"]
    if "canteen" in prompt.split("Passages:")[0]:
        return "I would rather not say."
    return json.dumps({"faithfulness": 0.9, "relevance": 0.6, "reasoning": "Supported by [1]."})


@pytest.mark.django_db
def test_a_run_with_a_judge_grades_each_answer_keeps_its_reasoning_and_adds_the_means(
    bot, owner, index_texts, chat_server
):
    index_texts(bot, HANDBOOK)
    judged_bot(bot, chat_server.base_url)
    chat_server.reply_for = grade
    test_set = services.create_test_set(bot, "Judged", [CASES[0], CASES[1], CASES[3]])
    run = services.start_run(test_set)
    services.execute_run(run.id)  # in-process: the judge needs nothing of the worker
    run.refresh_from_db()

    assert run.status == "done", run.error
    assert run.judge == {"provider": "grader", "model": MODEL}
    by_question = {result.case.question: result for result in run.results.select_related("case")}
    vacation = by_question[CASES[1]["question"]]
    assert vacation.judgement == {"faithfulness": 0.9, "relevance": 0.6, "reasoning": "Supported by [1]."}
    canteen = by_question[CASES[0]["question"]]
    assert "gives no faithfulness" in canteen.judgement["error"]  # recorded on the case; the run went on
    assert by_question[CASES[3]["question"]].judgement == {}  # refused: nothing to grade
    assert (run.metrics["faithfulness"], run.metrics["answer_relevance"]) == (0.9, 0.6)
    assert (run.metrics["judged_cases"], run.metrics["judge_errors"]) == (1, 1)

    sent = [request["body"]["messages"][-1]["content"] for request in chat_server.requests]
    assert len(sent) == 2 and all(request["body"]["model"] == MODEL for request in chat_server.requests)
    vacation_prompt = next(prompt for prompt in sent if "vacation" in prompt.split("Passages:")[0])
    assert HANDBOOK["vacation.txt"] in vacation_prompt and vacation.answer in vacation_prompt

    cases = api_client_for(owner).get(f"/api/v1/runs/{run.id}/cases").json()
    assert [case["judgement"] for case in cases] == [canteen.judgement, vacation.judgement, {}]
    # Without a judge a run has no judge metrics (None would read as "graded badly").
    run.judge = {}
    assert "faithfulness" not in services.run_metrics(run)


@pytest.mark.django_db
def test_an_unreachable_judge_is_noted_per_case_and_the_run_still_finishes(bot, index_texts):
    index_texts(bot, HANDBOOK)
    judged_bot(bot, f"http://127.0.0.1:{unused_port()}/v1")
    run = services.start_run(services.create_test_set(bot, "Judged", [CASES[1]]))
    services.execute_run(run.id)
    run.refresh_from_db()

    assert run.status == "done", run.error
    assert "Connection error" in run.results.get().judgement["error"]
    assert run.metrics["faithfulness"] is None and run.metrics["judge_errors"] == 1


@pytest.mark.django_db
def test_a_bot_without_a_judge_provider_has_no_judge_and_the_model_defaults_to_the_providers_first(bot):
    assert judge.judge_of(bot) == {}
    judged_bot(bot, "http://127.0.0.1:1/v1")
    bot.judge_model = ""
    assert judge.judge_of(bot) == {"provider": "grader", "model": MODEL}
