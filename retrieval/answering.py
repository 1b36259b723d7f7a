"""Answers: the standalone question, search, generation (LLM or extractive), and the stored trace.

Also the trace views the application layer filters by, and the optional OpenTelemetry export.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from retrieval.answerers import Answer, stream_extractive_answer
from retrieval.embedding import embed_queries, embedding_model_for
from retrieval.llms import LLMError
from retrieval.models import Trace
from retrieval.search import search
from retrieval.sentences import stored_vectors

logger = logging.getLogger(__name__)

EXTRACTIVE_PROVIDER = "extractive"


@dataclass
class AnswerEvent:
    """One step of a streamed answer: a piece of text, or the finished answer with its trace."""

    kind: str  # "token" or "done"
    text: str = ""
    answer: Answer | None = None
    trace: Trace | None = None


def _approximate_tokens(text: str) -> int:
    # Prompt budgets only need to be safe, not exact: ~4 characters per token for English.
    return len(text) // 4 + 1


def answer_stream(bot, question: str, history: list[tuple[str, str]] = (), asked_by=None, origin: str = "chat"):
    """Answer `question` from `bot`'s documents as a stream of AnswerEvents, then store a trace.

    With an LLM provider the bot's prompt template gets numbered context blocks, the
    answer streams token by token, and [n] markers that point at no block are dropped
    (and logged). Without one, the built-in extractive answerer quotes the retrieved
    sentences that answer the question, cited, streamed a sentence at a time as each is
    chosen, or says the documents don't cover it.
    Follow-up questions are first rewritten to stand alone using `history`. `origin`
    ("chat" or "evaluation") is recorded on the trace.
    """
    from retrieval import prompts

    started = time.perf_counter()
    timings: dict[str, float] = {}
    rewritten = _standalone_question(bot, question, history)
    timings["rewrite"] = _ms(started)
    found = search(bot, rewritten, k=bot.top_k)
    timings.update(found.timings_ms)
    generate_started = time.perf_counter()
    model = found.model or embedding_model_for(bot)
    prompt_text, tokens, provider_name, model_name = "", {}, EXTRACTIVE_PROVIDER, model.name

    if bot.provider_id:
        provider_name, model_name = bot.provider.name, bot.llm_model or (bot.provider.model_names or [""])[0]
        template = bot.prompt_template or prompts.DEFAULT_TEMPLATE
        budget = bot.provider.context_tokens - bot.max_tokens
        prompt = prompts.fit_prompt(
            template, bot.instructions, rewritten, found.chunks, list(history), budget, _approximate_tokens
        )
        prompt_text = "\n\n".join(f"[{message['role']}]\n{message['content']}" for message in prompt.messages)
        try:
            stream = _llm_for(bot).stream(prompt.messages, temperature=bot.temperature, max_tokens=bot.max_tokens)
            for delta in stream:
                timings.setdefault("first_token", _ms(started))
                yield AnswerEvent("token", delta)
            text, citations, dropped = prompts.map_citations(stream.text, prompt.chunks)
            if dropped:
                logger.warning("Bot %s: dropped citations %s that point at no context block", bot.pk, dropped)
            completion = stream.completion
            tokens = {"prompt": completion.prompt_tokens, "completion": completion.completion_tokens}
            refused = not citations
            result = Answer(text=text, citations=citations, refused=refused)
        except LLMError as exc:
            result = Answer(text=f"The language model could not answer: {exc.server_message}", refused=True)
            tokens = {"error": str(exc)}
            yield AnswerEvent("token", result.text)
    else:
        sentences = stream_extractive_answer(
            found.query_vector,
            found.chunks,
            # Only for chunks whose sentence vectors are not stored yet (retrieval.sentences).
            encode=lambda texts: embed_queries(texts, model),
            threshold=bot.refusal_threshold,
            question=rewritten,
            known=stored_vectors(found.chunks, model.dimensions),
        )
        result = yield from _sentence_events(sentences, timings, started)
        tokens = {"best_similarity": round(result.best_similarity, 4)}
    timings["generate"] = _ms(generate_started)
    timings["total"] = _ms(started)

    cited_ids = {citation.chunk.chunk_id for citation in result.citations}
    trace = Trace.objects.create(
        bot_id=bot.id,
        asked_by=asked_by,
        origin=origin,
        question=question,
        rewritten_question=rewritten,
        answer=result.text,
        chunks=[
            {
                "chunk_id": chunk.chunk_id,
                "document_id": chunk.document_id,
                "document_name": chunk.document_name,
                "page": chunk.page,
                "heading_path": chunk.heading_path,
                "score": chunk.score,
                "vector_score": chunk.vector_score,
                "keyword_score": chunk.keyword_score,
                "cited": chunk.chunk_id in cited_ids,
            }
            for chunk in found.chunks
        ],
        prompt=prompt_text,
        provider=provider_name,
        model=model_name,
        timings_ms=timings,
        tokens=tokens,
        config_version=bot.config_version,
        refused=result.refused,
    )
    export_trace(trace)
    yield AnswerEvent("done", answer=result, trace=trace)


def answer(
    bot, question: str, history: list[tuple[str, str]] = (), asked_by=None, origin: str = "chat"
) -> tuple[Answer, Trace]:
    """The whole answer at once (see answer_stream)."""
    for event in answer_stream(bot, question, history, asked_by, origin):
        if event.kind == "done":
            return event.answer, event.trace
    raise RuntimeError("answer_stream ended without an answer")


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _sentence_events(sentences, timings: dict[str, float], started: float):
    """Each sentence of the extractive answer as a "token" event the moment it is chosen; returns the Answer."""
    while True:
        try:
            sentence = next(sentences)
        except StopIteration as finished:
            return finished.value
        timings.setdefault("first_token", _ms(started))
        yield AnswerEvent("token", sentence)


def _standalone_question(bot, question: str, history) -> str:
    """The question rewritten to stand alone: by the bot's LLM when it has one, else by rule."""
    from retrieval import prompts

    if not history:
        return question
    if bot.provider_id:
        try:
            completion = _llm_for(bot).complete(
                prompts.build_rewrite_messages(question, list(history)), temperature=0.0, max_tokens=100
            )
            rewritten = completion.text.strip()
            if rewritten:
                return rewritten
        except LLMError as exc:
            logger.warning("Question rewrite by LLM failed, using the rule: %s", exc)
    return prompts.rewrite_followup(question, list(history))


