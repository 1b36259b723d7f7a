"""Small files share a worker turn: their passages are embedded together, and each one's trouble stays its own.

These tests serve turns in this process (services.ingest_next, as the Celery task does)
on the test's own uncommitted rows: their messages really go to the broker, where a
running test worker finds nothing to do with them.
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

import retrieval.services
from bots import services as bots
from documents import services
from documents.models import Chunk, Document
from tests.conftest import fixture_bytes
from tests.documents.test_queue import purge_ingest_queue

NOTES = {
    "canteen.txt": b"The canteen serves soup on Tuesdays and fish on Fridays.",
    "parking.txt": b"Staff park in the north car park; visitors use the south one.",
    "laptops.txt": b"Laptops are replaced every four years by the IT desk.",
    "holidays.txt": b"Everyone has 25 days of paid holiday a year, plus public holidays.",
    "expenses.txt": b"Expenses are claimed within 30 days, with receipts attached.",
}


@pytest.fixture(autouse=True)
def long_turns(settings):
    settings.DOCENT_INGEST_SLICE_SECONDS = 60  # a turn has time for every file these tests drop
    yield
    purge_ingest_queue()  # the messages name rows that roll back with the test


@pytest.fixture
def encoder_calls(monkeypatch) -> list[list[str]]:
    """The texts of each call ingestion makes to the encoder (which still runs for real)."""
    calls: list[list[str]] = []
    encode = retrieval.services.embed_texts

    def counting(texts, model=None):
        calls.append(list(texts))
        return encode(texts, model)

    monkeypatch.setattr(retrieval.services, "embed_texts", counting)
    return calls


def queued(bot, files: dict[str, bytes]) -> list[Document]:
    """Upload `files` and queue them as an upload does (a message per document in the broker)."""
    uploads = services.add_documents(bot, [SimpleUploadedFile(name, content) for name, content in files.items()], False)
    for upload in uploads:
        assert services.enqueue_ingest(upload.document.current_version_id)
    return [upload.document for upload in uploads]


def statuses(bot) -> dict[str, str]:
    return dict(Document.objects.filter(bot=bot).values_list("filename", "status"))


@pytest.mark.django_db
def test_one_turn_embeds_the_passages_of_several_small_files_in_one_encoder_call(bot, encoder_calls):
    documents = queued(bot, NOTES)

    services.ingest_next(documents[0].current_version_id)

    assert set(statuses(bot).values()) == {"ready"}
    assert len(encoder_calls) == 1
    assert sorted(encoder_calls[0]) == sorted(content.decode() for content in NOTES.values())
    for document in Document.objects.filter(bot=bot):
        chunks = Chunk.objects.filter(document=document)
        assert chunks.count() == document.chunk_count == 1
        assert not chunks.filter(is_active=False).exists()
        assert not chunks.filter(embedding__isnull=True).exists()

    # The other files' messages, when their turn comes, find nothing left to do.
    services.ingest_next(documents[1].current_version_id)
    assert len(encoder_calls) == 1


@pytest.mark.django_db
def test_a_file_that_cannot_be_read_fails_alone_and_the_rest_of_its_turn_is_ready(bot, encoder_calls):
    files = {"empty.txt": b"", "encrypted.pdf": fixture_bytes("encrypted.pdf"), **NOTES}
    documents = queued(bot, files)

    services.ingest_next(documents[0].current_version_id)

    failed = {document.filename: document for document in Document.objects.filter(bot=bot, status="failed")}
    assert set(failed) == {"empty.txt", "encrypted.pdf"}
    assert {document.error_kind for document in failed.values()} == {"input"}
    assert "password" in failed["encrypted.pdf"].error
    assert failed["empty.txt"].error
    assert {name: status for name, status in statuses(bot).items() if name in NOTES} == dict.fromkeys(NOTES, "ready")
    assert len(encoder_calls) == 1


@pytest.mark.django_db
def test_a_file_missing_from_storage_fails_as_our_error_and_the_rest_of_its_turn_is_ready(bot):
    documents = queued(bot, NOTES)
    lost = documents[2]
    lost.current_version.file.delete(save=False)

    services.ingest_next(documents[0].current_version_id)

    lost.refresh_from_db()
    assert (lost.status, lost.error_kind, lost.error) == ("failed", "internal", services.INTERNAL_ERROR)
    others = {name: status for name, status in statuses(bot).items() if name != lost.filename}
    assert set(others.values()) == {"ready"}


@pytest.mark.django_db
def test_a_file_deleted_while_its_turn_embeds_drops_out_quietly(bot, monkeypatch):
    documents = queued(bot, NOTES)
    doomed = documents[1]
    encode = retrieval.services.embed_texts

    def encode_then_delete(texts, model=None):
        vectors = encode(texts, model)
        services.delete_document(Document.objects.get(pk=doomed.pk))  # while the batch is in the encoder
        return vectors

    monkeypatch.setattr(retrieval.services, "embed_texts", encode_then_delete)
    services.ingest_next(documents[0].current_version_id)

    assert not Document.objects.filter(pk=doomed.pk).exists()
    assert not Chunk.objects.filter(document_id=doomed.pk).exists()
    assert statuses(bot) == {name: "ready" for name in NOTES if name != doomed.filename}


@pytest.mark.django_db
def test_a_shared_turn_takes_the_first_file_of_each_waiting_bot_before_the_second_of_any(owner, bot, monkeypatch):
    monkeypatch.setattr(services, "TURN_DOCUMENTS", 3)
    travel = bots.create_bot(owner, "Travel", "Answers travel questions.")
    handbook = queued(bot, dict(list(NOTES.items())[:3]))
    queued(travel, {"visa.txt": b"A visa takes ten days.", "trains.txt": b"Book trains a week ahead."})

    services.ingest_next(handbook[0].current_version_id)

    assert statuses(bot) == {"canteen.txt": "ready", "parking.txt": "ready", "laptops.txt": "queued"}
    assert statuses(travel) == {"visa.txt": "ready", "trains.txt": "queued"}


@pytest.mark.django_db
def test_files_embedded_by_another_model_wait_for_a_turn_of_their_own(owner, bot, encoder_calls):
    from retrieval.models import EmbeddingModel

    default = retrieval.services.default_embedding_model()
    other = EmbeddingModel.objects.create(
        name="same weights, other row", source=default.source, dimensions=default.dimensions, max_tokens=256
    )
    travel = bots.create_bot(owner, "Travel", "Answers travel questions.")
    travel.embedding_model = other
    travel.save()
    handbook = queued(bot, dict(list(NOTES.items())[:2]))
    queued(travel, {"visa.txt": b"A visa takes ten days."})

    services.ingest_next(handbook[0].current_version_id)
    assert set(statuses(bot).values()) == {"ready"}
    assert statuses(travel) == {"visa.txt": "queued"}

    services.ingest_next(handbook[1].current_version_id)  # a message whose work is done serves the next in line
    assert statuses(travel) == {"visa.txt": "ready"}
    assert len(encoder_calls) == 2


@pytest.mark.django_db
def test_a_small_file_goes_from_queued_to_ready_without_writing_each_step(bot, settings):
    from documents.models import Page

    settings.DOCENT_INGEST_SLICE_SECONDS = 0  # a turn per stage, to look between them
    (document,) = queued(bot, {"canteen.txt": NOTES["canteen.txt"]})

    services.ingest_next(document.current_version_id)  # parses it
    document.refresh_from_db()
    assert Page.objects.filter(version_id=document.current_version_id).exists()
    assert (document.status, document.pages_total) == ("queued", 0)

    for _ in range(5):  # chunk, embed and activate: a turn each at most
        services.ingest_next(document.current_version_id)
        document.refresh_from_db()
    assert (document.status, document.chunk_count) == ("ready", 1)
