"""The OpenAI-compatible endpoint, driven by the official `openai` client over real HTTP."""

from __future__ import annotations

import json

import openai
import pytest
from django.test import Client

from bots import services
from bots.models import ApiToken, Bot
from retrieval.models import Trace
from tests.conftest import index_texts_into as index_texts

live = pytest.mark.django_db(transaction=True)

FULL_TIME = "Full-time employees receive 25 days of paid vacation per calendar year."
PART_TIME = "Part-time employees receive 12 days of paid vacation, prorated to their hours."
QUESTION = "How many vacation days do full-time employees get?"


def token_for(user) -> str:
    return ApiToken.issue(user)[1]


def client_for(live_server, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key=token_for(user), max_retries=0)


@pytest.fixture
def handbook(bot):
    chunk_ids = index_texts(bot, {"full-time.txt": FULL_TIME, "part-time.txt": PART_TIME})
    return bot, chunk_ids


@live
def test_models_list_shows_the_callers_bots_only(live_server, owner, member, outsider, bot):
    services.share_bot(bot, username=member.username)
    outsiders_bot = Bot.objects.create(owner=outsider, name="Oscar's notes")

    def model_ids(user):
        return [model.id for model in client_for(live_server, user).models.list()]

    assert model_ids(owner) == [bot.slug]
    assert model_ids(member) == [bot.slug]
    assert model_ids(outsider) == [outsiders_bot.slug]
    [listed] = client_for(live_server, member).models.list().data
    assert (listed.object, listed.owned_by) == ("model", "olivia")
    assert listed.created == int(bot.created_at.timestamp())
    assert client_for(live_server, member).models.retrieve(bot.slug).id == bot.slug
    with pytest.raises(openai.NotFoundError):
        client_for(live_server, outsider).models.retrieve(bot.slug)


