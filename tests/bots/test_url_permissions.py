"""Every URL, every role: owner, editor, chat-only user, outsider (and admin for the console).

The table below must name every route of the product. A new URL without a row
makes test_every_route_has_a_permission_case fail, so no page or endpoint can ship
without someone deciding who may reach it.
"""

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import get_resolver

from bots import services as bots
from bots.models import ApiToken, BotShare
from documents import services as documents
from tests.conftest import finished_evaluation

pytestmark = pytest.mark.django_db

ROLES = ["owner", "editor", "user", "outsider"]
CHATTERS = {"owner": 200, "editor": 200, "user": 200, "outsider": 404}
EDITORS = {"owner": 200, "editor": 200, "user": 404, "outsider": 404}
OWNER_ONLY = {"owner": 200, "editor": 404, "user": 404, "outsider": 404}
NOBODY = {"owner": 404, "editor": 404, "user": 404, "outsider": 404}  # admins only
PUBLIC = {role: 200 for role in ROLES}


def redirects(expected: dict) -> dict:
    """The same table, where a successful form post answers with a redirect."""
    return {role: 302 if status == 200 else status for role, status in expected.items()}


def created(expected: dict, code: int) -> dict:
    return {role: code if status == 200 else status for role, status in expected.items()}


# route → (method, path template, body, expected status per role). {bot}, {slug}, {document}, {share},
# {conversation}, {question}, {answer}, {trace}, {test_set}, {run}, {fine_tune}, {case}, {feedback} are the owner's objects.
WEB = {
    "bots:list": ("get", "/", None, {role: 200 for role in ROLES}),
    "bots:profile": ("get", "/profile/", None, {role: 200 for role in ROLES}),
    "bots:token-revoke": ("post", "/profile/tokens/{token}/revoke/", {}, redirects(OWNER_ONLY)),
    "bots:detail": ("get", "/bots/{slug}/", None, CHATTERS),
    "bots:conversation": ("get", "/bots/{slug}/conversations/{conversation}/", None, OWNER_ONLY),
    "bots:chat": ("post", "/bots/{slug}/chat/", {"message": ""}, redirects(CHATTERS)),
    "bots:answer-stream": ("get", "/bots/{slug}/questions/{question}/answer/", None, OWNER_ONLY),
    "bots:knowledge": ("get", "/bots/{slug}/knowledge/", None, EDITORS),
    "bots:documents-table": ("get", "/bots/{slug}/knowledge/table/", None, EDITORS),
    "bots:upload": ("post", "/bots/{slug}/documents/", {}, redirects(EDITORS)),
    "bots:settings": ("get", "/bots/{slug}/settings/", None, EDITORS),
    "bots:traces": ("get", "/bots/{slug}/traces/", None, EDITORS),
    "bots:sharing": ("get", "/bots/{slug}/sharing/", None, EDITORS),
    # An empty confirmation deletes nothing: 400 for those who could delete, 403 for an editor.
    "bots:delete": ("post", "/bots/{slug}/delete/", {}, {"owner": 400, "editor": 403, "user": 404, "outsider": 404}),
    "bots:unshare": ("post", "/bots/{slug}/sharing/{share}/remove/", {}, redirects(EDITORS)),
    "bots:quality": ("get", "/bots/{slug}/quality/", None, EDITORS),
    "bots:runs-table": ("get", "/bots/{slug}/quality/runs/", None, EDITORS),
    "bots:run": ("get", "/bots/{slug}/quality/runs/{run}/", None, EDITORS),
    "bots:compare": ("get", "/bots/{slug}/quality/compare/?a={run}&b={run}", None, EDITORS),
    "bots:test-set-create": ("post", "/bots/{slug}/quality/test-sets/", {"name": "x"}, redirects(EDITORS)),
    "bots:test-set-import": ("post", "/bots/{slug}/quality/test-sets/import/", {}, redirects(EDITORS)),
    "bots:test-set-generate": ("post", "/bots/{slug}/quality/test-sets/generate/", {"count": "x"}, redirects(EDITORS)),
    "bots:test-set": ("get", "/bots/{slug}/quality/test-sets/{test_set}/", None, EDITORS),
    "bots:test-set-delete": ("post", "/bots/{slug}/quality/test-sets/{test_set}/delete/", {}, redirects(EDITORS)),
    "bots:test-set-default": ("post", "/bots/{slug}/quality/test-sets/{test_set}/default/", {}, redirects(EDITORS)),
    "bots:run-start": ("post", "/bots/{slug}/quality/test-sets/{test_set}/runs/", {}, redirects(EDITORS)),
    "bots:case": ("get", "/bots/{slug}/quality/test-sets/{test_set}/cases/{case}/", None, EDITORS),
    "bots:case-delete": (
        "post", "/bots/{slug}/quality/test-sets/{test_set}/cases/{case}/delete/", {}, redirects(EDITORS),
    ),
    "bots:fine-tune-start": ("post", "/bots/{slug}/quality/fine-tunes/", {"epochs": "x"}, redirects(EDITORS)),
    "bots:fine-tunes-table": ("get", "/bots/{slug}/quality/fine-tunes/table/", None, EDITORS),
    "bots:fine-tune-promote": ("post", "/bots/{slug}/quality/fine-tunes/{fine_tune}/promote/", {}, redirects(EDITORS)),
    "bots:fine-tune-delete": ("post", "/bots/{slug}/quality/fine-tunes/{fine_tune}/delete/", {}, redirects(EDITORS)),
    "bots:feedback-case": ("post", "/bots/{slug}/quality/feedback/{feedback}/case/", {}, redirects(EDITORS)),
    "bots:conversation-rename": (
        "post", "/bots/{slug}/conversations/{conversation}/rename/", {"title": "x"}, redirects(OWNER_ONLY),
    ),
    "bots:conversation-delete": ("post", "/bots/{slug}/conversations/{conversation}/delete/", {}, redirects(OWNER_ONLY)),
    "bots:feedback": ("post", "/answers/{answer}/feedback/", {"rating": "up"}, redirects(OWNER_ONLY)),
    "bots:trace-panel": ("get", "/traces/{trace}/", None, {"owner": 200, "editor": 200, "user": 404, "outsider": 404}),
    "bots:document": ("get", "/documents/{document}/", None, EDITORS),
    "bots:document-retry": ("post", "/documents/{document}/retry/", {}, redirects(EDITORS)),
    "bots:document-rollback": ("post", "/documents/{document}/rollback/", {"version": "1"}, redirects(EDITORS)),
    "bots:document-delete": ("post", "/documents/{document}/delete/", {}, redirects(EDITORS)),
    # Platform endpoints: probes call them without credentials; the test client is on loopback,
    # an allowed network for /metrics (tokens and other networks: the API table and below).
    "healthz": ("get", "/healthz", None, PUBLIC),
    "readyz": ("get", "/readyz", None, PUBLIC),
    "favicon.ico": ("get", "/favicon.ico", None, {role: 301 for role in ROLES}),
    # Django's sign-in pages (Docent's own password reset among them): the same for everyone.
    "login": ("get", "/accounts/login/", None, PUBLIC),
    "logout": ("post", "/accounts/logout/", {}, redirects(PUBLIC)),
    "password_change": ("get", "/accounts/password_change/", None, PUBLIC),
    "password_change_done": ("get", "/accounts/password_change/done/", None, PUBLIC),
    "password_reset": ("get", "/accounts/password_reset/", None, PUBLIC),
    "password_reset_done": ("get", "/accounts/password_reset/done/", None, PUBLIC),
    "password_reset_confirm": ("get", "/accounts/reset/MQ/not-a-token/", None, PUBLIC),
    "password_reset_complete": ("get", "/accounts/reset/done/", None, PUBLIC),
}  # fmt: skip

