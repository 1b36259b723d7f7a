"""Retrieval's public entry points: embeddings, hybrid search, and answers with traces.

The application layer calls only these functions. Search runs a vector query
(pgvector HNSW, cosine) and a keyword query (Postgres full-text) over the bot's
chunks and fuses the two rankings with reciprocal-rank fusion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection, transaction
from django.db.models import F
from pgvector.django import CosineDistance

from documents.models import Chunk
from retrieval.answerers import Answer, ScoredChunk, extractive_answer
from retrieval.embedders import Embedder, get_embedder
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.models import Trace

# How many candidates each of the two searches contributes before fusion.
CANDIDATES_PER_SEARCH = 40
EXTRACTIVE_PROVIDER = "extractive"


def embedder() -> Embedder:
    """The embedding model configured for this installation, loaded once per process."""
    return get_embedder(settings.DOCENT_EMBEDDING_MODEL)


def warm_up() -> None:
    """Load the embedding model ahead of the first request."""
    embed_texts(["warm-up"])


def embed_texts(texts: list[str]) -> np.ndarray:
    return embedder().encode(texts, batch_size=settings.DOCENT_EMBEDDING_BATCH_SIZE)


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


def search(bot, query: str, k: int = 8, document_ids: list[int] | None = None) -> SearchResult:
    """The `k` best chunks of `bot` for `query`, fused from vector and keyword search."""
    watch = _Stopwatch()
    query_vector = embed_texts([query])[0]
    watch.lap("embed")

    chunks = Chunk.objects.filter(bot_id=bot.id)
    if document_ids:
        chunks = chunks.filter(document_id__in=document_ids)

    with transaction.atomic():
        # pgvector ≥ 0.8: keep scanning the HNSW index until enough rows pass the bot filter.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        vector_hits = list(
            chunks.annotate(distance=CosineDistance("embedding", query_vector))
            .order_by("distance")
            .values_list("id", "distance")[:CANDIDATES_PER_SEARCH]
        )
    watch.lap("vector")

    tsquery = SearchQuery(query, search_type="websearch", config="english")
    keyword_hits = list(
        chunks.filter(search_vector=tsquery)
        .annotate(rank=SearchRank(F("search_vector"), tsquery, normalization=32))
        .order_by("-rank", "id")
        .values_list("id", "rank")[:CANDIDATES_PER_SEARCH]
    )
    watch.lap("keyword")

    vector_scores = {chunk_id: 1.0 - float(distance) for chunk_id, distance in vector_hits}
    keyword_scores = {chunk_id: float(rank) for chunk_id, rank in keyword_hits}
    fused = reciprocal_rank_fusion([list(vector_scores), list(keyword_scores)])[:k]
    watch.lap("fuse")

    rows = Chunk.objects.select_related("document").in_bulk([chunk_id for chunk_id, _ in fused])
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
        for chunk_id, score in fused
        if chunk_id in rows
    ]
    watch.lap("load")
    return SearchResult(chunks=results, query_vector=query_vector, timings_ms=watch.timings_ms)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def answer(bot, question: str) -> tuple[Answer, Trace]:
    """Answer `question` from `bot`'s documents and store a trace of how.

    The built-in extractive answerer quotes the retrieved sentences most similar to
    the question, cited; below the bot's refusal threshold it says the documents
    don't cover the question instead of guessing.
    """
    started = time.perf_counter()
    found = search(bot, question, k=bot.top_k)
    generate_started = time.perf_counter()
    result = extractive_answer(found.query_vector, found.chunks, encode=embed_texts, threshold=bot.refusal_threshold)
    finished = time.perf_counter()
    timings_ms = {
        **found.timings_ms,
        "generate": round((finished - generate_started) * 1000, 2),
        "total": round((finished - started) * 1000, 2),
    }
    cited_ids = {citation.chunk.chunk_id for citation in result.citations}
    trace = Trace.objects.create(
        bot_id=bot.id,
        question=question,
        rewritten_question=question,
        answer=result.text,
        chunks=[
            {
                "chunk_id": chunk.chunk_id,
                "document_id": chunk.document_id,
                "document_name": chunk.document_name,
                "page": chunk.page,
                "score": chunk.score,
                "vector_score": chunk.vector_score,
                "keyword_score": chunk.keyword_score,
                "cited": chunk.chunk_id in cited_ids,
            }
            for chunk in found.chunks
        ],
        provider=EXTRACTIVE_PROVIDER,
        model=settings.DOCENT_EMBEDDING_MODEL,
        timings_ms=timings_ms,
        tokens={"best_similarity": round(result.best_similarity, 4)},
        config_version=bot.config_version,
        refused=result.refused,
    )
    return result, trace


def traces_of_bots(bots):
    """Traces of any bot in the queryset `bots` (the caller's visibility filter)."""
    return Trace.objects.filter(bot__in=bots)
