"""The evaluation API: shapes from ARCHITECTURE.md, readable 4xx answers, and who may reach it."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from bots import services as bots
from bots.models import BotShare
from evaluation import services
from tests.conftest import api_client_for
from tests.evaluation.test_runs import CASES, HANDBOOK

pytestmark = pytest.mark.django_db


@pytest.fixture
def handbook(bot, index_texts):
    index_texts(bot, HANDBOOK)
    return bot


def test_an_editor_creates_runs_and_compares_through_the_api(handbook, owner_api):
    body = {"name": "Basics", "cases": CASES[::3]}  # one answerable, one not: each case costs three embeddings
    created = owner_api.post(f"/api/v1/bots/{handbook.id}/test-sets", body, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json() | {"created_at": None} == {
        "id": created.json()["id"], "name": "Basics", "case_count": 2, "is_default": False, "created_at": None,
    }  # fmt: skip
    test_set_id = created.json()["id"]
    assert [row["name"] for row in owner_api.get(f"/api/v1/bots/{handbook.id}/test-sets").json()] == ["Basics"]

    started = owner_api.post(f"/api/v1/test-sets/{test_set_id}/runs")
    assert started.status_code == 202 and started.json()["status"] == "queued"
    run_id = started.json()["id"]
    queued = owner_api.get(f"/api/v1/runs/{run_id}").json()
    assert (queued["status"], queued["progress"], queued["config_version"]) == ("queued", 0.0, 1)
    services.execute_run(run_id)  # what the worker does (tests/evaluation/test_runs.py runs it there)

    run = owner_api.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "done" and run["progress"] == 1.0
    assert {"hit@1", "hit@5", "mrr@10", "ndcg@10", "recall@10", "citation_precision", "refusal_accuracy"} <= set(
        run["metrics"]
    )
    cases = owner_api.get(f"/api/v1/runs/{run_id}/cases").json()
    assert [case["first_relevant_rank"] for case in cases] == [1, None]
    assert cases[0]["retrieved_documents"][0]["filename"] == "canteen.txt"
    assert [case["refused"] for case in cases] == [False, True]

    second = owner_api.post(f"/api/v1/test-sets/{test_set_id}/runs").json()["id"]
    services.execute_run(second)
    comparison = owner_api.get(f"/api/v1/runs/compare?a={run_id}&b={second}").json()
    assert set(comparison) >= {"metric_deltas", "config_diff", "improved", "regressed"}
    assert comparison["metric_deltas"]["hit@1"] == 0 and comparison["config_diff"] == {}


def test_a_csv_upload_becomes_a_test_set(handbook, owner_api):
    csv = b"question,expected_documents,answerable\nWhen does the canteen open?,canteen.txt,yes\nWho?,,no\n"
    answer = owner_api.post(
        f"/api/v1/bots/{handbook.id}/test-sets/import", {"file": SimpleUploadedFile("canteen.csv", csv)}
    )
    assert answer.status_code == 201, answer.content
    assert (answer.json()["name"], answer.json()["case_count"]) == ("canteen", 2)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"name": "x", "cases": [{"question": "When?", "expected_documents": ["nope.txt"]}]}, "no document named"),
        ({"name": " ", "cases": [{"question": "When?", "answerable": False}]}, "needs a name"),
        ({"name": "x", "cases": []}, "at least one case"),
    ],
)
def test_bad_test_sets_are_answered_with_a_readable_400(handbook, owner_api, body, detail):
    answer = owner_api.post(f"/api/v1/bots/{handbook.id}/test-sets", body, content_type="application/json")
    assert answer.status_code == 400 and detail in answer.json()["detail"]


def test_comparing_unfinished_runs_is_a_readable_400(handbook, owner_api):
    test_set = services.create_test_set(handbook, "Basics", CASES)
    run = services.start_run(test_set)
    answer = owner_api.get(f"/api/v1/runs/compare?a={run.id}&b={run.id}")
    assert answer.status_code == 400 and "must be done" in answer.json()["detail"]


@pytest.mark.parametrize(("role", "status"), [("owner", 200), ("editor", 200), ("member", 404), ("outsider", 404)])
def test_only_editors_see_a_bots_evaluations(handbook, owner, member, outsider, django_user_model, role, status):
    editor = django_user_model.objects.create_user("edna", password="editor-pass-123")
    bots.share_bot(handbook, username="edna", role=BotShare.Role.EDITOR)
    bots.share_bot(handbook, username=member.username, role=BotShare.Role.USER)
    test_set = services.create_test_set(handbook, "Basics", CASES)
    run = services.start_run(test_set)
    client = api_client_for({"owner": owner, "editor": editor, "member": member, "outsider": outsider}[role])

    assert client.get(f"/api/v1/bots/{handbook.id}/test-sets").status_code == status
    assert client.get(f"/api/v1/runs/{run.id}").status_code == status
    assert client.get(f"/api/v1/runs/{run.id}/cases").status_code == status
    assert client.post(f"/api/v1/test-sets/{test_set.id}/runs").status_code == (202 if status == 200 else 404)
    if status == 404:
        assert client.get(f"/api/v1/runs/{run.id}").json() == {"detail": "Not Found"}
