"""BM25 in Postgres: per-bot term statistics and each active chunk's term-weight vector.

retrieval.keyword explains the design. Triggers on documents_chunk keep both exact
whichever code path activates, replaces or deletes chunks (ingestion, re-index, a
document or bot deleted by cascade, a bulk COPY):

- BEFORE INSERT/UPDATE (per row): an active chunk's `bm25` sparse vector holds, per
  lexeme hashed to an index, the saturated, length-normalised term frequency
  tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl)); headings count twice. avgdl is the bot's
  at that moment (the chunk's own length for a bot's first chunks).
- AFTER INSERT/UPDATE/DELETE (per statement, transition tables): one row per
  (bot, lexeme) of the statement's net change in document frequency, and one per bot
  under the lexeme '' for the change in chunk count and total length. Only inserts, so
  concurrent ingestion never waits on a shared counter row; readers sum the rows, and
  rows of a bot are merged now and then, by one transaction at a time
  (docent_compact_keyword_statistics), and dropped with the bot's last chunk.

The constants (k1 = 1.2, b = 0.75, heading weight 2, 2^29 hash buckets) are mirrored in
retrieval.keyword; changing them needs a migration that recomputes the vectors.
"""

from django.db import migrations

FUNCTIONS = r"""
CREATE TABLE retrieval_keyword_statistics (
    bot_id bigint NOT NULL,
    lexeme text NOT NULL,
    chunks bigint NOT NULL,
    tokens bigint NOT NULL DEFAULT 0
);
CREATE INDEX retrieval_keyword_statistics_bot_lexeme ON retrieval_keyword_statistics (bot_id, lexeme);

CREATE FUNCTION docent_term_index(lexeme text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (hashtextextended(lexeme, 0) & 536870911) + 1 $$;

CREATE FUNCTION docent_bm25_vector(terms tsvector, length integer, average_length float8) RETURNS sparsevec
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ('{' || coalesce(string_agg(term || ':' || weight::real, ',' ORDER BY term), '') || '}/536870912')::sparsevec
    FROM (
        SELECT docent_term_index(u.lexeme) AS term,
               sum(u.tf * 2.2 / (u.tf + 1.2 * (0.25 + 0.75 * greatest(length, 1) / greatest(average_length, 1))))
                   AS weight
        FROM (
            SELECT lexeme, (cardinality(positions) + cardinality(array_positions(weights, 'A')))::float8 AS tf
            FROM unnest(terms)
        ) u
        WHERE u.tf > 0
        GROUP BY 1
    ) t
$$;

CREATE FUNCTION docent_average_length(bot bigint, fallback integer) RETURNS float8
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(tokens)::float8 / nullif(sum(chunks), 0), fallback)
    FROM retrieval_keyword_statistics WHERE bot_id = bot AND lexeme = ''
$$;

-- The statistics rows are young: the planner's row estimates are often 1, which makes a
-- nested loop over two big sets quadratic. Hash joins keep every statement here linear.
CREATE FUNCTION docent_compact_keyword_statistics(bot bigint) RETURNS void
LANGUAGE sql SET enable_nestloop = off AS $$
    WITH repeated AS MATERIALIZED (
        SELECT lexeme FROM retrieval_keyword_statistics WHERE bot_id = bot GROUP BY lexeme HAVING count(*) > 1
    ),
    merged AS (
        DELETE FROM retrieval_keyword_statistics s USING repeated r
        WHERE s.bot_id = bot AND s.lexeme = r.lexeme
        RETURNING s.lexeme, s.chunks, s.tokens
    )
    INSERT INTO retrieval_keyword_statistics (bot_id, lexeme, chunks, tokens)
    SELECT bot, lexeme, sum(chunks), sum(tokens) FROM merged GROUP BY lexeme HAVING sum(chunks) <> 0
$$;

CREATE FUNCTION docent_chunk_bm25() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unchanged_text boolean := TG_OP = 'UPDATE' AND NEW.text IS NOT DISTINCT FROM OLD.text
        AND NEW.heading_path IS NOT DISTINCT FROM OLD.heading_path;
BEGIN
    IF NOT NEW.is_active THEN
        NEW.bm25 := NULL;
    ELSIF unchanged_text AND OLD.is_active AND NEW.bm25 IS NOT NULL
          AND NEW.token_count = OLD.token_count AND NEW.bot_id = OLD.bot_id THEN
        NULL;  -- unchanged; an UPDATE setting bm25 to NULL asks for it to be recomputed
    ELSE
        -- The generated search_vector is not computed yet in a BEFORE trigger: the stored
        -- one when the text is the same (activation), else the generating expression.
        NEW.bm25 := docent_bm25_vector(
            CASE WHEN unchanged_text THEN OLD.search_vector
            ELSE setweight(to_tsvector('english'::regconfig, coalesce(NEW.heading_path, '')), 'A')
                || setweight(to_tsvector('english'::regconfig, coalesce(NEW.text, '')), 'B') END,
            NEW.token_count,
            docent_average_length(NEW.bot_id, NEW.token_count));
    END IF;
    RETURN NEW;
END $$;
"""