API = {
    "api:openapi-json": ("get", "/api/v1/openapi.json", None, {role: 200 for role in ROLES}),
    "api:openapi-view": ("get", "/api/v1/docs", None, {role: 200 for role in ROLES}),
    "api:api-root": ("get", "/api/v1/", None, {role: 404 for role in ROLES}),
    "api:create_bot": ("post", "/api/v1/bots", {"name": "New"}, {"owner": 201, "editor": 403, "user": 403, "outsider": 403}),
    "api:list_bots": ("get", "/api/v1/bots", None, {role: 200 for role in ROLES}),
    "api:get_bot": ("get", "/api/v1/bots/{bot}", None, CHATTERS),
    "api:update_bot": ("patch", "/api/v1/bots/{bot}", {"top_k": 4}, EDITORS),
    "api:delete_bot": ("delete", "/api/v1/bots/{bot}", None, {"owner": 204, "editor": 403, "user": 403, "outsider": 404}),
    "api:upload_documents": ("post-file", "/api/v1/bots/{bot}/documents", None, created(EDITORS, 202)),
    "api:list_documents": ("get", "/api/v1/bots/{bot}/documents", None, EDITORS),
    "api:get_document": ("get", "/api/v1/documents/{document}", None, EDITORS),
    "api:delete_document": ("delete", "/api/v1/documents/{document}", None, created(EDITORS, 204)),
    "api:retry_document": ("post", "/api/v1/documents/{document}/retry", {}, created(EDITORS, 400)),
    "api:rollback_document": ("post", "/api/v1/documents/{document}/rollback", {"version": 1}, created(EDITORS, 202)),
    "api:search": ("post", "/api/v1/bots/{bot}/search", {"query": "canteen"}, EDITORS),
    "api:chat": ("post", "/api/v1/bots/{bot}/chat", {"message": "When does the canteen open?"}, CHATTERS),
    "api:list_shares": ("get", "/api/v1/bots/{bot}/shares", None, EDITORS),
    "api:share_bot": ("post", "/api/v1/bots/{bot}/shares", {"user": "zoe", "role": "user"}, created(EDITORS, 201)),
    "api:unshare_bot": ("delete", "/api/v1/bots/{bot}/shares/{share}", None, created(EDITORS, 204)),
    "api:list_conversations": ("get", "/api/v1/bots/{bot}/conversations", None, CHATTERS),
    "api:rename_conversation": (
        "patch", "/api/v1/bots/{bot}/conversations/{conversation}", {"title": "x"},
        {"owner": 200, "editor": 404, "user": 404, "outsider": 404},
    ),
    "api:delete_conversation": (
        "delete", "/api/v1/bots/{bot}/conversations/{conversation}", None, created(OWNER_ONLY, 204),
    ),
    "api:give_feedback": ("post", "/api/v1/messages/{answer}/feedback", {"rating": -1}, created(OWNER_ONLY, 201)),
    "api:get_trace": ("get", "/api/v1/traces/{trace}", None, {"owner": 200, "editor": 200, "user": 404, "outsider": 404}),
    "api:create_test_set": (
        "post", "/api/v1/bots/{bot}/test-sets",
        {"name": "New", "cases": [{"question": "When?", "expected_documents": ["canteen.txt"]}]}, created(EDITORS, 201),
    ),
    "api:list_test_sets": ("get", "/api/v1/bots/{bot}/test-sets", None, EDITORS),
    "api:import_test_set": ("post-file", "/api/v1/bots/{bot}/test-sets/import", None, created(EDITORS, 400)),
    "api:start_run": ("post", "/api/v1/test-sets/{test_set}/runs", None, created(EDITORS, 202)),
    "api:get_run": ("get", "/api/v1/runs/{run}", None, EDITORS),
    "api:list_run_cases": ("get", "/api/v1/runs/{run}/cases", None, EDITORS),
    "api:compare_runs": ("get", "/api/v1/runs/compare?a={run}&b={run}", None, EDITORS),
    "api:start_fine_tune": ("post", "/api/v1/bots/{bot}/fine-tunes", {}, created(EDITORS, 202)),
    "api:list_fine_tunes": ("get", "/api/v1/bots/{bot}/fine-tunes", None, EDITORS),
    "api:get_fine_tune": ("get", "/api/v1/fine-tunes/{fine_tune}", None, EDITORS),
    "api:promote_fine_tune": ("post", "/api/v1/fine-tunes/{fine_tune}/promote", {}, created(EDITORS, 409)),
    "api:delete_fine_tune": ("delete", "/api/v1/fine-tunes/{fine_tune}", None, created(EDITORS, 204)),
    "openai:models": ("get", "/v1/models", None, {role: 200 for role in ROLES}),
    "openai:model": ("get", "/v1/models/{slug}", None, CHATTERS),
    "openai:chat-completions": (
        "post", "/v1/chat/completions", {"model": "{slug}", "messages": [{"role": "user", "content": "Canteen hours?"}]},
        CHATTERS,
    ),
    "openai:unknown": ("get", "/v1/no/such/endpoint", None, {role: 404 for role in ROLES}),
    # A token that is not an admin's is refused even from an allowed network.
    "metrics": ("get", "/metrics", None, {role: 403 for role in ROLES}),
}  # fmt: skip

