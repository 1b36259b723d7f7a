"""BM25 keyword ranking inside Postgres, fast at a million chunks.

Postgres's own ts_rank counts how often the query words occur but not how rare they
are: "diet" in every chunk weighs as much as "homocysteine" in three. BM25 weighs each
term by its inverse document frequency (IDF) and saturates repeated occurrences.

A chunk's BM25 score is an inner product, so it is stored as two halves
(migration retrieval 0008, kept exact by triggers on documents_chunk):

- each active chunk's `bm25` sparse vector: per lexeme (hashed to one of 2^29 indices),
  the saturated, length-normalised term frequency tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl)),
  heading words counting twice (BM25F-style: a passage under "Toner" is about toner);
- per bot, the document frequency of every lexeme and the number and total length of
  its chunks, in retrieval_keyword_statistics (rows of changes, summed when read).

A query's vector holds each of its terms' IDF, read from the statistics in the same
statement. Scoring a chunk is then one sparse inner product instead of unnesting its
text, and the statistics cost nothing at query time. avgdl is the bot's when the
chunk was activated (chunk sizes come from the chunker, so it hardly moves; a
re-index or refresh_vectors recomputes it).

Which chunks are scored: those containing the query's rarest terms, found through the
GIN index, adding terms from the rarest up while their chunks number at most
CANDIDATE_CAP (always at least the rarest). A chunk holding none of those terms holds
only common ones, and scores below the chunks with a rare term unless the rare term is
in very few chunks; the cost no longer grows with the number of chunks that say
"policy". Below CANDIDATE_CAP chunks in a bot nothing is left out: the ranking is exact.
"""

from __future__ import annotations

import re

from django.db import connection

# Okapi BM25 parameters (Lucene's defaults) and the heading weight: the triggers of
# migration retrieval 0008 use the same values; changing them needs a new migration.
BM25_K1 = 1.2
BM25_B = 0.75
HEADING_WEIGHT = 2
# Distinct query terms scored at most; a question never has this many.
MAX_QUERY_TERMS = 64
# Chunks scored per keyword query at most (see the module docstring); fetching the rows
# dominates. On 100k chunks of Zipfian text (bench/search.py, 2 busy cores), top-10
# agreement with uncapped BM25 / keyword p95: 1,000 → 0.84 / 7 ms, 2,000 → 0.95 / 16 ms,
# 5,000 → 0.998 / 33 ms.
CANDIDATE_CAP = 2_000

# A -word in web-search syntax excludes chunks; its lexeme is not a term to score or to probe with.
_EXCLUSION = re.compile(r"(?:^|(?<=\s))-\S+")


def terms_text(query: str) -> str:
    """The part of `query` whose words are scored: all of it but -exclusions."""
    return _EXCLUSION.sub(" ", query)


def keyword_ctes(pool: str, query: str, websearch_query: str | None, limit: int) -> tuple[str, list]:
    """SQL common table expressions ending in `keyword (id, score)`, and their parameters in order.

    `pool` names an earlier CTE of the chunks searched, with columns id, bot_id, bm25 and
    search_vector (all of one bot: its statistics are used). `websearch_query`, when the
    user wrote search syntax (quotes, -exclusions), must match too. Best first, ties to the
    lower id; at most `limit` rows. The caller puts `WITH pool AS (...), <these>` before its SELECT.
    """
    syntax = "AND search_vector @@ websearch_to_tsquery('english', %s)" if websearch_query else ""
    sql = f"""
kw_terms AS (
    SELECT DISTINCT lexeme FROM unnest((tsvector_to_array(to_tsvector('english', %s)))[1:{MAX_QUERY_TERMS}]) lexeme
),
kw_stats AS (
    SELECT s.lexeme, sum(s.chunks)::float8 AS df
    FROM retrieval_keyword_statistics s
    WHERE s.bot_id = (SELECT bot_id FROM {pool} LIMIT 1)
      AND s.lexeme IN (SELECT lexeme FROM kw_terms UNION ALL SELECT '')
    GROUP BY s.lexeme
),
kw_weights AS (
    SELECT t.lexeme, t.df, ln(1 + (n.df - t.df + 0.5) / (t.df + 0.5)) AS idf,
           sum(t.df) OVER (ORDER BY t.df, t.lexeme ROWS UNBOUNDED PRECEDING) AS cumulative_df
    FROM kw_stats t JOIN kw_stats n ON n.lexeme = ''
    WHERE t.lexeme <> '' AND t.df > 0
),
kw_query AS (
    SELECT ('{{' || string_agg(term || ':' || weight::real, ',' ORDER BY term) || '}}/536870912')::sparsevec AS vector
    FROM (SELECT docent_term_index(lexeme) AS term, sum(idf) AS weight FROM kw_weights GROUP BY 1) q
),
kw_probe AS (
    SELECT string_agg('''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''', ' | ')::tsquery AS probe
    FROM kw_weights WHERE cumulative_df <= %s OR cumulative_df = df
),
kw_candidates AS (
    SELECT id, bm25 FROM {pool}
    WHERE search_vector @@ (SELECT probe FROM kw_probe) {syntax}
    LIMIT %s
),
keyword AS (
    SELECT id, -(bm25 <#> (SELECT vector FROM kw_query)) AS score FROM kw_candidates
    ORDER BY score DESC, id LIMIT %s
)"""
    params: list = [terms_text(query), CANDIDATE_CAP]
    if websearch_query:
        params.append(websearch_query)
    params += [CANDIDATE_CAP, limit]
    return sql, params


