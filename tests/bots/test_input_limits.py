"""Hostile text: NUL characters and oversized fields are refused with a reason, never a 500.

Postgres text cannot hold NUL (0x00), so any that reached a query was a database error;
free-text fields had no length limit, so a 2 MB bot description was accepted and shown
on every page. Each route that takes text from a user is listed once below.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from bots import services
from bots.models import ApiToken, Bot, BotShare, Conversation, Feedback, Message
from retrieval.services import keyword_search

pytestmark = pytest.mark.django_db

NUL = "a\x00b"


@pytest.fixture
def answered(bot, owner):
    """A conversation of the owner's with one question and its answer, made without the pipeline."""
    conversation = Conversation.objects.create(bot=bot, user=owner, title="Vacation")
    question = Message.objects.create(conversation=conversation, role="user", text="How many days?")
    answer = Message.objects.create(conversation=conversation, role="assistant", text="25.", in_reply_to=question)
    return conversation, answer


def api_requests(bot, conversation, answer, text):
    """(method, path, JSON body) of every API route that stores or searches text, with `text` in one field."""
    return [
        ("post", "/api/v1/bots", {"name": text}),
        ("post", "/api/v1/bots", {"name": "Fine", "instructions": text}),
        ("patch", f"/api/v1/bots/{bot.id}", {"name": text}),
        ("patch", f"/api/v1/bots/{bot.id}", {"instructions": text}),
        ("patch", f"/api/v1/bots/{bot.id}", {"prompt_template": text}),
        ("patch", f"/api/v1/bots/{bot.id}", {"llm_model": text}),
        ("post", f"/api/v1/bots/{bot.id}/chat", {"message": text}),
        ("post", f"/api/v1/bots/{bot.id}/search", {"query": text}),
        ("post", f"/api/v1/bots/{bot.id}/shares", {"user": text}),
        ("post", f"/api/v1/bots/{bot.id}/shares", {"group": text}),
        ("patch", f"/api/v1/bots/{bot.id}/conversations/{conversation.id}", {"title": text}),
        ("post", f"/api/v1/messages/{answer.id}/feedback", {"rating": 1, "comment": text}),
    ]


def page_requests(bot, conversation, answer, text):
    """(method, path, form data) of every page that takes text from a person, with `text` in one field."""
    return [
        ("post", "/", {"name": text, "instructions": ""}),
        ("post", "/", {"name": "Fine", "instructions": text}),
        ("post", f"/bots/{bot.slug}/settings/", {**settings_form(bot), "instructions": text}),
        ("post", f"/bots/{bot.slug}/settings/", {**settings_form(bot), "prompt_template": text}),
        ("post", f"/bots/{bot.slug}/chat/", {"message": text}),
        ("post", f"/answers/{answer.id}/feedback/", {"rating": "up", "comment": text}),
        ("post", f"/bots/{bot.slug}/sharing/", {"who": text, "role": "user"}),
        ("post", f"/bots/{bot.slug}/conversations/{conversation.id}/rename/", {"title": text}),
        ("post", "/profile/", {"name": text}),
        ("get", f"/bots/{bot.slug}/traces/", {"filter": text}),
        ("get", f"/bots/{bot.slug}/", {"conversation": text}),
    ]


def settings_form(bot) -> dict:
    # The settings form as the page submits it, unchanged.
    fields = {name: getattr(bot, name) for name in services.SETTINGS_FIELDS}
    fields["provider"] = ""
    fields["embedding_model"] = bot.embedding_model_id or ""
    return {name: "" if value is None else value for name, value in fields.items()}


def stored_text_of(bot) -> list[str]:
    """Every free-text value the routes above could have written."""
    bots = Bot.objects.filter(owner=bot.owner)
    return [
        *bots.values_list("name", flat=True),
        *bots.values_list("instructions", flat=True),
        *bots.values_list("prompt_template", flat=True),
        *bots.values_list("llm_model", flat=True),
        *Conversation.objects.values_list("title", flat=True),
        *Message.objects.values_list("text", flat=True),
        *Feedback.objects.values_list("comment", flat=True),
        *ApiToken.objects.values_list("name", flat=True),
    ]


def test_nul_characters_in_any_api_text_field_are_a_4xx_with_a_reason(owner_api, bot, answered):
    conversation, answer = answered
    for method, path, body in api_requests(bot, conversation, answer, NUL):
        response = getattr(owner_api, method)(path, body, "application/json")
        assert 400 <= response.status_code < 500, (method, path, body, response.status_code)
        assert "NUL" in str(response.json()["detail"]), (path, body)
    assert not any("\x00" in text for text in stored_text_of(bot))
    assert not BotShare.objects.exists()


