"""BM25 keyword scoring over the chunks' Postgres full-text vectors.

Postgres's own ts_rank counts how often the query words occur but not how rare they
are: "diet" in every chunk weighs as much as "homocysteine" in three, so a long chunk
full of common words outranks the one passage about the rare term. BM25 weighs each
term by its inverse document frequency and saturates repeated occurrences.

The statistics (number of chunks, their average length, each query term's document
frequency) are taken at query time from the chunks being searched, through the GIN
index on `search_vector`: nothing extra to maintain at ingestion, and never stale
after a re-index or a deletion. The cost grows with the number of chunks containing a
query term, which is what an inverted index without stored statistics has to pay.
"""

from __future__ import annotations

from django.db import connection

# Okapi BM25 parameters; the customary values (Lucene's defaults).
BM25_K1 = 1.2
BM25_B = 0.75
# A term in the heading path counts this many times per occurrence (BM25F-style field
# weight): a passage under "Toner" is about toner even where its text says "it".
HEADING_WEIGHT = 2
# Distinct query terms scored at most; a question never has this many.
MAX_QUERY_TERMS = 64

_SQL = """
WITH pool AS NOT MATERIALIZED ({pool}),
stats AS (SELECT count(*)::float8 AS n, greatest(avg(token_count), 1)::float8 AS avgdl FROM pool),
hits AS (
    SELECT p.id,
           p.token_count::float8 AS dl,
           u.lexeme,
           (cardinality(u.positions)
            + %s * cardinality(array_positions(u.weights, 'A')))::float8 AS tf,
           p.search_vector @@ websearch_to_tsquery('english', %s) AS eligible
    FROM pool p CROSS JOIN LATERAL unnest(p.search_vector) u
    WHERE p.search_vector @@ %s::tsquery AND u.lexeme = ANY(%s)
),
df AS (SELECT lexeme, count(*)::float8 AS df FROM hits GROUP BY lexeme)
SELECT h.id,
       sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
           * h.tf * (%s + 1) / (h.tf + %s * (1 - %s + %s * h.dl / s.avgdl))) AS score
FROM hits h JOIN df USING (lexeme) CROSS JOIN stats s
WHERE h.eligible
GROUP BY h.id
ORDER BY score DESC, h.id
LIMIT %s
"""


def query_terms(query: str) -> list[str]:
    """The distinct lexemes of `query` as Postgres indexes text ('english': stemmed, stop words dropped)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", [query])
        (terms,) = cursor.fetchone()
    return list(terms or [])[:MAX_QUERY_TERMS]


def _quoted(lexeme: str) -> str:
    """`lexeme` as one tsquery operand, taken literally (no parsing or stemming again)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def bm25_search(chunks, query: str, websearch_query: str, limit: int) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) of the `limit` best chunks among `chunks` for `query`, best first.

    `chunks` is the queryset searched (a bot's active chunks, perhaps of some documents):
    it is also the collection the term statistics come from. Only chunks matching
    `websearch_query` (Postgres websearch syntax: quotes and -exclusions honoured) are
    returned; the score sums BM25 over the query's terms. Ties go to the lower id.
    """
    terms = query_terms(query)
    if not terms or limit <= 0:
        return []
    pool = chunks.order_by().values("id", "token_count", "search_vector")
    pool_sql, pool_params = pool.query.sql_with_params()
    any_term = " | ".join(_quoted(term) for term in terms)
    # Positional, in the order the placeholders appear in _SQL.
    params = [*pool_params, HEADING_WEIGHT - 1, websearch_query, any_term, terms]
    params += [BM25_K1, BM25_K1, BM25_B, BM25_B, limit]
    with connection.cursor() as cursor:
        cursor.execute(_SQL.replace("{pool}", pool_sql), params)
        return [(chunk_id, float(score)) for chunk_id, score in cursor.fetchall()]
