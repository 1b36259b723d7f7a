"""Hostile input: schemathesis generates requests for every operation of /api/v1/openapi.json.

It runs against the Django application in-process (config.wsgi), as a builder with a bot
that has documents, a conversation, a trace, feedback, a test set with a finished run and
a failed fine-tune. Every answer must be a documented status code with a body matching
the schema, and never a 5xx.

Each generated request runs in a savepoint that is rolled back afterwards, so every one
meets the same objects (a DELETE does not starve the requests after it) and work that
would start on commit (ingestion, evaluation runs, fine-tunes) is never sent to a worker.
That is why no operation is left out, not even those that start long jobs.
"""

import pytest
import schemathesis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bots import services as bots
from documents import services as documents
from tests.conftest import finished_evaluation

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(owner, member, index_texts):
    """The builder's bot with one of everything the API names by id."""
    bot = bots.create_bot(owner, "Canteen")
    index_texts(bot, {"canteen.txt": "The canteen on the second floor opens at 11:30 on weekdays."})
    queued = documents.add_document(bot, SimpleUploadedFile("menu.txt", b"Soup on Mondays."), False).document
    share = bots.share_bot(bot, username=member.get_username())
    conversation, answer = bots.ask(bot, owner, "When does the canteen open?")
    bots.give_feedback(owner, answer.id, 1)
    test_set, run, fine_tune = finished_evaluation(bot)
    _, key = bots.create_token(owner, "schemathesis")
    return {
        "key": key,
        # Integer path and query parameters are replaced by these, so requests reach real objects;
        # values of other types still go through, for the 422s.
        "ids": {
            "bot_id": bot.id, "document_id": queued.id, "conversation_id": conversation.id,
            "message_id": answer.id, "trace_id": answer.trace_id, "test_set_id": test_set.id,
            "run_id": run.id, "a": run.id, "b": run.id, "fine_tune_id": fine_tune.id,
            "share_id": share.id,
        },
    }  # fmt: skip


# Bounded and repeatable: a fixed seed, 10 generated requests per operation (valid and invalid
# ones), no shrinking. The coverage phase is off: it sends every boundary of every field (a
# 3 MB list of 10,000 test cases among them), which took minutes for little news.
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 12,
        "generation": {"max-examples": 10, "mode": "all", "no-shrink": True, "deterministic": True},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
# No 5xx, and every status code, content type and body as the schema says. Not run:
# positive_data_acceptance (rules beyond the schema refuse some valid requests by design:
# retrying a ready document is a 400), negative_data_rejection (counts the 413 for an oversized
# body as a miss), ignored_auth (three more requests per example; tests/bots/test_token_auth.py
# and the permission table in tests/bots/test_url_permissions.py cover it).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def load_schema():
    """The schema exactly as /api/v1/openapi.json serves it, read through the WSGI application."""
    from config.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application, config=CONFIG)


# Loaded at collection, so each operation is a test of its own (the schema needs no database).
schema = load_schema()


@pytest.fixture(autouse=True)
def requests_keep_the_test_transaction():
    # Django closes the database connection when a request ends, which would end the test's
    # transaction; its own test client does the same as here for that reason.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_api_answer_is_documented_and_never_a_server_error(case, world):
    for container in (case.path_parameters, case.query):
        for name, value in (container or {}).items():
            if isinstance(value, int) and name in world["ids"]:
                container[name] = world["ids"][name]
    with transaction.atomic():
        try:
            # buffered: werkzeug closes the response, and Django with it the request's uploaded files.
            case.call_and_validate(headers={"Authorization": f"Bearer {world['key']}"}, checks=CHECKS, buffered=True)
        finally:
            transaction.set_rollback(True)


# What the run above found, each pinned by a test of its own.


def test_a_body_that_is_not_a_json_object_is_a_422_and_changes_nothing(owner_api, bot, owner):
    conversation, _ = bots.ask(bot, owner, "When does the canteen open?")
    url = f"/api/v1/bots/{bot.id}/conversations/{conversation.id}"
    # ninja read fields as attributes of the body: a string's .title() renamed the conversation.
    response = owner_api.patch(url, '"quarterly report"', "application/json")
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "object_type"
    conversation.refresh_from_db()
    assert conversation.title != "Quarterly Report"
    for body in ("[]", "7", "true"):
        assert owner_api.patch(f"/api/v1/bots/{bot.id}", body, "application/json").status_code == 422, body
    bot.refresh_from_db()
    assert bot.config_version == 1
    assert owner_api.patch(url, {"title": "Lunch"}, "application/json").json()["title"] == "Lunch"


def test_null_for_a_setting_that_cannot_be_empty_is_a_422_and_the_model_choices_take_null(owner_api, bot):
    url = f"/api/v1/bots/{bot.id}"
    # Each was a 500: a comparison with None (the numbers) or a NOT NULL column (the rest).
    for field in ("temperature", "top_k", "name", "llm_model", "evaluate_on_change", "chunking_strategy"):
        response = owner_api.patch(url, {field: None}, "application/json")
        assert response.status_code == 422, (field, response.content[:200])
        assert response.json()["detail"][0]["loc"][-1] == field
    bot.refresh_from_db()
    assert bot.config_version == 1
    for field in ("embedding_model", "provider", "reranker", "judge_provider"):
        assert owner_api.patch(url, {field: None}, "application/json").status_code == 200, field