CONSOLE_POSTS = ("test", "delete", "default", "role", "active", "members", "remove", "builders")


def all_routes() -> dict[str, str]:
    """[namespace:]name (or the route, for an unnamed one) → route, for every URL but Django's admin.

    The admin is left out: its URLs come and go with the registered models, and it lets in
    staff only, whatever the bot (test_django_admin_is_for_staff_only).
    """
    found = {}

    def walk(resolver, prefix: str, namespace: str | None):
        for pattern in resolver.url_patterns:
            route = prefix + str(pattern.pattern)
            if hasattr(pattern, "url_patterns"):
                if pattern.namespace != "admin":
                    walk(pattern, route, pattern.namespace or namespace)
            elif namespace:
                found[f"{namespace}:{pattern.name}"] = route
            else:
                found[pattern.name or route] = route

    walk(get_resolver(), "", None)
    return found


def console_cases() -> dict:
    cases = {}
    for name, route in all_routes().items():
        if name.startswith("console:"):
            path = "/" + route.replace("<int:pk>", "1").replace("<int:user_pk>", "1")
            method = "post" if path.rstrip("/").rsplit("/", 1)[-1] in CONSOLE_POSTS else "get"
            cases[name] = (method, path, {}, NOBODY)
    return cases


def test_every_route_has_a_permission_case():
    covered = set(WEB) | set(API) | set(console_cases())
    assert set(all_routes()) - covered == set(), "add a row for each new route to the tables above"
    assert covered - set(all_routes()) == set(), "remove rows for routes that no longer exist"


