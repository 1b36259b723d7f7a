"""OpenAICompatibleLLM against a real HTTP server on localhost that speaks the chat-completions protocol.

The server answers "Echo: <last message>", so a test can see its prompt got through,
and counts tokens as whitespace-separated words.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.llms import CompletionStream, LLMError, OpenAICompatibleLLM
from tests.chat_server import API_KEY, MODEL


@pytest.fixture
def server(chat_server):
    return chat_server


@pytest.fixture
def llm(server):
    model = OpenAICompatibleLLM(server.base_url, API_KEY, MODEL, timeout=10)
    yield model
    model.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


QUESTION = [
    {"role": "system", "content": "Answer from the context."},
    {"role": "user", "content": "How many vacation days?"},
]


def test_completion_returns_the_text_and_the_servers_token_usage(server, llm):
    completion = llm.complete(QUESTION, temperature=0.2, max_tokens=50)

    assert completion.text == "Echo: How many vacation days?"
    assert completion.prompt_tokens == 8
    assert completion.completion_tokens == 5
    assert completion.model == MODEL
    assert completion.finish_reason == "stop"
    sent = server.requests[0]["body"]
    assert sent["messages"] == QUESTION
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50
    assert "stream" not in sent or sent["stream"] is False


def test_stream_yields_text_deltas_and_records_usage(server, llm):
    stream = llm.stream(QUESTION, temperature=0, max_tokens=50)
    deltas = list(stream)

    assert deltas == ["Echo:", " How", " many", " vacation", " days?"]
    assert stream.completion.text == "Echo: How many vacation days?"
    assert (stream.completion.prompt_tokens, stream.completion.completion_tokens) == (8, 5)
    assert stream.completion.finish_reason == "stop"
    assert server.requests[0]["body"]["stream_options"] == {"include_usage": True}


def test_stream_delivers_the_first_token_long_before_the_last(server, llm):
    server.chunk_delay = 0.5
    started = time.perf_counter()
    arrivals = [time.perf_counter() - started for _ in llm.stream(QUESTION, temperature=0, max_tokens=50)]

    # Five words with half a second between them: an unbuffered stream spreads the
    # arrivals over two seconds; a buffered one delivers them all at the end.
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] > 1.5
    assert arrivals[0] < arrivals[-1] / 2


def test_stream_tolerates_a_server_that_ignores_the_usage_option(server, llm):
    server.reports_stream_usage = False
    stream = llm.stream(QUESTION, temperature=0, max_tokens=50)

    assert "".join(stream) == "Echo: How many vacation days?"
    assert stream.completion.prompt_tokens is None
    assert stream.completion.completion_tokens is None


def test_stream_retries_without_the_usage_option_when_the_server_rejects_it(server, llm):
    server.rejects_stream_options = True

    first = llm.stream(QUESTION, temperature=0, max_tokens=50)
    assert "".join(first) == "Echo: How many vacation days?"
    assert first.completion.prompt_tokens is None
    second = llm.stream(QUESTION, temperature=0, max_tokens=50)
    assert "".join(second) == "Echo: How many vacation days?"

    sent = [request["body"] for request in server.requests]
    assert ["stream_options" in body for body in sent] == [True, False, False]


def test_closing_a_stream_early_stops_it(server, llm):
    server.chunk_delay = 0.2
    stream = llm.stream(QUESTION, temperature=0, max_tokens=50)
    assert isinstance(stream, CompletionStream)
    assert next(stream) == "Echo:"
    stream.close()

    assert list(stream) == []
    assert stream.completion.text == "Echo:"


def test_wrong_api_key_raises_the_servers_message_and_a_hint(server):
    llm = OpenAICompatibleLLM(server.base_url, "sk-wrong", MODEL)

    with pytest.raises(LLMError) as raised:
        llm.complete(QUESTION, temperature=0, max_tokens=10)

    error = raised.value
    assert error.status_code == 401
    assert not error.retryable
    assert "Incorrect API key provided." in error.server_message
    assert "API key" in error.hint
    assert str(error) == f"{error.server_message}\n{error.hint}"


def test_wrong_api_key_fails_a_stream_before_any_text(server):
    llm = OpenAICompatibleLLM(server.base_url, "sk-wrong", MODEL)

    with pytest.raises(LLMError, match="Incorrect API key provided."):
        llm.stream(QUESTION, temperature=0, max_tokens=10)


def test_unknown_model_names_the_model(server):
    llm = OpenAICompatibleLLM(server.base_url, API_KEY, "no-such-model")

    with pytest.raises(LLMError) as raised:
        llm.complete(QUESTION, temperature=0, max_tokens=10)

    assert raised.value.status_code == 404
    assert "The model 'no-such-model' does not exist." in raised.value.server_message
    assert "'no-such-model'" in raised.value.hint


def test_url_without_the_api_root_quotes_the_plain_text_answer_and_suggests_v1(server):
    llm = OpenAICompatibleLLM(server.base_url.removesuffix("/v1"), API_KEY, MODEL)

    ok, message = llm.test_connection()

    assert not ok
    assert "404" in message
    assert "Not Found" in message
    assert "/v1" in message


def test_refused_connection_is_reported_with_the_url(server):
    base_url = f"http://127.0.0.1:{unused_port()}/v1"
    llm = OpenAICompatibleLLM(base_url, API_KEY, MODEL, max_retries=0)

    with pytest.raises(LLMError) as raised:
        llm.complete(QUESTION, temperature=0, max_tokens=10)

    assert raised.value.retryable
    assert "Connection error" in raised.value.server_message
    assert "refused" in raised.value.server_message.lower()
    assert base_url in raised.value.hint


def test_slow_server_times_out_with_a_hint(server):
    server.response_delay = 2
    llm = OpenAICompatibleLLM(server.base_url, API_KEY, MODEL, timeout=0.5, max_retries=0)

    with pytest.raises(LLMError) as raised:
        llm.complete(QUESTION, temperature=0, max_tokens=10)

    assert raised.value.retryable
    assert "timed out" in raised.value.server_message.lower()
    assert "0.5 s" in raised.value.hint


def test_connection_test_succeeds_against_a_working_server(server, llm):
    ok, message = llm.test_connection()

    assert ok
    assert MODEL in message
    assert len(server.requests) == 1


def test_connection_test_reports_a_wrong_key_with_the_servers_message(server):
    ok, message = OpenAICompatibleLLM(server.base_url, "sk-wrong", MODEL).test_connection()

    assert not ok
    assert "Incorrect API key provided." in message
    assert "check the key" in message


def test_connection_test_reports_a_server_that_is_not_running():
    started = time.perf_counter()
    ok, message = OpenAICompatibleLLM(f"http://127.0.0.1:{unused_port()}/v1", API_KEY, MODEL).test_connection()

    assert not ok
    assert "Connection error" in message
    # No retry backoff: the admin's button answers at once.
    assert time.perf_counter() - started < 5


def test_empty_api_key_sends_a_placeholder_not_the_hosts_key(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")

    OpenAICompatibleLLM(server.base_url, "", MODEL).test_connection()

    assert server.requests[0]["headers"]["authorization"] == "Bearer none"


def test_importing_the_module_does_not_import_openai():
    code = "import sys, retrieval.llms, retrieval.prompts; assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
