"""The pipeline end to end: API upload → real Celery worker → pgvector → search."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents.models import Chunk, Document
from tests.conftest import fixture_bytes, wait_until_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def upload(client, bot_id: int, *names: str):
    files = [SimpleUploadedFile(name, fixture_bytes(name)) for name in names]
    return client.post(f"/api/v1/bots/{bot_id}/documents", {"file": files})


def test_uploaded_pdf_becomes_ready_and_search_finds_the_right_page(owner_api, bot):
    response = upload(owner_api, bot.id, "handbook.pdf")
    assert response.status_code == 202
    (created,) = response.json()
    assert created["filename"] == "handbook.pdf"
    assert created["status"] == "queued"

    document = wait_until_final(created["id"])
    assert document.status == "ready", document.error
    body = owner_api.get(f"/api/v1/documents/{created['id']}").json()
    assert body["status"] == "ready"
    assert body["progress"] == 1.0
    assert body["chunk_count"] == Chunk.objects.filter(document_id=created["id"]).count() >= 4
    assert body["version"] == 1
    assert len(body["content_hash"]) == 64

    found = owner_api.post(
        f"/api/v1/bots/{bot.id}/search", {"query": "How many days of paid vacation do I get?"}, "application/json"
    ).json()["results"]
    assert found[0]["page"] == 2
    assert found[0]["document_name"] == "handbook.pdf"
    assert "25 days" in found[0]["text"]
    assert found[0]["vector_score"] > 0.3

    coded = owner_api.post(f"/api/v1/bots/{bot.id}/search", {"query": "EXP-4471"}, "application/json").json()
    assert coded["results"][0]["page"] == 3
    assert coded["results"][0]["keyword_score"] > 0


def test_chat_answers_with_citations_and_a_trace(owner_api, bot):
    (created,) = upload(owner_api, bot.id, "handbook.pdf").json()
    assert wait_until_final(created["id"]).status == "ready"

    reply = owner_api.post(
        f"/api/v1/bots/{bot.id}/chat", {"message": "How many vacation days do employees get?"}, "application/json"
    ).json()
    assert "25 days" in reply["answer"]
    assert "[1]" in reply["answer"]
    assert reply["citations"][0]["document_name"] == "handbook.pdf"
    assert reply["citations"][0]["page"] == 2
    trace = owner_api.get(f"/api/v1/traces/{reply['trace_id']}").json()
    assert trace["question"] == "How many vacation days do employees get?"
    assert any(chunk["cited"] for chunk in trace["chunks"])
    assert {"embed", "candidates", "fuse", "total"} <= set(trace["timings_ms"])

    follow_up = owner_api.post(
        f"/api/v1/bots/{bot.id}/chat",
        {"message": "What is the population of Mars?", "conversation_id": reply["conversation_id"]},
        "application/json",
    ).json()
    assert follow_up["conversation_id"] == reply["conversation_id"]
    assert follow_up["citations"] == []
    assert "couldn't find" in follow_up["answer"]


def test_bad_files_end_failed_with_a_reason_and_good_ones_still_work(owner_api, bot):
    response = upload(owner_api, bot.id, "empty.txt", "pixel.png", "corrupt.pdf", "encrypted.pdf", "canteen.txt")
    assert response.status_code == 202
    entries = response.json()
    # A kind of file Docent can't read is refused at once, without a document (tests/documents/test_zip_uploads.py).
    assert [item["filename"] for item in entries if item["status"] == "refused"] == ["pixel.png"]
    results = {item["filename"]: wait_until_final(item["id"]) for item in entries if item["id"]}
    assert results["canteen.txt"].status == "ready"
    reasons = {name: document.error for name, document in results.items() if document.status == "failed"}
    assert reasons == {
        "empty.txt": "The file is empty.",
        "corrupt.pdf": results["corrupt.pdf"].error,
        "encrypted.pdf": "This PDF is password-protected. Remove the password and upload it again.",
    }
    assert "damaged" in reasons["corrupt.pdf"]
    assert not Chunk.objects.filter(document__status=Document.Status.FAILED).exists()
