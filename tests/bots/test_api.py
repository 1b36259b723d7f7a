import subprocess
import sys

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from bots.models import TOKEN_TOUCH_INTERVAL, ApiToken, Bot
from documents.models import Document
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def test_create_and_list_bots(owner_api, outsider_api):
    response = owner_api.post("/api/v1/bots", {"name": "HR handbook", "instructions": "Be brief."}, "application/json")
    assert response.status_code == 201
    created = response.json()
    assert created["slug"] == "hr-handbook"
    assert created["config_version"] == 1
    assert [bot["id"] for bot in owner_api.get("/api/v1/bots").json()] == [created["id"]]
    assert outsider_api.get("/api/v1/bots").json() == []


def test_slugs_stay_unique(owner_api):
    first = owner_api.post("/api/v1/bots", {"name": "Sales"}, "application/json").json()
    second = owner_api.post("/api/v1/bots", {"name": "Sales"}, "application/json").json()
    assert (first["slug"], second["slug"]) == ("sales", "sales-2")


def test_errors_are_json_with_detail(owner_api, client):
    assert client.get("/api/v1/bots").status_code == 401
    missing = owner_api.get("/api/v1/bots/999999")
    assert missing.status_code == 404
    assert "detail" in missing.json()
    invalid = owner_api.post("/api/v1/bots", {"name": ""}, "application/json")
    assert invalid.status_code == 422
    assert "detail" in invalid.json()
    assert owner_api.post("/api/v1/bots", "{not json", "application/json").status_code in (400, 422)


def test_oversized_upload_is_refused_with_413_and_nothing_is_stored(owner_api, bot, settings):
    settings.DOCENT_MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.txt", b"a " * 700_000)
    small = SimpleUploadedFile("small.txt", b"fine")
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {"file": [small, big]})
    assert response.status_code == 413
    assert "limit is 1 MB" in response.json()["detail"]
    assert not Document.objects.exists()


def test_upload_without_a_file_is_a_4xx(owner_api, bot):
    response = owner_api.post(f"/api/v1/bots/{bot.id}/documents", {})
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()


def test_openapi_lists_the_contract_paths(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for path in [
        "/api/v1/bots",
        "/api/v1/bots/{bot_id}/documents",
        "/api/v1/documents/{document_id}",
        "/api/v1/bots/{bot_id}/search",
        "/api/v1/bots/{bot_id}/chat",
    ]:
        assert path in paths


def test_createapitoken_prints_a_working_token_last(capsys, client):
    call_command("createapitoken", "newcomer", "--create-user")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("dct_")
    response = client.get("/api/v1/bots", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user__username="newcomer")
    assert token.key_hash != key and token.last_used_at is not None


def test_revoked_token_is_refused(owner, client):
    token, key = ApiToken.issue(owner)
    token.revoked_at = token.created_at
    token.save()
    assert client.get("/api/v1/bots", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_a_tokens_last_use_is_written_once_a_minute_not_on_every_request(owner, client):
    token, key = ApiToken.issue(owner)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/bots", headers=headers).status_code == 200
    first_use = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first_use is not None
    assert client.get("/api/v1/bots", headers=headers).status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first_use
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - TOKEN_TOUCH_INTERVAL)
    assert client.get("/api/v1/bots", headers=headers).status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first_use


def test_bot_name_is_escaped_in_pages(client, owner):
    Bot.objects.create(owner=owner, name="<script>alert(1)</script>")
    client.force_login(owner)
    html = client.get("/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_importing_the_web_layer_does_not_import_torch():
    code = (
        "import django, sys; django.setup(); "
        "import bots.views, bots.api, config.urls; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
        "print(','.join(heavy) or 'none')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "none"


def test_profile_shows_a_new_token_once_and_revoking_it_locks_it_out(client, owner):
    client.force_login(owner)
    page = client.post("/profile/", {"name": "Slack bot"}).content.decode()
    key = page.split('<code id="new-token">')[1].split("</code>")[0]
    api = Client(headers={"Authorization": f"Bearer {key}"})
    assert api.get("/api/v1/bots").status_code == 200
    listing = client.get("/profile/").content.decode()
    assert "Slack bot" in listing and key not in listing
    token = ApiToken.objects.get(user=owner, name="Slack bot")
    assert token.last_used_at is not None
    assert client.post(f"/profile/tokens/{token.pk}/revoke/").status_code == 302
    assert api.get("/api/v1/bots").status_code == 401