def test_every_api_operation_has_a_row_with_its_method_and_path():
    from config.api import api

    def shape(method: str, path: str) -> tuple[str, str]:
        return method.removesuffix("-file"), re.sub(r"{\w+}", "{}", path.partition("?")[0])

    operations = {
        shape(method, path) for path, methods in api.get_openapi_schema()["paths"].items() for method in methods
    }
    rows = {shape(method, path) for method, path, _, _ in API.values() if path.startswith("/api/")}
    assert operations - rows == set(), "add a row to API for each new operation"


@pytest.fixture
def world(owner, django_user_model):
    """A bot of the owner's, shared with an editor and a chat-only user, with one of everything."""
    people = {"owner": owner}
    for role in ["editor", "user", "outsider"]:
        people[role] = django_user_model.objects.create_user(role, password="pass-123-pass")
    django_user_model.objects.create_user("zoe", password="pass-123-pass")
    bot = bots.create_bot(owner, "Canteen")
    bots.share_bot(bot, username="editor", role=BotShare.Role.EDITOR)
    bots.share_bot(bot, username="user", role=BotShare.Role.USER)
    spare = django_user_model.objects.create_user("spare", password="pass-123-pass")
    share = BotShare.objects.create(bot=bot, user=spare, role=BotShare.Role.USER)
    document = documents.add_document(bot, SimpleUploadedFile("canteen.txt", b"The canteen opens at 11:30."), False)
    conversation, answer = bots.ask(bot, owner, "When does the canteen open?")
    token, _ = ApiToken.issue(owner)
    feedback = bots.give_feedback(owner, answer.id, -1)
    test_set, run, fine_tune = finished_evaluation(bot)
    return {
        "people": people,
        "ids": {
            "bot": bot.id, "slug": bot.slug, "document": document.document.id, "share": share.id,
            "conversation": conversation.id, "question": answer.in_reply_to_id, "answer": answer.id,
            "trace": answer.trace_id, "token": token.id, "test_set": test_set.id, "run": run.id,
            "fine_tune": fine_tune.id, "case": test_set.cases.get().id, "feedback": feedback.id,
        },
    }  # fmt: skip


def fill(template, ids: dict):
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, ids) for value in template]
    return template


def request(client: Client, method: str, path: str, body):
    if method == "post-file":
        return client.post(path, {"file": SimpleUploadedFile("new.txt", b"New text.")})
    if method == "get":
        return client.get(path)
    if method == "post" and not path.startswith(("/api/", "/v1/")):
        return client.post(path, body or {})
    return getattr(client, method)(path, json.dumps(body) if body is not None else None, "application/json")


# Each role meets a fresh world: some requests delete what the next would need.
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(WEB))
def test_pages_answer_each_role_as_the_table_says(route, role, world, client):
    method, template, body, expected = WEB[route]
    client.force_login(world["people"][role])
    response = request(client, method, fill(template, world["ids"]), body)
    assert response.status_code == expected[role]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(API))
def test_api_answers_each_role_as_the_table_says(route, role, world):
    method, template, body, expected = API[route]
    _, key = ApiToken.issue(world["people"][role])
    client = Client(headers={"Authorization": f"Bearer {key}"})
    response = request(client, method, fill(template, world["ids"]), fill(body, world["ids"]))
    assert response.status_code == expected[role], response.content[:200]


@pytest.mark.parametrize("route", sorted(console_cases()))
def test_console_is_for_admins_only(route, world, client):
    method, path, body, expected = console_cases()[route]
    for role in ROLES:
        client.force_login(world["people"][role])
        assert request(client, method, path, body).status_code == expected[role], (route, role)


@pytest.mark.parametrize("path", ["/admin/", "/admin/bots/bot/", "/admin/auth/user/"])
def test_django_admin_is_for_staff_only(path, world, client):
    for role in ROLES:
        client.force_login(world["people"][role])
        response = client.get(path)
        assert (response.status_code, response["Location"].split("?")[0]) == (302, "/admin/login/"), role