def bm25_search(chunks, query: str, websearch_query: str | None, limit: int) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) of the `limit` best chunks among `chunks` (one bot's) for `query`, best first.

    The term statistics are the bot's, whatever subset `chunks` is (as a search engine's
    filter leaves IDF alone). With `websearch_query` (Postgres web-search syntax: quotes
    and -exclusions) only chunks matching it are returned.
    """
    if limit <= 0:
        return []
    pool_sql, pool_params = chunks.order_by().values("id", "bot_id", "bm25", "search_vector").query.sql_with_params()
    ctes, params = keyword_ctes("pool", query, websearch_query, limit)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH pool AS NOT MATERIALIZED ({pool_sql}), {ctes} SELECT id, score FROM keyword ORDER BY score DESC, id",
            [*pool_params, *params],
        )
        return [(chunk_id, float(score)) for chunk_id, score in cursor.fetchall()]


def refresh_vectors(bot_id: int) -> int:
    """Weigh `bot_id`'s active chunks again with its current average length; returns how many.

    Each chunk keeps the average length of its bot as it was when the chunk became active
    (exact for a bot's first document and after a re-index). Chunk sizes come from the
    chunker, so the average hardly moves; a bot whose documents changed in kind can be
    refreshed. It rewrites every active row of the bot (and its index entries): minutes
    for a million chunks, a background job's work.
    """
    with connection.cursor() as cursor:
        cursor.execute("UPDATE documents_chunk SET bm25 = NULL WHERE bot_id = %s AND is_active", [bot_id])
        return cursor.rowcount


def compact_statistics(bot_id: int) -> None:
    """Merge `bot_id`'s rows of term statistics (the triggers also do it now and then)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT docent_compact_keyword_statistics(%s)", [bot_id])


def drop_keyword_statistics(bot_id: int) -> None:
    """Delete `bot_id`'s term statistics, for a transaction that deletes the whole bot.

    Call it inside that transaction, before the bot's chunks are deleted: the delete
    trigger then skips the bot's rows (it would unnest every chunk to count the bot down
    to nothing: about 32 of the 53 s a million-chunk bot took) and the setting ends with the
    transaction. Chunks of other bots deleted meanwhile are still counted.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('docent.dropping_bot', %s, true)", [str(int(bot_id))])
        cursor.execute("DELETE FROM retrieval_keyword_statistics WHERE bot_id = %s", [bot_id])


def statistics(bot_id: int) -> tuple[int, float, dict[str, int]]:
    """(active chunks, average length, document frequency by lexeme) of a bot: for tests and checks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT lexeme, sum(chunks), sum(tokens) FROM retrieval_keyword_statistics WHERE bot_id = %s "
            "GROUP BY lexeme HAVING sum(chunks) <> 0",
            [bot_id],
        )
        rows = {lexeme: (int(chunks), int(tokens)) for lexeme, chunks, tokens in cursor.fetchall()}
    chunks, tokens = rows.pop("", (0, 0))
    return chunks, (tokens / chunks if chunks else 0.0), {lexeme: df for lexeme, (df, _) in rows.items()}