STATISTICS_FUNCTION = r"""
CREATE FUNCTION docent_chunk_statistics_{operation}() RETURNS trigger LANGUAGE plpgsql
SET enable_nestloop = off AS $$
DECLARE
    touched bigint[];
    bot bigint;
BEGIN
    WITH changed AS ({changed}),
    changes AS (
        SELECT bot_id, '' AS lexeme, sign AS chunks, sign * token_count AS tokens FROM changed
        UNION ALL
        SELECT c.bot_id, u.lexeme, c.sign, 0 FROM changed c CROSS JOIN LATERAL unnest(c.search_vector) u
    ),
    inserted AS (
        INSERT INTO retrieval_keyword_statistics (bot_id, lexeme, chunks, tokens)
        SELECT bot_id, lexeme, sum(chunks), sum(tokens) FROM changes GROUP BY bot_id, lexeme
        HAVING sum(chunks) <> 0 OR sum(tokens) <> 0
        RETURNING bot_id
    )
    SELECT array_agg(DISTINCT bot_id) INTO touched FROM inserted;
    -- A bot's first chunks were weighed before it had an average length (each by its own):
    -- now that the statistics hold them, weigh them again (that UPDATE fires this trigger
    -- once more, one level deeper, where it changes no statistics and stops here).
    IF pg_trigger_depth() = 1 THEN
        UPDATE documents_chunk SET bm25 = NULL WHERE id = ANY(ARRAY(
            SELECT f.id FROM ({first}) f WHERE f.bot_total = (
                SELECT sum(s.chunks) FROM retrieval_keyword_statistics s WHERE s.bot_id = f.bot_id AND s.lexeme = ''
            )
        ));
    END IF;
    -- Merge a bot's rows now and then, so that readers sum a few rows per term rather than
    -- one per document, and drop them once the bot has no chunks left. One transaction at a
    -- time merges a bot; the others only insert, so nobody waits and nothing deadlocks.
    FOREACH bot IN ARRAY coalesce(touched, '{}') LOOP
        IF (random() < 0.02 OR NOT EXISTS (
                SELECT FROM retrieval_keyword_statistics WHERE bot_id = bot AND lexeme = '' HAVING sum(chunks) <> 0))
           AND pg_try_advisory_xact_lock(hashtext('docent_keyword_statistics'), hashtext(bot::text)) THEN
            PERFORM docent_compact_keyword_statistics(bot);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
"""
ADDED = "SELECT bot_id, search_vector, token_count, 1 AS sign FROM new_rows WHERE is_active"
REMOVED = "SELECT bot_id, search_vector, token_count, -1 AS sign FROM old_rows WHERE is_active"
# An update counts only rows whose active text changed: filling in other columns of active
# chunks (sentence vectors, say) costs a join, not two unnests per row.
SAME = (
    "o.is_active AND n.is_active AND o.bot_id = n.bot_id AND o.token_count = n.token_count"
    " AND o.search_vector = n.search_vector"
)
ADDED_BY_UPDATE = (
    "SELECT n.bot_id, n.search_vector, n.token_count, 1 AS sign FROM new_rows n JOIN old_rows o ON o.id = n.id "
    f"WHERE n.is_active AND NOT ({SAME})"
)
REMOVED_BY_UPDATE = (
    "SELECT o.bot_id, o.search_vector, o.token_count, -1 AS sign FROM old_rows o JOIN new_rows n ON n.id = o.id "
    f"WHERE o.is_active AND NOT ({SAME})"
)
# Rows this statement made active, with how many of them are their bot's.
FIRST_INSERTED = "SELECT id, bot_id, count(*) OVER (PARTITION BY bot_id) AS bot_total FROM new_rows WHERE is_active"
FIRST_UPDATED = (
    "SELECT n.id, n.bot_id, count(*) OVER (PARTITION BY n.bot_id) AS bot_total "
    "FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.is_active AND NOT o.is_active"
)
STATISTICS_FUNCTIONS = "".join(
    STATISTICS_FUNCTION.replace("{operation}", operation).replace("{changed}", changed).replace("{first}", first)
    for operation, changed, first in [
        ("insert", ADDED, FIRST_INSERTED),
        ("update", f"{ADDED_BY_UPDATE} UNION ALL {REMOVED_BY_UPDATE}", FIRST_UPDATED),
        ("delete", REMOVED, "SELECT NULL::bigint AS id, NULL::bigint AS bot_id, NULL::bigint AS bot_total WHERE false"),
    ]
)

