"""BM25 keyword search: rare terms weigh more, statistics are the bot's, syntax still holds."""

import pytest

from retrieval import search as searching
from retrieval import services

pytestmark = pytest.mark.django_db

# Every passage says "printer" (so it tells passages apart poorly); only one says "fuser".
PRINTERS = {
    "chatty.txt": "Printer, printer, printer: our printer guide covers every printer and printer setting.",
    "fuser.txt": "The fuser overheated after a long print job; let it cool before opening the cover.",
    "tray.txt": "Close the printer tray firmly.",
    "toner.txt": "The printer toner is empty.",
    "paper.txt": "Load plain paper into the printer.",
}


def test_a_rare_query_term_outweighs_a_common_one_repeated(bot, index_texts):
    ids = index_texts(bot, PRINTERS)
    hits = services.keyword_search(services.active_chunks(bot), "printer fuser", limit=5)
    assert hits[0][0] == ids["fuser.txt"]  # ts_rank put the chunk repeating "printer" first
    assert ids["chatty.txt"] in [chunk_id for chunk_id, _ in hits]  # the common term still matches


def test_a_document_filter_narrows_the_results_but_not_the_term_statistics(bot, index_texts):
    ids = index_texts(bot, PRINTERS)
    everything = dict(services.keyword_search(services.active_chunks(bot), "toner", limit=5))
    toner_document = services.active_chunks(bot).get(pk=ids["toner.txt"]).document_id
    alone = dict(services.keyword_search(services.active_chunks(bot, [toner_document]), "toner", limit=5))
    assert list(alone) == [ids["toner.txt"]]
    # IDF is the bot's (one chunk of five says "toner"), as a search engine's filter leaves it.
    assert alone[ids["toner.txt"]] == pytest.approx(everything[ids["toner.txt"]])


def test_bm25_keyword_search_keeps_quotes_and_exclusions(bot, index_texts):
    ids = index_texts(bot, {**PRINTERS, "tray-paper.txt": "The paper tray of the copier jams."})
    hits = [chunk_id for chunk_id, _ in services.keyword_search(services.active_chunks(bot), '"paper tray"', 5)]
    assert hits == [ids["tray-paper.txt"]]  # the phrase, not either word
    hits = [chunk_id for chunk_id, _ in services.keyword_search(services.active_chunks(bot), "paper -printer", 5)]
    assert hits == [ids["tray-paper.txt"]]


def test_a_query_of_stop_words_or_odd_characters_finds_nothing_without_error(bot, index_texts):
    index_texts(bot, PRINTERS)
    chunks = services.active_chunks(bot)
    assert services.keyword_search(chunks, "the and of", 5) == []
    assert services.keyword_search(chunks, "it's a \\ back'slash: & | ! <-> toner", 5)[0][1] > 0


def test_search_takes_k_candidates_from_each_method_when_k_is_deeper_than_the_default(bot, index_texts, monkeypatch):
    index_texts(bot, PRINTERS)
    monkeypatch.setattr(searching, "CANDIDATES_PER_SEARCH", 1)
    bot.keyword_weight = 0.0  # meaning alone ranks: its list must hold all five
    assert len(services.search(bot, "printer trouble", k=5).chunks) == 5
