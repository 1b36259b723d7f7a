"""Hybrid search over a bot's chunks: vector, keyword and identifier queries, fused, optionally reranked.

The vector query uses pgvector's HNSW index (cosine), the keyword queries Postgres
full-text search (ranked by BM25, retrieval.keyword); reciprocal-rank fusion merges the
rankings. search() sends the three queries as one SQL statement: one round trip.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Cast
from pgvector import HalfVector
from pgvector.django import CosineDistance, HalfVectorField, VectorField

from documents.models import Chunk
from retrieval.answerers import ScoredChunk
from retrieval.embedding import embed_queries, embedding_model_for
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.keyword import bm25_search, keyword_ctes
from retrieval.models import EmbeddingModel, Reranker

logger = logging.getLogger(__name__)

# How many candidates each search contributes before fusion, at least (a search for more
# chunks than this takes `k` from each, so a deep search is not capped at this many). On
# BEIR nfcorpus (bench/beir.py, dev split) 40 and 100 give the same nDCG@10 but 100 finds
# more of the relevant documents (recall@100 0.24 → 0.28); 200 or 300 add nothing measurable.
CANDIDATES_PER_SEARCH = 100
# How many fused candidates a reranker re-scores.
RERANK_CANDIDATES = 20


@dataclass
class SearchResult:
    chunks: list[ScoredChunk]
    query_vector: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    model: EmbeddingModel | None = None  # the model query_vector was embedded with


# The chunk fields a ScoredChunk is made of.
PASSAGE_FIELDS = (
    "document_id", "document__filename", "page", "text", "ordinal", "heading_path", "location",
)  # fmt: skip


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


# Database connections whose session already has the HNSW settings below.
_TUNED_CONNECTIONS: weakref.WeakSet = weakref.WeakSet()


def _tune_hnsw(cursor) -> None:
    """Set pgvector's search settings for this session once (per statement inside a transaction).

    iterative_scan (pgvector ≥ 0.8) keeps scanning the index until enough rows pass the
    bot filter; ef_search wider than the default 40 buys recall for a millisecond or two.
    Session settings cost no round trip per search; inside a transaction that may roll
    back (and take a session SET with it) they are set for the transaction instead.
    """
    ef_search = int(settings.DOCENT_HNSW_EF_SEARCH)
    if connection.in_atomic_block:
        cursor.execute(f"SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = {ef_search}")
    elif connection.connection not in _TUNED_CONNECTIONS:
        cursor.execute(f"SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = {ef_search}")
        _TUNED_CONNECTIONS.add(connection.connection)


# dimensions → "halfvec" or "vector": the type the HNSW index of that many dimensions casts to.
_INDEX_TYPES: dict[int, str] = {}


def _index_type(dimensions: int) -> str:
    """The cast of `dimensions`' HNSW index: the query must cast the same way for the planner to use it.

    The 384-d index is half precision (migration retrieval 0009); indexes made later by
    ensure_vector_index may be either. Looked up once per process, unless none exists yet.
    """
    if dimensions not in _INDEX_TYPES:
        with connection.cursor() as cursor:
            name = f"chunk_embedding_hnsw_{dimensions}"
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
            row = cursor.fetchone()
        if row is None:
            return "vector"
        _INDEX_TYPES[dimensions] = "halfvec" if f"halfvec({dimensions})" in row[0] else "vector"
    return _INDEX_TYPES[dimensions]


def _nearest(chunks, model: EmbeddingModel, query_vector, limit: int):
    """The queryset of (id, cosine distance) of the `limit` nearest chunks; the model's HNSW index serves it."""
    field = HalfVectorField if _index_type(model.dimensions) == "halfvec" else VectorField
    typed_embedding = Cast("embedding", field(dimensions=model.dimensions))
    if field is HalfVectorField:
        query_vector = HalfVector(np.asarray(query_vector, dtype=np.float32))
    return (
        chunks.filter(dimensions=model.dimensions)
        .annotate(distance=CosineDistance(typed_embedding, query_vector))
        .order_by("distance")
        .values_list("id", "distance")[:limit]
    )


def vector_search(chunks, model: EmbeddingModel, query_vector, limit: int, exact: bool = False) -> list[tuple]:
    """(chunk id, cosine similarity) of the `limit` nearest chunks, best first.

    Uses the model's partial HNSW index; `exact=True` scans instead (for measuring recall).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        _tune_hnsw(cursor)
        if exact:
            cursor.execute("SET LOCAL enable_indexscan = off")
        hits = list(_nearest(chunks, model, query_vector, limit))
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

    Keyword search ORs the words, so a passage with many other query words can
    outrank the one with the code; this list of passages holding every code as written
    is a third ranking for fusion, weighted like keyword search.
    """
    hits = _identifier_hits(chunks, query, limit)
    return [] if hits is None else [(chunk_id, float(rank)) for chunk_id, rank in hits]


def _identifier_hits(chunks, query: str, limit: int):
    """The queryset of (id, rank) behind identifier_search; None when the query holds no identifier."""
    identifiers = identifiers_in(query)
    if not identifiers:
        return None
    tsquery = SearchQuery(" ".join(f'"{token}"' for token in identifiers), search_type="websearch", config="english")
    return (
        chunks.filter(search_vector=tsquery)
        .annotate(rank=SearchRank(F("search_vector"), tsquery))
        .order_by("-rank", "id")
        .values_list("id", "rank")[:limit]
    )


