"""Answers: LLM providers over real HTTP, citations mapped and checked, streaming, follow-ups, traces."""

import json
import time

import pytest

from bots import services as bots
from retrieval import services
from retrieval.models import LLMProvider
from tests.chat_server import API_KEY, MODEL
from tests.conftest import answer_with_chat_server

pytestmark = pytest.mark.django_db

HANDBOOK = {
    "vacation.txt": "Full-time employees receive 25 days of paid vacation per calendar year.",
    "laptop.txt": "Report a lost laptop to the service desk within one hour, at extension 4455.",
}


@pytest.fixture
def llm_bot(bot, chat_server, index_texts):
    index_texts(bot, HANDBOOK)
    return answer_with_chat_server(bot, chat_server)


def test_llm_answer_keeps_valid_citations_and_drops_invented_ones(llm_bot, chat_server, caplog):
    chat_server.reply = "You get 25 days of paid vacation [1]. Ask HR about sabbaticals [7]."
    answer, trace = services.answer(llm_bot, "How many vacation days do I get?")
    assert answer.text == "You get 25 days of paid vacation [1]. Ask HR about sabbaticals."
    assert [(c.n, c.chunk.document_name) for c in answer.citations] == [(1, "vacation.txt")]
    assert "dropped citations [7]" in caplog.text

    sent = chat_server.requests[-1]["body"]
    assert sent["model"] == MODEL
    assert "[1] (vacation.txt, page 1)" in sent["messages"][0]["content"]
    assert sent["messages"][-1]["content"] == "How many vacation days do I get?"
    assert trace.provider == "local" and trace.model == MODEL
    assert trace.prompt.startswith("[system]")
    assert trace.tokens["prompt"] > 0 and trace.tokens["completion"] > 0
    assert [chunk["cited"] for chunk in trace.chunks if chunk["document_name"] == "vacation.txt"] == [True]
    assert {"embed", "candidates", "fuse", "first_token", "generate", "total"} <= set(trace.timings_ms)


def test_api_key_is_encrypted_at_rest(llm_bot):
    provider = LLMProvider.objects.get(name="local")
    assert API_KEY not in provider.api_key_encrypted
    assert provider.api_key == API_KEY


def test_streaming_delivers_the_first_token_before_the_last_is_produced(llm_bot, chat_server):
    chat_server.reply = "One two three four five six [1]."
    chat_server.chunk_delay = 0.25
    arrivals = []
    started = time.perf_counter()
    for event in services.answer_stream(llm_bot, "How many vacation days?"):
        arrivals.append((event.kind, time.perf_counter() - started))
    tokens = [at for kind, at in arrivals if kind == "token"]
    assert len(tokens) == 7
    # Six gaps of 0.25 s separate the first and the last token: the first can't have waited for the last.
    assert tokens[-1] - tokens[0] > 1.2
    assert arrivals[-1][0] == "done"


def test_chat_api_streams_server_sent_events(llm_bot, chat_server, owner_api):
    chat_server.reply = "Twenty-five days [1]."
    chat_server.chunk_delay = 0.2
    response = owner_api.post(
        f"/api/v1/bots/{llm_bot.id}/chat", {"message": "Vacation days?", "stream": True}, "application/json"
    )
    assert response["Content-Type"] == "text/event-stream"
    received = []
    started = time.perf_counter()
    for piece in response.streaming_content:
        received.append((piece.decode(), time.perf_counter() - started))
    events = [text for text, _ in received]
    assert events[0].startswith("event: token\ndata: ")
    assert received[-1][1] - received[0][1] > 0.3  # tokens arrived over time, not in one lump
    done = events[-1]
    assert done.startswith("event: done\n")
    body = json.loads(done.split("data: ", 1)[1])
    assert body["answer"] == "Twenty-five days [1]."
    assert body["citations"][0]["document_name"] == "vacation.txt"
    assert owner_api.get(f"/api/v1/traces/{body['trace_id']}").json()["provider"] == "local"


def test_a_provider_that_fails_gives_a_readable_answer_not_an_error(llm_bot):
    provider = llm_bot.provider
    provider.base_url = "http://127.0.0.1:9/v1"
    provider.save()
    answer, trace = services.answer(llm_bot, "How many vacation days?")
    assert answer.text.startswith("The language model could not answer:")
    assert answer.refused and trace.refused


def test_follow_up_questions_are_rewritten_with_the_history(bot, owner, index_texts):
    index_texts(bot, HANDBOOK)
    first = bots.post_question(bot, owner, "How many vacation days do full-time employees get?")
    list(bots.answer_stream(first))
    follow_up = bots.post_question(bot, owner, "And part-time?", first.conversation_id)
    reply = [event for event in bots.answer_stream(follow_up) if event.kind == "done"][0].message
    assert "vacation" in reply.trace.rewritten_question.lower()
    assert reply.trace.question == "And part-time?"
    assert reply.in_reply_to == follow_up


def test_traces_are_visible_to_the_asker_and_the_owner_only(bot, owner, member, outsider, index_texts):
    from django.test import Client

    from bots.models import ApiToken

    index_texts(bot, HANDBOOK)
    _, reply = bots.ask(bot, owner, "How many vacation days?")
    for user, status in [(owner, 200), (outsider, 404), (member, 404)]:
        _, key = ApiToken.issue(user)
        client = Client(headers={"Authorization": f"Bearer {key}"})
        assert client.get(f"/api/v1/traces/{reply.trace_id}").status_code == status