@live
def test_completion_answers_with_cited_text_citations_and_trace(live_server, owner, handbook):
    bot, chunk_ids = handbook
    completion = client_for(live_server, owner).chat.completions.create(
        model=bot.slug, messages=[{"role": "user", "content": QUESTION}], temperature=0.0, max_tokens=50
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == bot.slug
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert "25 days" in choice.message.content
    assert "[1]" in choice.message.content
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    extra = completion.model_extra
    first = extra["citations"][0]
    assert first["n"] == 1
    assert first["chunk_id"] == chunk_ids["full-time.txt"]
    assert (first["document_name"], first["page"]) == ("full-time.txt", 1)
    assert "25 days" in first["snippet"]
    assert "passage" not in first
    assert isinstance(extra["trace_id"], int)


@live
def test_streamed_deltas_add_up_to_the_non_streamed_answer(live_server, owner, handbook):
    bot, _ = handbook
    client = client_for(live_server, owner)
    messages = [{"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(model=bot.slug, messages=messages)

    chunks = list(client.chat.completions.create(model=bot.slug, messages=messages, stream=True))
    assert len(chunks) >= 3  # the role, the answer (a chunk per sentence), the finish with citations
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == whole.choices[0].message.content
    assert [chunk.choices[0].finish_reason for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["citations"] == whole.model_extra["citations"]
    assert isinstance(last.model_extra["trace_id"], int)
    assert last.model_extra["trace_id"] != whole.model_extra["trace_id"]  # each answer has its own trace


@live
def test_usage_chunk_comes_last_when_asked_for(live_server, owner, handbook):
    bot, _ = handbook
    stream = client_for(live_server, owner).chat.completions.create(
        model=bot.slug,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    *answer, usage_chunk = list(stream)
    assert answer[-1].choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage.total_tokens > 0


@live
def test_member_may_ask_but_outsider_and_unknown_models_are_not_found(live_server, owner, member, outsider, handbook):
    bot, _ = handbook
    services.share_bot(bot, username=member.username)
    messages = [{"role": "user", "content": QUESTION}]

    answer = client_for(live_server, member).chat.completions.create(model=bot.slug, messages=messages)
    assert "25 days" in answer.choices[0].message.content
    with pytest.raises(openai.NotFoundError) as outsider_error:
        client_for(live_server, outsider).chat.completions.create(model=bot.slug, messages=messages)
    with pytest.raises(openai.NotFoundError) as unknown_error:
        client_for(live_server, owner).chat.completions.create(model="no-such-bot", messages=messages)
    # The same answer either way, so an outsider cannot tell that the bot exists.
    assert outsider_error.value.code == unknown_error.value.code == "model_not_found"
    assert (
        outsider_error.value.body["message"]
        == f"The model `{bot.slug}` does not exist or you do not have access to it."
    )
    with pytest.raises(openai.NotFoundError):
        client_for(live_server, outsider).chat.completions.create(model=bot.slug, messages=messages, stream=True)


@live
def test_bad_or_revoked_key_is_an_authentication_error(live_server, owner, bot):
    from django.utils import timezone

    bad = openai.OpenAI(base_url=live_server.url + "/v1", api_key="dct_not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as error:
        bad.models.list()
    assert error.value.code == "invalid_api_key"
    token, key = ApiToken.issue(owner)
    token.revoked_at = timezone.now()
    token.save()
    revoked = openai.OpenAI(base_url=live_server.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        revoked.chat.completions.create(model=bot.slug, messages=[{"role": "user", "content": QUESTION}])


@live
def test_follow_up_is_rewritten_with_the_history(live_server, owner, handbook):
    bot, chunk_ids = handbook
    key = token_for(owner)
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key=key, max_retries=0)
    first = client.chat.completions.create(model=bot.slug, messages=[{"role": "user", "content": QUESTION}])
    follow_up = client.chat.completions.create(
        model=bot.slug,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": [{"type": "text", "text": "And part-time employees?"}]},
        ],
    )
    assert "12 days" in follow_up.choices[0].message.content
    # The extractive answerer quotes both passages either way; the trace shows the history was used.
    assert chunk_ids["part-time.txt"] in [citation["chunk_id"] for citation in follow_up.model_extra["citations"]]

    trace_id = follow_up.model_extra["trace_id"]
    trace = Client(headers={"Authorization": f"Bearer {key}"}).get(f"/api/v1/traces/{trace_id}").json()
    assert trace["question"] == "And part-time employees?"
    assert trace["rewritten_question"] == "vacation days: And part-time employees?"
    alone = client.chat.completions.create(
        model=bot.slug, messages=[{"role": "user", "content": "And part-time employees?"}]
    )
    trace = Client(headers={"Authorization": f"Bearer {key}"}).get(f"/api/v1/traces/{alone.model_extra['trace_id']}")
    assert trace.json()["rewritten_question"] == "And part-time employees?"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("{not json", None),
        ("[]", None),
        ({"messages": [{"role": "user", "content": QUESTION}]}, "model"),
        ({"model": "handbook"}, "messages"),
        ({"model": "handbook", "messages": "hi"}, "messages"),
        ({"model": "handbook", "messages": [{"role": "system", "content": "Be brief."}]}, "messages"),
        ({"model": "handbook", "messages": [{"role": "user", "content": "   "}]}, "messages"),
        ({"model": "handbook", "messages": [{"role": "user", "content": 42}]}, "messages[0]"),
        ({"model": "handbook", "messages": [{"role": "user", "content": QUESTION}], "stream": "yes"}, "stream"),
    ],
)
def test_malformed_requests_are_400_in_openai_error_shape(owner, bot, body, param):
    client = Client(headers={"Authorization": f"Bearer {token_for(owner)}"})
    raw = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/v1/chat/completions", raw, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.django_db
def test_missing_key_and_wrong_method_are_openai_errors(owner, bot):
    anonymous = Client()
    missing = anonymous.post("/v1/chat/completions", {"model": bot.slug}, content_type="application/json")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert anonymous.get("/v1/models").status_code == 401
    wrong_method = Client(headers={"Authorization": f"Bearer {token_for(owner)}"}).get("/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


@live
def test_streams_under_asgi_as_in_production(owner, handbook):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    bot, _ = handbook
    key = token_for(owner)
    body = {"model": bot.slug, "messages": [{"role": "user", "content": QUESTION}], "stream": True}

    async def read_stream():
        response = await AsyncClient().post(
            "/v1/chat/completions", body, content_type="application/json", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.is_async
        return [part.decode() async for part in response.streaming_content]

    parts = async_to_sync(read_stream)()
    assert parts[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(part.removeprefix("data: ")) for part in parts[:-1]]
    assert "25 days" in "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert chunks[-1]["citations"]


@live
def test_a_failure_mid_stream_reaches_the_client_as_an_error(live_server, owner, bot, monkeypatch):
    from retrieval import services as retrieval

    def failing_answer_stream(bot, question, history, asked_by=None):
        yield retrieval.AnswerEvent("token", "Full-time ")
        raise RuntimeError("the database went away")

    monkeypatch.setattr(retrieval, "answer_stream", failing_answer_stream)
    stream = client_for(live_server, owner).chat.completions.create(
        model=bot.slug, messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    with pytest.raises(openai.APIError, match="The answer failed"):
        list(stream)


def _chat(text: str, *earlier: dict) -> dict:
    return {"model": "handbook", "messages": [*earlier, {"role": "user", "content": text}]}


NESTED = '{"model": "handbook", "messages": ' + "[" * 100_000 + "]" * 100_000 + "}"
TOO_LONG = services.QUESTION_MAX_CHARS + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (NESTED, 400, None),
        (_chat("How many\x00 days?"), 400, "nul_character"),
        ({**_chat(QUESTION), "model": "hand\x00book"}, 400, "nul_character"),
        (_chat("Hi", {"role": "assistant", "content": "a\x00"}), 400, "nul_character"),
        (_chat("x" * TOO_LONG), 400, "context_length_exceeded"),
        (_chat("vacation days " * 75_000), 400, "context_length_exceeded"),
        (_chat("Hi", *[{"role": "assistant", "content": "y" * 4000}] * 10), 400, "context_length_exceeded"),
        (_chat("Hi", *[{"role": "user", "content": "Hi"}] * 200), 400, None),
        ({"model": "handbook", "messages": [{"role": ["user"], "content": "Hi"}]}, 400, None),
        ({**_chat(QUESTION), "stream_options": 5}, 400, None),
        ({**_chat(QUESTION), "model": "no-such-bot"}, 404, "model_not_found"),
    ],
)
def test_every_refused_chat_request_is_an_openai_error_in_json(owner, bot, body, status, code):
    client = Client(headers={"Authorization": f"Bearer {token_for(owner)}"})
    raw = body if isinstance(body, str) else json.dumps(body)
    assert_openai_error(client.post("/v1/chat/completions", raw, content_type="application/json"), status, code)
    assert not Trace.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/models/%00", 400, "nul_character"),
        ("/v1/models/no-such-bot", 404, "model_not_found"),
        ("/v1/no/such/endpoint", 404, "unknown_url"),
    ],
)
def test_every_refused_read_on_v1_is_an_openai_error_in_json(owner, bot, path, status, code):
    client = Client(headers={"Authorization": f"Bearer {token_for(owner)}"})
    assert_openai_error(client.get(path), status, code)


def assert_openai_error(response, status: int, code: str | None, error_type: str = "invalid_request_error"):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    if code:
        assert error["code"] == code


@pytest.mark.django_db
def test_a_wrong_or_revoked_key_on_a_write_is_401_with_bearer(owner, bot):
    wrong = Client(headers={"Authorization": "Bearer dct_not-a-real-key"})
    response = wrong.post("/v1/chat/completions", _chat(QUESTION), content_type="application/json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db
def test_an_unexpected_failure_is_a_500_in_openai_error_shape_not_an_html_page(owner, bot, monkeypatch):
    from retrieval import services as retrieval

    def broken_answer_stream(bot, question, history, asked_by=None):
        raise RuntimeError("something we did not foresee")
        yield  # a generator, like the real one

    monkeypatch.setattr(retrieval, "answer_stream", broken_answer_stream)
    client = Client(headers={"Authorization": f"Bearer {token_for(owner)}"}, raise_request_exception=False)
    body = {**_chat(QUESTION), "model": bot.slug}
    response = client.post("/v1/chat/completions", body, content_type="application/json")
    assert_openai_error(response, 500, None, error_type="server_error")
    assert "foresee" not in response.json()["error"]["message"]
