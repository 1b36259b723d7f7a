"""Ingestion that never gets stuck: a killed worker, re-uploads, versions, re-indexing, retry, delete."""

import io
import random
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from bots import services as bots
from documents import services
from documents.models import Chunk, Document, DocumentVersion, Page
from tests.conftest import FIXTURES, fixture_bytes, wait_until_final

WORDS = [
    "policy",
    "employee",
    "manager",
    "vacation",
    "expense",
    "travel",
    "laptop",
    "password",
    "security",
    "benefit",
    "salary",
    "office",
    "meeting",
    "project",
    "customer",
    "invoice",
    "contract",
    "training",
    "review",
    "budget",
    "team",
    "report",
    "holiday",
    "pension",
]


def long_text(words: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    sentences = []
    while sum(len(sentence.split()) for sentence in sentences) < words:
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + ".")
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5)]
    return "\n\n".join(paragraphs).encode()


def upload(client, bot_id: int, name: str, content: bytes):
    return client.post(f"/api/v1/bots/{bot_id}/documents", {"file": SimpleUploadedFile(name, content)})


def wait_for(condition, timeout: float = 90, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_killing_the_worker_mid_embedding_loses_nothing(celery_worker, owner_api, bot):
    bot.chunking_strategy, bot.chunk_size_tokens, bot.chunk_overlap_tokens = "fixed", 64, 0
    bot.save()
    (created,) = upload(owner_api, bot.id, "long.txt", long_text(40_000)).json()

    def embedding_underway():
        document = Document.objects.get(pk=created["id"])
        return document.status == "embedding" and 0 < document.chunks_done < document.chunks_total

    wait_for(embedding_underway, message="embedding to start")
    celery_worker.kill()
    killed = Document.objects.get(pk=created["id"])
    assert killed.status == "embedding"
    embedded_before_kill = Chunk.objects.filter(document_id=created["id"], embedding__isnull=False).count()

    celery_worker.start()  # its beat's sweeper re-queues the document whose task died
    document = wait_until_final(created["id"], timeout=180)
    assert document.status == "ready", document.error
    chunks = Chunk.objects.filter(document=document)
    assert chunks.count() == document.chunk_count == document.chunks_total
    assert sorted(chunks.values_list("ordinal", flat=True)) == list(range(document.chunk_count))
    assert not chunks.filter(is_active=False).exists()
    assert not chunks.filter(embedding__isnull=True).exists()
    assert embedded_before_kill > 0  # the restart resumed rather than starting over


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_reupload_with_same_content_does_no_work(owner_api, bot):
    (first,) = upload(owner_api, bot.id, "canteen.txt", fixture_bytes("canteen.txt")).json()
    document = wait_until_final(first["id"])
    chunk_ids = set(Chunk.objects.filter(document=document).values_list("id", flat=True))

    (again,) = upload(owner_api, bot.id, "canteen.txt", fixture_bytes("canteen.txt")).json()
    assert again == {
        "id": first["id"], "filename": "canteen.txt", "status": "ready", "version": 1, "unchanged": True, "error": "",
        "archive": None, "message": "", "left_out": [],
    }  # fmt: skip
    assert DocumentVersion.objects.filter(document=document).count() == 1
    assert set(Chunk.objects.filter(document=document).values_list("id", flat=True)) == chunk_ids


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_changed_content_becomes_version_two_and_can_be_rolled_back(owner_api, bot):
    (first,) = upload(owner_api, bot.id, "menu.txt", b"The canteen serves lasagne on Mondays.").json()
    wait_until_final(first["id"])
    (second,) = upload(owner_api, bot.id, "menu.txt", b"The canteen serves sushi on Mondays.").json()
    assert (second["id"], second["version"], second["unchanged"]) == (first["id"], 2, False)
    document = wait_until_final(first["id"])
    assert document.status == "ready"
    texts = list(Chunk.objects.filter(document=document).values_list("text", flat=True))
    assert texts == ["The canteen serves sushi on Mondays."]
    body = owner_api.get(f"/api/v1/documents/{first['id']}").json()
    assert [version["number"] for version in body["versions"]] == [2, 1]
    assert body["active_version"] == 2

    response = owner_api.post(f"/api/v1/documents/{first['id']}/rollback", {"version": 1}, "application/json")
    assert response.status_code == 202
    wait_for(lambda: Document.objects.get(pk=first["id"]).active_version.number == 1, message="rollback")
    assert list(Chunk.objects.filter(document_id=first["id"]).values_list("text", flat=True)) == [
        "The canteen serves lasagne on Mondays."
    ]


@pytest.mark.django_db
def test_old_chunks_answer_until_the_new_version_is_swapped_in(bot):
    from retrieval.services import search

    def ingest_now(content: bytes):
        upload = services.add_document(bot, SimpleUploadedFile("menu.txt", content), enqueue=False)
        return upload.document.current_version

    services.ingest_version(ingest_now(b"Lasagne is served on Mondays in the canteen.").id)
    version_two = ingest_now(b"Sushi is served on Mondays in the canteen.")
    progress = services.QuietProgress(version_two.document)
    services.parse_stage(version_two, progress)
    services.chunk_stage(version_two, bot, progress)
    services.embed_stage(version_two, bot, progress)

    def served() -> list[str]:
        return [hit.text for hit in search(bot, "What is served on Mondays?").chunks]

    assert served() == ["Lasagne is served on Mondays in the canteen."]
    assert services.activate(version_two, bot.index_version)
    assert served() == ["Sushi is served on Mondays in the canteen."]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_changing_the_chunking_reindexes_in_the_background_and_switches_at_once(owner_api, bot):
    ids = [upload(owner_api, bot.id, name, fixture_bytes(name)).json()[0]["id"] for name in ["handbook.pdf"]]
    ids.append(upload(owner_api, bot.id, "long.txt", long_text(1_500)).json()[0]["id"])
    for document_id in ids:
        assert wait_until_final(document_id).status == "ready"
    before = Chunk.objects.filter(bot=bot, is_active=True).count()

    response = owner_api.patch(
        f"/api/v1/bots/{bot.id}",
        {"chunking_strategy": "fixed", "chunk_size_tokens": 48, "chunk_overlap_tokens": 8},
        "application/json",
    )
    assert response.status_code == 200
    assert (response.json()["config_version"], response.json()["index_version"]) == (2, 2)
    bot.refresh_from_db()
    wait_for(lambda: services.reindex_progress(bot) == (2, 2), timeout=120, message="re-indexing")
    active = Chunk.objects.filter(bot=bot, is_active=True)
    assert set(active.values_list("index_version", flat=True)) == {2}
    assert active.count() > before
    assert not Chunk.objects.filter(bot=bot, is_active=False).exists()
    assert all(count <= 48 for count in active.values_list("token_count", flat=True))
    found = owner_api.post(f"/api/v1/bots/{bot.id}/search", {"query": "EXP-4471"}, "application/json").json()
    assert found["results"][0]["page"] == 3


@pytest.mark.django_db
def test_reindexing_many_small_documents_fills_each_encoder_batch_across_documents(bot, monkeypatch):
    from retrieval import services as retrieval

    notes = [f"Note {n}: the {WORDS[n % len(WORDS)]} key hangs in cabinet {n}." for n in range(40)]
    for n, note in enumerate(notes):
        added = services.add_document(bot, SimpleUploadedFile(f"note-{n}.txt", note.encode()), enqueue=False)
        services.ingest_version(added.document.current_version_id)
    bot.chunk_size_tokens, bot.index_version = 32, bot.index_version + 1
    bot.save(update_fields=["chunk_size_tokens", "index_version"])

    calls: list[int] = []
    real_embed_texts = retrieval.embed_texts

    def counting_embed_texts(texts, model=None):
        calls.append(len(texts))
        return real_embed_texts(texts, model)

    monkeypatch.setattr(retrieval, "embed_texts", counting_embed_texts)
    services.reindex_bot(bot.id)

    assert services.reindex_progress(bot) == (40, 40)
    assert sum(calls) == 40  # one passage each, every one embedded once
    assert len(calls) == 1  # in one encoder call (a batch holds 128), not one per document
    served = Chunk.objects.filter(bot=bot, is_active=True).values_list("text", flat=True)
    assert sorted(served) == sorted(notes)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_retry_and_delete(owner_api, bot):
    (failed,) = upload(owner_api, bot.id, "encrypted.pdf", fixture_bytes("encrypted.pdf")).json()
    document = wait_until_final(failed["id"])
    assert (document.status, document.error_kind) == ("failed", "input")
    response = owner_api.post(f"/api/v1/documents/{failed['id']}/retry")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert wait_until_final(failed["id"]).error == document.error

    (ready,) = upload(owner_api, bot.id, "canteen.txt", fixture_bytes("canteen.txt")).json()
    document = wait_until_final(ready["id"])
    stored = document.current_version.file.path
    assert owner_api.delete(f"/api/v1/documents/{ready['id']}").status_code == 204
    assert owner_api.get(f"/api/v1/documents/{ready['id']}").status_code == 404
    assert not Chunk.objects.filter(document_id=ready["id"]).exists()
    assert not Page.objects.filter(version__document_id=ready["id"]).exists()
    assert not __import__("os").path.exists(stored)


@pytest.mark.django_db
def test_sweeper_requeues_documents_whose_task_vanished(bot, settings):
    settings.DOCENT_STALE_SECONDS = 0
    upload = services.add_document(bot, SimpleUploadedFile("a.txt", b"Some text here."), enqueue=False)
    upload.document.mark_embedding(3)
    ready = services.add_document(bot, SimpleUploadedFile("b.txt", b"Other text."), enqueue=False).document
    ready.fail("The file is empty.")
    assert services.sweep_stuck_documents() == 1


@pytest.mark.django_db
def test_ingest_command_shows_progress_and_a_summary(bot, capsys):
    out = io.StringIO()
    call_command("ingest", bot.slug, str(FIXTURES / "canteen.txt"), str(FIXTURES / "encrypted.pdf"), stdout=out)
    summary = out.getvalue()
    assert "canteen.txt" in summary and "ready" in summary
    assert "password-protected" in summary
    assert "1 failed, 1 ready" in summary
    assert "Ingesting into" in capsys.readouterr().err  # tqdm's progress bar
    assert Document.objects.get(bot=bot, filename="canteen.txt").chunk_count >= 1


@pytest.mark.django_db
def test_ingest_command_unpacks_archives_as_an_upload_does(bot, tmp_path):
    archive = tmp_path / "handbooks.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("hr/canteen.txt", fixture_bytes("canteen.txt"))
        zipped.writestr("hr/onboarding.md", fixture_bytes("onboarding.md"))
        zipped.writestr("hr/logo.png", fixture_bytes("pixel.png"))
    (tmp_path / "photo.png").write_bytes(fixture_bytes("pixel.png"))
    out = io.StringIO()
    call_command("ingest", bot.slug, str(tmp_path), stdout=out)
    summary = out.getvalue()
    assert Document.objects.filter(bot=bot, status="ready").count() == 2
    names = set(Document.objects.filter(bot=bot).values_list("filename", flat=True))
    assert all(name.endswith(("canteen.txt", "onboarding.md")) for name in names) and len(names) == 2
    lines = {line.split()[0]: line for line in summary.splitlines() if line.strip()}
    assert "unpacked" in lines["handbooks.zip"] and "logo.png" in lines["handbooks.zip"]
    assert "refused" in lines["photo.png"]
    assert summary.rstrip().endswith("2 ready, 1 refused, 1 unpacked")


@pytest.mark.django_db
def test_too_many_pages_fail_with_a_reason(bot, settings):
    settings.DOCENT_MAX_PAGES = 2
    upload = services.add_document(bot, SimpleUploadedFile("handbook.pdf", fixture_bytes("handbook.pdf")), False)
    services.ingest_version(upload.document.current_version_id)
    upload.document.refresh_from_db()
    assert upload.document.status == "failed"
    assert "4 pages; the limit is 2" in upload.document.error


@pytest.mark.django_db  # the passage size limit comes from the embedding model's row
def test_bots_services_validate_settings():
    from bots.models import Bot

    bot = Bot(name="x", chunk_size_tokens=200, chunk_overlap_tokens=40)
    for changes in [{"chunk_size_tokens": 5}, {"chunk_overlap_tokens": 150}, {"chunking_strategy": "magic"}]:
        with pytest.raises(ValueError):
            bots._validate_settings(bot, changes)


@pytest.mark.django_db
def test_sweeper_requeues_a_bot_whose_reindexing_stalled(bot, settings, index_texts):
    settings.DOCENT_STALE_SECONDS = 0
    index_texts(bot, {"menu.txt": "Soup is served on Tuesdays."})
    assert services.sweep_stuck_documents() == 0
    bot.index_version += 1  # settings changed, and the re-indexing task died
    bot.save()
    assert services.sweep_stuck_documents() == 1


@pytest.mark.django_db
def test_pages_without_text_are_reported_and_the_rest_indexed(bot):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(FIXTURES / "handbook.pdf").pages:
        writer.add_page(page)
    writer.add_blank_page()
    writer.add_blank_page()
    pdf = io.BytesIO()
    writer.write(pdf)
    upload = services.add_document(bot, SimpleUploadedFile("scan-at-end.pdf", pdf.getvalue()), enqueue=False)
    services.ingest_version(upload.document.current_version_id)
    upload.document.refresh_from_db()
    assert upload.document.status == "ready"
    assert upload.document.notes == "Pages 5–6 are blank."