def test_nul_characters_in_any_page_field_or_query_string_are_refused_with_a_reason(client, owner, bot, answered):
    conversation, answer = answered
    client.force_login(owner)
    for method, path, data in page_requests(bot, conversation, answer, NUL):
        if method == "get":
            response = client.get(path, data)
            assert response.status_code == 400, (path, data, response.status_code)
            assert "NUL" in response.content.decode()
            continue
        # What a browser sends: a url-encoded form.
        response = client.post(path, urlencode(data), "application/x-www-form-urlencoded")
        assert response.status_code == 400, (path, data, response.status_code)
        assert "NUL" in response.content.decode(), (path, data)
        # A multipart form reaches the view, whose form or service refuses it with a message.
        response = client.post(path, data, follow=True)
        assert response.status_code < 500, (path, data, response.status_code)
        page = response.content.decode()
        assert "NUL" in page or "Null characters are not allowed" in page, (path, data)
    assert not any("\x00" in text for text in stored_text_of(bot))
    assert not ApiToken.objects.exists()


def test_nul_characters_in_a_path_are_refused_with_a_reason(owner_api):
    response = owner_api.get("/api/v1/bots/%00")
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()


def test_too_long_text_in_any_api_field_is_a_4xx_with_a_reason(owner_api, bot, answered):
    conversation, answer = answered
    too_long = "x" * 10_000
    for method, path, body in api_requests(bot, conversation, answer, too_long):
        response = getattr(owner_api, method)(path, body, "application/json")
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert "detail" in response.json()
    assert max(len(text) for text in stored_text_of(bot)) < 10_000
    bot.refresh_from_db()
    assert bot.config_version == 1


def test_too_long_text_in_any_page_field_is_a_readable_error_and_nothing_is_stored(client, owner, bot, answered):
    conversation, answer = answered
    client.force_login(owner)
    too_long = "x" * 10_000
    for method, path, data in page_requests(bot, conversation, answer, too_long):
        response = getattr(client, method)(path, data, follow=True)
        assert response.status_code < 500, (method, path)
        page = response.content.decode()
        if method == "post":
            assert "at most" in page or "Ensure this value has at most" in page, path
    assert max(len(text) for text in stored_text_of(bot)) < 10_000


def test_bot_instructions_of_two_megabytes_are_refused(owner_api, owner):
    response = owner_api.post("/api/v1/bots", {"name": "Huge", "instructions": "x" * 2_000_000}, "application/json")
    assert response.status_code in (413, 422)
    with pytest.raises(ValueError, match="at most 4,000 characters"):
        services.create_bot(owner, "Huge", "x" * 2_000_000)
    assert not Bot.objects.filter(name="Huge").exists()


def test_limits_at_the_maximum_are_accepted(owner_api, bot, answered):
    _, answer = answered
    created = owner_api.post(
        "/api/v1/bots",
        {"name": "n" * services.BOT_NAME_MAX_CHARS, "instructions": "i" * services.INSTRUCTIONS_MAX_CHARS},
        "application/json",
    )
    assert created.status_code == 201
    comment = "c" * services.FEEDBACK_COMMENT_MAX_CHARS
    given = owner_api.post(
        f"/api/v1/messages/{answer.id}/feedback", {"rating": -1, "comment": comment}, "application/json"
    )
    assert given.status_code == 201
    assert given.json()["comment"] == comment


def test_a_keyword_search_for_a_megabyte_of_words_does_not_exhaust_postgres(bot):
    from documents.models import Chunk

    chunks = Chunk.objects.filter(bot=bot)
    assert keyword_search(chunks, "vacation days " * 80_000, limit=5) == []
    assert keyword_search(chunks, '"vacation" or days ' * 60_000, limit=5) == []


def test_htmx_feedback_and_chat_show_the_reason_in_place(client, owner, bot, answered):
    _, answer = answered
    client.force_login(owner)
    htmx = {"HX-Request": "true"}
    feedback = client.post(
        f"/answers/{answer.id}/feedback/", {"rating": "down", "comment": "x" * 2001}, headers=htmx
    ).content.decode()
    assert "at most 2,000 characters" in feedback
    assert f'id="feedback-{answer.id}"' in feedback  # the form stays, to try again
    chat = client.post(f"/bots/{bot.slug}/chat/", {"message": "x" * 4001}, headers=htmx).content.decode()
    assert "at most 4000 characters" in chat
    assert not Feedback.objects.exists()