def _websearch_syntax(query: str) -> str | None:
    """`query` when the user wrote web-search syntax (quotes, or, -exclusions), else None."""
    query = query[:KEYWORD_QUERY_MAX_CHARS]
    return query if _SEARCH_SYNTAX.search(query) else None


def keyword_search(chunks, query: str, limit: int) -> list[tuple]:
    """(chunk id, BM25 score) of full-text matches, best first; headings weigh more than body text.

    See retrieval.keyword: rare terms weigh more than common ones, unlike Postgres's ts_rank.
    """
    return bm25_search(chunks, query[:KEYWORD_QUERY_MAX_CHARS], _websearch_syntax(query), limit)


def ranked_candidates(chunks, model: EmbeddingModel, query: str, query_vector, limit: int) -> dict[str, list[tuple]]:
    """The vector, keyword and identifier rankings of `chunks` for `query`, from one SQL statement.

    {"vector": [(id, cosine similarity)], "keyword": [(id, BM25)], "identifier": [(id, rank)]},
    each best first and at most `limit` long: the same lists as vector_search,
    keyword_search and identifier_search, in one round trip instead of three.
    """
    if limit <= 0:
        return {"vector": [], "keyword": [], "identifier": []}
    pool_sql, pool_params = chunks.order_by().values("id", "bot_id", "bm25", "search_vector").query.sql_with_params()
    keyword_sql, keyword_params = keyword_ctes("pool", query[:KEYWORD_QUERY_MAX_CHARS], _websearch_syntax(query), limit)
    vector_sql, vector_params = _nearest(chunks, model, query_vector, limit).query.sql_with_params()
    parts = [
        "SELECT 'vector', id, 1 - distance FROM vector_hits",
        "SELECT 'keyword', id, score FROM keyword",
    ]
    params = [*pool_params, *keyword_params, *vector_params]
    identifier_hits = _identifier_hits(chunks, query, limit)
    ctes = f"WITH pool AS NOT MATERIALIZED ({pool_sql}), {keyword_sql}, vector_hits AS ({vector_sql})"
    if identifier_hits is not None:
        identifier_sql, identifier_params = identifier_hits.query.sql_with_params()
        ctes += f", identifier_hits AS ({identifier_sql})"
        parts.append("SELECT 'identifier', id, rank FROM identifier_hits")
        params += identifier_params
    rankings: dict[str, list[tuple]] = {"vector": [], "keyword": [], "identifier": []}
    with connection.cursor() as cursor:
        _tune_hnsw(cursor)
        cursor.execute(f"{ctes} {' UNION ALL '.join(parts)}", params)
        for kind, chunk_id, score in cursor.fetchall():
            rankings[kind].append((chunk_id, float(score)))
    for ranking in rankings.values():
        ranking.sort(key=lambda hit: (-hit[1], hit[0]))
    return rankings


def search(bot, query: str, k: int = 8, document_ids: list[int] | None = None) -> SearchResult:
    """The `k` best chunks of `bot` for `query`: vector and keyword search fused with RRF.

    The bot's rrf_k and weights shape the fusion; with a reranker configured, the
    fused candidates are re-scored by the CrossEncoder before the top `k` are kept.
    """
    watch = _Stopwatch()
    model = embedding_model_for(bot)
    query_vector = embed_queries([query], model)[0]
    watch.lap("embed")

    chunks = active_chunks(bot, document_ids)
    rankings = ranked_candidates(chunks, model, query, query_vector, max(CANDIDATES_PER_SEARCH, k))
    vector_scores = dict(rankings["vector"])
    keyword_scores = dict(rankings["keyword"])
    identifier_hits = [chunk_id for chunk_id, _ in rankings["identifier"]]
    watch.lap("candidates")

    fused = reciprocal_rank_fusion(
        [list(vector_scores), list(keyword_scores), identifier_hits],
        k=bot.rrf_k,
        weights=[bot.vector_weight, bot.keyword_weight, bot.keyword_weight],
    )
    reranker = bot.reranker if bot.reranker_id else None
    candidates = fused[: max(k, RERANK_CANDIDATES) if reranker else k]
    watch.lap("fuse")

    # Only what a cited passage shows: a chunk's vectors (and sentence vectors) are most of its row.
    rows = (
        Chunk.objects.select_related("document").only(*PASSAGE_FIELDS).in_bulk([chunk_id for chunk_id, _ in candidates])
    )
    results = [
        ScoredChunk(
            chunk_id=chunk_id,
            document_id=rows[chunk_id].document_id,
            document_name=rows[chunk_id].document.filename,
            page=rows[chunk_id].page,
            text=rows[chunk_id].text,
            ordinal=rows[chunk_id].ordinal,
            heading_path=rows[chunk_id].heading_path,
            location=rows[chunk_id].citation_location,
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
    return SearchResult(chunks=results, query_vector=query_vector, timings_ms=watch.timings_ms, model=model)


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
