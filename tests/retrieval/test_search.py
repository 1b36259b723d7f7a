"""Hybrid search: fusion of meaning and keywords, exact identifiers, bot isolation."""

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from bots import services as bots
from retrieval import services
from tests.conftest import wait_until_final

pytestmark = pytest.mark.django_db

PRINTER_MANUAL = {
    "codes.txt": "Code E-4417: tray 2 is open; close it firmly.",
    "overview.txt": "What does a printer error mean? Most printer error codes, such as E-4471, "
    "mean the printer needs attention from the service desk.",
    "fuser.txt": "Printer error E-7441 means the fuser overheated; let the printer cool down.",
    "toner.txt": "Printer error E-1744 means the toner is empty.",
    "help.txt": "If a printer shows an error, write down what the error code means and call the service desk.",
}


def test_hybrid_search_finds_the_exact_code_that_vector_search_misses(bot, index_texts):
    ids = index_texts(bot, PRINTER_MANUAL)
    question = "What does printer error E-4417 mean?"
    model = services.embedding_model_for(bot)
    vector_only = services.vector_search(
        services.active_chunks(bot), model, services.embed_texts([question])[0], limit=5
    )
    assert vector_only[0][0] != ids["codes.txt"]  # meaning alone prefers the chatty passages

    hybrid = services.search(bot, question, k=5).chunks
    assert hybrid[0].chunk_id == ids["codes.txt"]
    assert hybrid[0].keyword_score is not None and hybrid[0].vector_score is not None


def test_search_api_reports_all_three_scores(owner_api, bot, index_texts):
    index_texts(bot, PRINTER_MANUAL)
    body = owner_api.post(f"/api/v1/bots/{bot.id}/search", {"query": "toner empty", "k": 3}, "application/json")
    results = body.json()["results"]
    assert len(results) == 3
    assert results[0]["document_name"] == "toner.txt"
    assert {"score", "vector_score", "keyword_score", "text", "page", "chunk_id"} <= set(results[0])
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]


def test_search_filters_by_document(bot, index_texts):
    ids = index_texts(bot, PRINTER_MANUAL)
    document_id = services.active_chunks(bot).get(pk=ids["fuser.txt"]).document_id
    hits = services.search(bot, "printer error", k=5, document_ids=[document_id]).chunks
    assert [hit.chunk_id for hit in hits] == [ids["fuser.txt"]]


def test_keyword_queries_or_the_words_unless_the_user_wrote_syntax():
    assert services.keyword_query("what does E-4417 mean") == "what or does or E-4417 or mean"
    assert services.keyword_query('"paper tray" -printer') == '"paper tray" -printer'
    assert services.identifiers_in("Is INV-2024-118 paid, and v2.3?") == ["INV-2024-118", "v2.3"]


def test_fusion_weights_come_from_the_bot(bot, index_texts):
    index_texts(bot, PRINTER_MANUAL)
    bot.vector_weight, bot.keyword_weight = 1.0, 0.0
    hits = services.search(bot, "What does printer error E-4417 mean?", k=5).chunks
    assert hits[0].document_name != "codes.txt"  # keywords switched off: meaning alone decides


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_search_never_returns_another_bots_chunks_even_during_ingestion(owner, owner_api, index_texts):
    mine = bots.create_bot(owner, "Mine")
    theirs = bots.create_bot(owner, "Theirs")
    index_texts(mine, {"mine.txt": "The canteen opens at 11:30 on weekdays."})
    uploads = [
        owner_api.post(
            f"/api/v1/bots/{theirs.id}/documents",
            {"file": SimpleUploadedFile(f"theirs-{i}.txt", f"The canteen opens at {i}:00, says memo {i}.".encode())},
        ).json()[0]["id"]
        for i in range(6)
    ]
    leaks: list[str] = []

    def search_while_ingesting():
        from django.db import connection

        try:
            for _ in range(15):
                for hit in services.search(mine, "When does the canteen open?", k=10).chunks:
                    if hit.document_name != "mine.txt":
                        leaks.append(hit.document_name)
        finally:
            connection.close()

    searcher = threading.Thread(target=search_while_ingesting)
    searcher.start()
    for document_id in uploads:
        assert wait_until_final(document_id).status == "ready"
    searcher.join()
    assert leaks == []
    assert {hit.document_name for hit in services.search(theirs, "canteen", k=10).chunks} >= {"theirs-0.txt"}
