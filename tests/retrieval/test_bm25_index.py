"""BM25 stored in Postgres: chunk weight vectors and per-bot term statistics kept exact by triggers."""

import math

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from documents import services as documents
from documents.models import Chunk
from retrieval import keyword, services

pytestmark = pytest.mark.django_db

MANUAL = {
    "fuser.txt": "The fuser overheated after a long print job; let the printer cool before opening the cover.",
    "tray.txt": "Close the printer tray firmly. The printer tray holds plain paper.",
    "toner.txt": "The printer toner is empty; order toner from the service desk.",
    "codes.txt": "Code E-4417: tray 2 is open; close it firmly.",
}


def true_statistics(bot_id: int) -> tuple[int, float, dict[str, int]]:
    """The bot's statistics counted from scratch over its active chunks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(token_count) FROM documents_chunk WHERE bot_id = %s AND is_active", [bot_id]
        )
        chunks, tokens = cursor.fetchone()
        cursor.execute(
            "SELECT word, ndoc FROM ts_stat(format("
            "'SELECT search_vector FROM documents_chunk WHERE bot_id = %%s AND is_active', %s::bigint))",
            [bot_id],
        )
        frequencies = dict(cursor.fetchall())
    return chunks, (tokens / chunks if chunks else 0.0), frequencies


def assert_statistics_exact(bot_id: int) -> None:
    chunks, average, frequencies = keyword.statistics(bot_id)
    true_chunks, true_average, true_frequencies = true_statistics(bot_id)
    assert (chunks, frequencies) == (true_chunks, true_frequencies)
    assert average == pytest.approx(true_average)


def textbook_bm25(bot_id: int, query: str) -> dict[int, float]:
    """Okapi BM25 of every active chunk of the bot for `query`, computed in Python from the chunks alone."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", [query])
        terms = set(cursor.fetchone()[0])
        cursor.execute(
            "SELECT c.id, c.token_count, u.lexeme, cardinality(u.positions),"
            " cardinality(array_positions(u.weights, 'A'))"
            " FROM documents_chunk c CROSS JOIN LATERAL unnest(c.search_vector) u WHERE c.bot_id = %s AND c.is_active",
            [bot_id],
        )
        rows = cursor.fetchall()
    lengths = {chunk_id: length for chunk_id, length, *_ in rows}
    average = sum(lengths.values()) / len(lengths)
    frequency = {term: len({row[0] for row in rows if row[2] == term}) for term in terms}
    scores: dict[int, float] = {}
    for chunk_id, length, lexeme, occurrences, in_heading in rows:
        if lexeme not in terms:
            continue
        tf = occurrences + (keyword.HEADING_WEIGHT - 1) * in_heading
        idf = math.log(1 + (len(lengths) - frequency[lexeme] + 0.5) / (frequency[lexeme] + 0.5))
        norm = keyword.BM25_K1 * (1 - keyword.BM25_B + keyword.BM25_B * length / average)
        scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * tf * (keyword.BM25_K1 + 1) / (tf + norm)
    return scores


def ingest(bot, name: str, text: str) -> int:
    upload = documents.add_document(bot, SimpleUploadedFile(name, text.encode()), enqueue=False)
    upload.document.refresh_from_db()
    documents.ingest_version(upload.document.current_version_id)
    return upload.document.id


def test_keyword_scores_are_textbook_bm25_of_the_bots_chunks(bot, index_texts):
    index_texts(bot, MANUAL)
    # Chunks added one by one were weighed with the average length of their time; refreshed, all use today's.
    assert keyword.refresh_vectors(bot.id) == len(MANUAL)
    hits = dict(services.keyword_search(services.active_chunks(bot), "printer tray firmly", limit=10))
    expected = textbook_bm25(bot.id, "printer tray firmly")
    assert hits.keys() == expected.keys()
    for chunk_id, score in expected.items():
        assert hits[chunk_id] == pytest.approx(score, rel=1e-5)


def test_a_short_chunk_outranks_a_long_one_that_mentions_the_term_as_often(bot, index_texts):
    ids = index_texts(
        bot,
        {
            "short.txt": "Descaling the kettle.",
            "long.txt": "Descaling is one step among many: rinse, dry, polish, store, check the cord, "
            "wipe the base, test the switch, replace the filter, and read the warranty card again.",
        },
    )
    hits = [chunk_id for chunk_id, _ in services.keyword_search(services.active_chunks(bot), "descaling", limit=5)]
    assert hits == [ids["short.txt"], ids["long.txt"]]


def test_a_rare_query_term_decides_even_when_the_common_ones_are_many(bot, index_texts):
    texts = {f"common-{i}.txt": f"The printer manual, part {i}: printer paper and printer settings." for i in range(8)}
    ids = index_texts(bot, {**texts, "rare.txt": "A duplex unit attaches under the printer."})
    hits = services.keyword_search(services.active_chunks(bot), "printer paper settings duplex", limit=3)
    assert hits[0][0] == ids["rare.txt"]