def _llm_for(bot):
    from retrieval.llms import OpenAICompatibleLLM

    provider = bot.provider
    model = bot.llm_model or (provider.model_names or [""])[0]
    return OpenAICompatibleLLM(provider.base_url, provider.api_key, model)


def export_trace(trace: Trace) -> None:
    """Send the trace to OpenTelemetry when OTEL_EXPORTER_OTLP_ENDPOINT is set (optional dependency)."""
    if not settings.DOCENT_OTEL_ENDPOINT:
        return
    tracer = _otel_tracer()
    if tracer is None:
        return
    with tracer.start_as_current_span("docent.answer") as span:
        span.set_attribute("docent.trace_id", trace.pk)
        span.set_attribute("docent.bot_id", trace.bot_id)
        span.set_attribute("docent.provider", trace.provider)
        span.set_attribute("docent.refused", trace.refused)
        for stage, milliseconds in trace.timings_ms.items():
            span.set_attribute(f"docent.timings_ms.{stage}", milliseconds)


@functools.cache
def _otel_tracer():
    """An OTLP/HTTP tracer for OTEL_EXPORTER_OTLP_ENDPOINT, or None if the SDK isn't installed."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-sdk and "
            "opentelemetry-exporter-otlp-proto-http are not installed; traces stay in Docent only"
        )
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "docent"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads the endpoint from the env
    return provider.get_tracer("docent.retrieval")


def traces_of_bots(bots, *, include_evaluation: bool = False):
    """Traces of any bot in the queryset `bots` (the caller's visibility filter).

    People's questions only, unless `include_evaluation`: an evaluation run's answers
    are measurements, not use of the bot.
    """
    traces = Trace.objects.filter(bot__in=bots)
    return traces if include_evaluation else traces.exclude(origin=Trace.Origin.EVALUATION)


SLOW_ANSWER_MS = 3000
TRACE_FILTERS = {
    "slow": f"slower than {SLOW_ANSWER_MS / 1000:g} s",
    "uncited": "no citations",
    "refused": "said the documents don't cover it",
    "disliked": "thumbs down",
}


def filter_traces(traces, name: str):
    """Narrow a trace queryset by one of TRACE_FILTERS (unknown names leave it as is)."""
    if name == "slow":
        return traces.filter(timings_ms__total__gt=SLOW_ANSWER_MS)
    if name == "uncited":
        return traces.exclude(chunks__contains=[{"cited": True}])
    if name == "refused":
        return traces.filter(refused=True)
    if name == "disliked":
        return traces.filter(message__feedback__rating=-1)
    return traces
