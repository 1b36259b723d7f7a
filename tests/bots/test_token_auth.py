"""A wrong or revoked API token is a 401 asking for a bearer token, on reads and writes alike."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from bots.models import ApiToken, Bot

pytestmark = pytest.mark.django_db


@pytest.fixture
def revoked_key(owner) -> str:
    token, key = ApiToken.issue(owner)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    return key


def requests(bot) -> list[tuple[str, str, dict | None]]:
    return [
        ("get", f"/api/v1/bots/{bot.id}", None),
        ("post", "/api/v1/bots", {"name": "Sneaky"}),
        ("patch", f"/api/v1/bots/{bot.id}", {"name": "Renamed"}),
        ("delete", f"/api/v1/bots/{bot.id}/conversations/1", None),
        ("post", f"/api/v1/bots/{bot.id}/chat", {"question": "Hello?"}),
    ]


def assert_asks_for_a_token(response) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Bearer"
    assert "token" in response.json()["detail"]


@pytest.mark.parametrize("kind", ["wrong", "revoked", "not bearer"])
def test_every_method_with_bad_credentials_is_a_401_with_www_authenticate(kind, bot, revoked_key):
    header = {"wrong": "Bearer dct_not-a-real-token", "revoked": f"Bearer {revoked_key}", "not bearer": "Basic YTpi"}
    client = Client(headers={"Authorization": header[kind]})
    for method, path, body in requests(bot):
        arguments = {"data": json.dumps(body), "content_type": "application/json"} if body else {}
        assert_asks_for_a_token(getattr(client, method)(path, **arguments))
    assert Bot.objects.get(pk=bot.pk).name == "Handbook"
    assert not Bot.objects.filter(name="Sneaky").exists()


def test_bad_credentials_win_over_a_logged_in_session(client, owner, bot):
    """A request that sends a token means that token, even from a browser that is logged in."""
    client.force_login(owner)
    response = client.patch(
        f"/api/v1/bots/{bot.id}",
        json.dumps({"name": "Renamed"}),
        "application/json",
        headers={"Authorization": "Bearer dct_not-a-real-token"},
    )
    assert_asks_for_a_token(response)


def test_no_credentials_at_all_is_a_401_with_www_authenticate(bot):
    response = Client().post("/api/v1/bots", json.dumps({"name": "x"}), "application/json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_session_write_without_a_csrf_token_is_still_refused(owner):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    response = browser.post("/api/v1/bots", json.dumps({"name": "Forged"}), "application/json")
    assert response.status_code == 403
    assert not Bot.objects.filter(name="Forged").exists()


def test_a_valid_token_still_writes(owner_api):
    response = owner_api.post("/api/v1/bots", json.dumps({"name": "Fine"}), "application/json")
    assert response.status_code == 201


@pytest.mark.parametrize("kind", ["wrong", "revoked"])
def test_the_openai_endpoint_answers_401_to_a_bad_token_on_post(kind, bot, revoked_key):
    key = {"wrong": "dct_not-a-real-token", "revoked": revoked_key}[kind]
    response = Client(headers={"Authorization": f"Bearer {key}"}).post(
        "/v1/chat/completions",
        json.dumps({"model": bot.slug, "messages": [{"role": "user", "content": "Hi"}]}),
        "application/json",
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"