def test_term_statistics_stay_exact_through_ingestion_replacement_reindex_and_deletion(bot):
    first = ingest(bot, "fuser.txt", MANUAL["fuser.txt"])
    assert_statistics_exact(bot.id)
    ingest(bot, "tray.txt", MANUAL["tray.txt"])
    ingest(bot, "toner.txt", MANUAL["toner.txt"])
    assert_statistics_exact(bot.id)
    assert keyword.statistics(bot.id)[2]["toner"] == 1

    ingest(bot, "toner.txt", "Toner cartridges: the toner light means toner is low.")  # a new version replaces
    assert_statistics_exact(bot.id)
    documents.reindex_bot(bot.id)
    assert_statistics_exact(bot.id)
    documents.delete_document(bot.documents.get(pk=first))
    assert_statistics_exact(bot.id)
    assert "fuser" not in keyword.statistics(bot.id)[2]

    keyword.compact_statistics(bot.id)
    assert_statistics_exact(bot.id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM retrieval_keyword_statistics WHERE bot_id = %s"
            " GROUP BY lexeme ORDER BY 1 DESC LIMIT 1",
            [bot.id],
        )
        assert cursor.fetchone()[0] == 1  # one row per term once merged


def test_newly_ingested_chunks_are_weighed_and_found_at_once(bot):
    ingest(bot, "fuser.txt", MANUAL["fuser.txt"])
    ingest(bot, "duplex.txt", "The duplex unit prints on both sides of the paper.")
    chunks = services.active_chunks(bot)
    assert not chunks.filter(bm25__isnull=True).exists()
    assert not Chunk.objects.filter(bot_id=bot.id, is_active=False).exclude(bm25__isnull=True).exists()
    hits = services.keyword_search(chunks, "duplex printing", limit=5)  # "print job" is in fuser.txt
    assert [chunks.get(pk=chunk_id).document.filename for chunk_id, _ in hits] == ["duplex.txt", "fuser.txt"]


def test_an_identifier_ranks_first_by_bm25_alone(bot, index_texts):
    ids = index_texts(bot, MANUAL)
    hits = services.keyword_search(services.active_chunks(bot), "what does printer error E-4417 mean", limit=5)
    assert hits[0][0] == ids["codes.txt"]


def test_an_excluded_word_that_is_the_rarest_does_not_hide_the_other_matches(bot, index_texts, monkeypatch):
    ids = index_texts(bot, {**MANUAL, "copier.txt": "The copier tray jams with heavy paper."})
    monkeypatch.setattr(keyword, "CANDIDATE_CAP", 2)  # "copier" (1 chunk) alone would be looked up if it counted
    hits = [chunk_id for chunk_id, _ in services.keyword_search(services.active_chunks(bot), "tray -copier", 5)]
    assert set(hits) == {ids["tray.txt"], ids["codes.txt"]}


def test_search_sends_vector_keyword_and_identifier_queries_in_one_statement(bot, index_texts):
    ids = index_texts(bot, MANUAL)
    services.search(bot, "warm up")  # the embedding model loads outside the capture
    with CaptureQueriesContext(connection) as captured:
        found = services.search(bot, "What does printer error E-4417 mean?", k=3)
    assert found.chunks[0].chunk_id == ids["codes.txt"]
    chunk_queries = [query["sql"] for query in captured.captured_queries if "documents_chunk" in query["sql"]]
    candidates, load = chunk_queries  # the candidates, then loading the chosen chunks
    assert "<=>" in candidates and "retrieval_keyword_statistics" in candidates and "identifier_hits" in candidates


def test_a_cap_below_a_terms_chunk_count_still_scores_the_rarest_terms_matches(bot, index_texts, monkeypatch):
    texts = {f"common-{i}.txt": f"Printer note {i}: the printer works." for i in range(6)}
    ids = index_texts(bot, {**texts, "rare.txt": "The printer duplex unit.", "rarer.txt": "Duplex duplex."})
    monkeypatch.setattr(keyword, "CANDIDATE_CAP", 2)  # only "duplex" (2 chunks) is looked up, not "printer" (7)
    hits = [chunk_id for chunk_id, _ in services.keyword_search(services.active_chunks(bot), "printer duplex", 5)]
    assert set(hits) == {ids["rare.txt"], ids["rarer.txt"]}


def statistics_rows(bot_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM retrieval_keyword_statistics WHERE bot_id = %s", [bot_id])
        return cursor.fetchone()[0]


def test_deleting_a_bot_drops_its_statistics_at_once_and_leaves_other_bots_exact(bot, owner, index_texts):
    from bots import services as bots

    other = bots.create_bot(owner, "Printers", "The same manual.")
    index_texts(bot, MANUAL)
    index_texts(other, MANUAL)
    before = keyword.statistics(other.id)
    bots.delete_bot(owner, bot)
    # The trigger skipped the bot's chunks: counting them down would have left negative rows
    # behind the ones drop_keyword_statistics deleted.
    assert statistics_rows(bot.id) == 0
    assert keyword.statistics(other.id) == before
    assert_statistics_exact(other.id)


def test_a_bot_being_dropped_does_not_stop_other_bots_deletions_from_counting(bot, owner, index_texts):
    from bots import services as bots

    other = bots.create_bot(owner, "Printers", "The same manual.")
    index_texts(bot, MANUAL)
    index_texts(other, MANUAL)
    with transaction.atomic():
        keyword.drop_keyword_statistics(bot.id)
        # One statement deleting chunks of both bots: only the dropped bot's are skipped.
        Chunk.objects.filter(document__filename="fuser.txt").delete()
    assert_statistics_exact(other.id)
    assert "fuser" not in keyword.statistics(other.id)[2]
    assert statistics_rows(bot.id) == 0


def test_a_deleted_bots_term_statistics_are_dropped_with_it(bot, index_texts):
    index_texts(bot, MANUAL)
    bot_id = bot.id
    bot.delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM retrieval_keyword_statistics WHERE bot_id = %s", [bot_id])
        assert cursor.fetchone()[0] == 0
