"""The settings tab: grouped with advanced fields folded, model-only fields hidden for the built-in
answerer, errors by their field in its own words, limits that agree, a saved confirmation and a
history that reads like the form."""

import re

import pytest
from django.test import Client

from bots import services
from bots.forms import SETTINGS_GROUPS, BotSettingsForm
from tests.bots.test_input_limits import settings_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def field_block(html: str, name: str) -> str:
    """The settings page's wrapper of one field, from its opening tag to the next field's."""
    start = html.index(f'id="setting-{name}"')
    following = html.find('id="setting-', start + 1)
    return html[start : following if following != -1 else len(html)]


def test_every_setting_is_in_exactly_one_group():
    grouped = [name for _, _, main, advanced in SETTINGS_GROUPS for name in main + advanced]
    assert sorted(grouped) == sorted(services.SETTINGS_FIELDS)


def test_the_page_groups_answers_retrieval_and_indexing_and_folds_the_advanced_fields(owner_client, bot):
    html = owner_client.get(f"/bots/{bot.slug}/settings/").content.decode()
    legends = re.findall(r"<legend>(.*?)</legend>", html)
    assert legends == ["About", "Answers", "Retrieval", "Indexing", "Quality"]
    start = html.index("Advanced retrieval settings")
    advanced = html[start : html.index("</details>", start)]
    for name in ("rrf_k", "vector_weight", "keyword_weight", "reranker"):
        assert f'id="setting-{name}"' in advanced
    assert 'id="setting-top_k"' not in advanced


def test_model_only_fields_are_hidden_with_the_built_in_answerer_and_shown_with_a_provider(owner_client, bot):
    from retrieval import services as retrieval

    html = owner_client.get(f"/bots/{bot.slug}/settings/").content.decode()
    for name in ("temperature", "llm_model", "max_tokens", "prompt_template"):
        assert 'data-needs="provider" hidden' in field_block(html, name), name
    assert " hidden" not in field_block(html, "top_k")

    bot.provider = retrieval.create_provider(
        name="Local", base_url="http://localhost:9/v1", model_names=["m"], context_tokens=8192
    )
    bot.save()
    html = owner_client.get(f"/bots/{bot.slug}/settings/").content.decode()
    assert 'data-needs="provider">' in field_block(html, "temperature")


def test_a_refused_value_is_explained_at_its_field_with_the_same_limit_its_help_gives(owner_client, bot):
    form = settings_form(bot) | {"chunk_size_tokens": 300}
    response = owner_client.post(f"/bots/{bot.slug}/settings/", form)
    assert response.status_code == 200
    html = response.content.decode()
    block = field_block(html, "chunk_size_tokens")
    assert "Passage size must be between 32 and 254 tokens" in block
    assert "At most 254 for this bot&#x27;s embedding model" in block or "At most 254 for this bot's" in block
    assert 'max="254"' in block and 'min="32"' in block
    assert "Nothing was saved" in html
    bot.refresh_from_db()
    assert (bot.chunk_size_tokens, bot.config_version) == (200, 1)

    response = owner_client.post(f"/bots/{bot.slug}/settings/", settings_form(bot) | {"chunk_overlap_tokens": 150})
    block = field_block(response.content.decode(), "chunk_overlap_tokens")
    assert "Passage overlap must be between 0 and 100 tokens" in block


def test_the_api_refuses_the_same_values_in_the_same_words(owner_api, bot):
    response = owner_api.patch(f"/api/v1/bots/{bot.id}", {"chunk_size_tokens": 300}, "application/json")
    assert response.status_code == 400
    assert "Passage size must be between 32 and 254 tokens" in response.json()["detail"]
    assert BotSettingsForm(instance=bot).fields["chunk_size_tokens"].widget.attrs["max"] == 254


def test_saving_confirms_once_and_the_history_reads_like_the_form(owner_client, bot, index_texts):
    index_texts(bot, {"canteen.txt": "The canteen opens at 11:30."})
    form = settings_form(bot) | {"chunking_strategy": "sentence", "top_k": 8}
    response = owner_client.post(f"/bots/{bot.slug}/settings/", form)
    assert response.status_code == 302
    html = owner_client.get(response["Location"]).content.decode()
    saved = re.search(r'<p class="saved" role="status" id="saved">(.*?)</p>', html).group(1)
    assert saved.startswith("Saved as settings version 2.")
    assert "re-indexed" in saved
    history = html[html.index('class="history"') :]
    assert "How documents are split: By headings and paragraphs → Sentence windows" in history.replace("&gt;", ">")
    assert "Passages per answer: 5 → 8" in history
    assert "chunking_strategy" not in history
    assert 'id="saved"' not in owner_client.get(response["Location"]).content.decode()  # said once

    bot.refresh_from_db()
    response = owner_client.post(f"/bots/{bot.slug}/settings/", settings_form(bot))
    assert "Nothing changed" in owner_client.get(response["Location"]).content.decode()