BACKFILL = r"""
INSERT INTO retrieval_keyword_statistics (bot_id, lexeme, chunks, tokens)
SELECT bot_id, '', count(*), sum(token_count) FROM documents_chunk WHERE is_active GROUP BY bot_id;
INSERT INTO retrieval_keyword_statistics (bot_id, lexeme, chunks, tokens)
SELECT c.bot_id, u.lexeme, count(*), 0
FROM documents_chunk c CROSS JOIN LATERAL unnest(c.search_vector) u WHERE c.is_active GROUP BY 1, 2;
UPDATE documents_chunk
SET bm25 = docent_bm25_vector(search_vector, token_count, docent_average_length(bot_id, token_count))
WHERE is_active;
"""

TRIGGERS = r"""
CREATE TRIGGER chunk_bm25 BEFORE INSERT OR UPDATE ON documents_chunk
    FOR EACH ROW EXECUTE FUNCTION docent_chunk_bm25();
CREATE TRIGGER chunk_statistics_insert AFTER INSERT ON documents_chunk
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION docent_chunk_statistics_insert();
CREATE TRIGGER chunk_statistics_update AFTER UPDATE ON documents_chunk
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION docent_chunk_statistics_update();
CREATE TRIGGER chunk_statistics_delete AFTER DELETE ON documents_chunk
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION docent_chunk_statistics_delete();
"""

DROP = r"""
DROP TRIGGER IF EXISTS chunk_bm25 ON documents_chunk;
DROP TRIGGER IF EXISTS chunk_statistics_insert ON documents_chunk;
DROP TRIGGER IF EXISTS chunk_statistics_update ON documents_chunk;
DROP TRIGGER IF EXISTS chunk_statistics_delete ON documents_chunk;
DROP FUNCTION IF EXISTS docent_chunk_statistics_insert();
DROP FUNCTION IF EXISTS docent_chunk_statistics_update();
DROP FUNCTION IF EXISTS docent_chunk_statistics_delete();
DROP FUNCTION IF EXISTS docent_chunk_bm25();
DROP FUNCTION IF EXISTS docent_compact_keyword_statistics(bigint);
DROP FUNCTION IF EXISTS docent_average_length(bigint, integer);
DROP FUNCTION IF EXISTS docent_bm25_vector(tsvector, integer, float8);
DROP FUNCTION IF EXISTS docent_term_index(text);
DROP TABLE IF EXISTS retrieval_keyword_statistics;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0007_embeddingmodel_backend"),
        ("documents", "0005_chunk_bm25"),
    ]

    operations = [
        migrations.RunSQL(FUNCTIONS + STATISTICS_FUNCTIONS + BACKFILL + TRIGGERS, DROP),
    ]
