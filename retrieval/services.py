"""Retrieval's public entry points: the one door the application layer (bots/, documents/, config/) uses.

Import from here, never from the modules behind it, so they can move again:

- Embeddings (retrieval.embedding): default_embedding_model, embedding_model_for,
  embedder, embed_texts, warm_up, ensure_vector_index, query_embedder_problem.
- Search (retrieval.search): search -> SearchResult (vector, keyword and identifier
  queries fused with reciprocal-rank fusion, reranked when the bot has a reranker),
  and its parts active_chunks, vector_search, keyword_search, keyword_query,
  identifier_search, identifiers_in, rerank; drop_keyword_statistics (retrieval.keyword)
  for a transaction that deletes a whole bot.
- Answers and traces (retrieval.answering): answer_stream -> AnswerEvents, answer,
  export_trace, traces_of_bots, filter_traces with TRACE_FILTERS.
- Registry (retrieval.registry): UnknownChoice; get_embedding_model, get_reranker,
  get_provider; create_provider, update_provider, set_provider_api_key,
  delete_provider, test_provider, warm_up_llm_client; create_embedding_model,
  set_default_embedding_model; create_reranker, delete_reranker.
- Usage (retrieval.usage): usage -> Usage of BotUsage rows.

Every name is re-exported unchanged, so a test that monkeypatches one here patches
what the application layer calls (it looks the name up on this module at call time);
calls between the modules behind it are not affected by such a patch.
"""

from retrieval.answering import (
    EXTRACTIVE_PROVIDER,
    SLOW_ANSWER_MS,
    TRACE_FILTERS,
    AnswerEvent,
    answer,
    answer_stream,
    export_trace,
    filter_traces,
    traces_of_bots,
)
from retrieval.embedding import (
    default_embedding_model,
    embed_texts,
    embedder,
    embedding_model_for,
    ensure_vector_index,
    query_embedder_problem,
    warm_up,
)
from retrieval.keyword import drop_keyword_statistics
from retrieval.registry import (
    CONNECTION_TEST_TIMEOUT_SECONDS,
    MAX_INDEXED_DIMENSIONS,
    RERANKER_CHECK_PAIR,
    UnknownChoice,
    create_embedding_model,
    create_provider,
    create_reranker,
    delete_provider,
    delete_reranker,
    get_embedding_model,
    get_provider,
    get_reranker,
    set_default_embedding_model,
    set_embedding_backend,
    set_provider_api_key,
    test_provider,
    update_provider,
    warm_up_llm_client,
)
from retrieval.search import (
    CANDIDATES_PER_SEARCH,
    KEYWORD_QUERY_MAX_CHARS,
    RERANK_CANDIDATES,
    SearchResult,
    active_chunks,
    identifier_search,
    identifiers_in,
    keyword_query,
    keyword_search,
    rerank,
    search,
    vector_search,
)
from retrieval.usage import BotUsage, Usage, usage

__all__ = [
    # Embeddings
    "default_embedding_model",
    "embed_texts",
    "embedder",
    "embedding_model_for",
    "ensure_vector_index",
    "query_embedder_problem",
    "warm_up",
    # Search
    "CANDIDATES_PER_SEARCH",
    "KEYWORD_QUERY_MAX_CHARS",
    "RERANK_CANDIDATES",
    "SearchResult",
    "active_chunks",
    "drop_keyword_statistics",
    "identifier_search",
    "identifiers_in",
    "keyword_query",
    "keyword_search",
    "rerank",
    "search",
    "vector_search",
    # Answers and traces
    "EXTRACTIVE_PROVIDER",
    "SLOW_ANSWER_MS",
    "TRACE_FILTERS",
    "AnswerEvent",
    "answer",
    "answer_stream",
    "export_trace",
    "filter_traces",
    "traces_of_bots",
    # Registry: providers, embedding models, rerankers
    "CONNECTION_TEST_TIMEOUT_SECONDS",
    "MAX_INDEXED_DIMENSIONS",
    "RERANKER_CHECK_PAIR",
    "UnknownChoice",
    "create_embedding_model",
    "create_provider",
    "create_reranker",
    "delete_provider",
    "delete_reranker",
    "get_embedding_model",
    "get_provider",
    "get_reranker",
    "set_default_embedding_model",
    "set_embedding_backend",
    "set_provider_api_key",
    "test_provider",
    "update_provider",
    "warm_up_llm_client",
    # Usage
    "BotUsage",
    "Usage",
    "usage",
]
