"""Documents' public entry points: upload, ingestion, re-indexing, versions, deletion.

These functions own their transactions. Views, API endpoints, tasks and management
commands call them and hold no ingestion logic of their own.

Ingestion of one version runs in stages, each resumable after a crash:
  parse  → the file's text is stored as Pages (skipped once version.page_count is set)
  chunk  → Pages become inactive Chunks without embeddings (skipped once
           version.chunked_index_version matches the bot's index version)
  embed  → chunks still without an embedding are embedded in batches
  activate → one transaction swaps the document's active chunks for the new ones.
A worker killed mid-way loses at most one batch; the re-run picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from pgvector.django import VectorField

from documents import chunkers, filenames, parsers
from documents.models import Chunk, Document, DocumentVersion, Page

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "Something went wrong on our side while processing this file (internal error). Press Retry."
# Seconds between progress writes while parsing, so a 2,000-page PDF isn't 2,000 UPDATEs.
PROGRESS_INTERVAL = 0.5
PAGE_BATCH = 50
CHUNK_BATCH = 500
# pg_try_advisory_lock key space for "a worker is ingesting document N".
_LOCK_NAMESPACE = 7406


class UploadRefused(Exception):
    """Nothing of the upload was stored. `status` is the HTTP status that fits."""

    status = 400


class UploadTooLarge(UploadRefused):
    status = 413


class TooManyFiles(UploadRefused):
    status = 413


class BotFull(UploadRefused):
    status = 409


class UploadNotReceived(UploadRefused):
    """The server could not take the files in (its temporary directory is full or unwritable)."""

    status = 507


class FileNotStored(UploadRefused):
    """A file could not be written to storage; nothing of it was kept."""

    status = 422


class NothingStored(UploadRefused):
    """No file of the upload could be stored; `refused` has each file's reason."""

    status = 422

    def __init__(self, refused: list[Refused]):
        self.refused = refused
        super().__init__(" ".join(refusal.message for refusal in refused))


@dataclass(frozen=True)
class Upload:
    document: Document
    unchanged: bool  # same name and same content as the current version: no work queued


@dataclass(frozen=True)
class Refused:
    """A file of a multi-file upload that was not stored (the others were), and why."""

    filename: str
    reason: str

    @property
    def message(self) -> str:
        return f"{self.filename} was not stored: {self.reason}"


# --- Upload ----------------------------------------------------------------------------


def max_upload_bytes() -> int:
    return settings.DOCENT_MAX_UPLOAD_MB * 1024 * 1024


def check_upload(bot, files: list[UploadedFile]) -> None:
    """Refuse the whole upload if any file is too large or the bot is full, before storing anything."""
    if not files:
        raise UploadRefused("Choose or drop at least one file.")
    if len(files) > settings.DOCENT_MAX_FILES_PER_UPLOAD:
        raise TooManyFiles(too_many_files_reason())
    for upload in files:
        if upload.size > max_upload_bytes():
            raise UploadTooLarge(
                f"{upload.name} is {upload.size / 1024 / 1024:.1f} MB; "
                f"the limit is {settings.DOCENT_MAX_UPLOAD_MB} MB per file."
            )
    existing = set(Document.objects.filter(bot=bot).values_list("filename", flat=True))
    new_names = {clean_filename(upload.name) for upload in files} - existing
    if len(existing) + len(new_names) > settings.DOCENT_MAX_DOCUMENTS_PER_BOT:
        raise BotFull(
            f"This bot can hold {settings.DOCENT_MAX_DOCUMENTS_PER_BOT} documents; delete some before adding more."
        )


def too_many_files_reason() -> str:
    limit = settings.DOCENT_MAX_FILES_PER_UPLOAD
    return f"At most {limit} files can be uploaded at once. Upload the rest separately."


def uploaded_files(request, field: str = "file") -> list[UploadedFile]:
    """The files of an upload request, or the refusal that receiving them ended in.

    documents.uploads.UploadHandler stops reading a request with too many files, or
    one its temporary directory can't hold, and leaves the reason on the request.
    """
    files = request.FILES.getlist(field)
    if refusal := getattr(request, "upload_refusal", None):
        raise refusal
    return files


def add_documents(bot, files: list[UploadedFile], enqueue: bool = True) -> list[Upload | Refused]:
    """Store every file, or say for each file that was not stored why not.

    Limits on the whole upload (file size, number of files, room in the bot) refuse it
    before anything is stored. After that, a file that can't be written (disk full, I/O
    error) leaves nothing behind and is reported as Refused while the others are stored;
    if none could be stored, NothingStored is raised. Results are in the files' order.
    """
    check_upload(bot, files)
    results: list[Upload | Refused] = []
    for upload in files:
        try:
            results.append(_store(bot, upload, enqueue))
        except FileNotStored as exc:
            results.append(Refused(clean_filename(upload.name), str(exc)))
    if all(isinstance(result, Refused) for result in results):
        raise NothingStored([result for result in results if isinstance(result, Refused)])
    return results


def add_document(bot, upload: UploadedFile, enqueue: bool = True) -> Upload:
    """Store `upload` as a new version of the bot's document of that name and queue ingestion.

    A name the bot doesn't have yet creates the document. Content identical to the
    current version (same SHA-256) queues nothing, unless that version failed.
    With enqueue=False the caller runs ingest_version itself (the ingest command).
    Raises UploadRefused (FileNotStored when the file can't be written).
    """
    check_upload(bot, [upload])
    return _store(bot, upload, enqueue)


def _store(bot, upload: UploadedFile, enqueue: bool) -> Upload:
    """Store one file whose upload passed check_upload: all of it and its rows, or nothing.

    The document keeps the uploaded name (clean_filename); the stored file gets a name
    that fits the filesystem (DocumentVersion.file's upload_to). A failure after the
    file was written removes the file and any folder left empty.
    """
    filename = clean_filename(upload.name)
    version = None
    try:
        content_hash = _sha256(upload)
        with transaction.atomic():
            document, _ = Document.objects.select_for_update().get_or_create(bot=bot, filename=filename)
            current = document.current_version
            if current and current.content_hash == content_hash and document.status != Document.Status.FAILED:
                return Upload(document=document, unchanged=True)
            latest = document.versions.order_by("-number").first()
            version = DocumentVersion(
                document=document,
                number=(latest.number + 1) if latest else 1,
                content_hash=content_hash,
                size_bytes=upload.size,
            )
            upload.seek(0)
            version.file.save(filename, upload, save=False)
            version.save()
            document.current_version = version
            document.save(update_fields=["current_version"])
            document.mark_queued()
            if enqueue:
                transaction.on_commit(lambda: enqueue_ingest(version.id))
    except (OSError, SuspiciousFileOperation) as exc:
        _discard_stored_file(version, filename)
        logger.warning("Could not store %s for bot %s: %r", filename, bot.pk, exc)
        raise FileNotStored(_storage_failure_reason(exc)) from exc
    except BaseException:
        _discard_stored_file(version, filename)
        raise
    return Upload(document=document, unchanged=False)


def _discard_stored_file(version: DocumentVersion | None, filename: str) -> None:
    """Remove what a failed _store wrote: the whole or partial file, then folders left empty."""
    if version is None:
        return
    storage = version.file.storage
    # A write that failed part-way never set version.file.name; the name it was writing is
    # the one upload_to gives (a taken name would differ, but versions' names are unique).
    name = version.file.name or version.file.field.generate_filename(version, filename)
    try:
        storage.delete(name)
        path = Path(storage.path(name))
    except (OSError, NotImplementedError):
        return
    documents_root = Path(storage.path("documents"))
    # doc-<id>, then bot-<id>: rmdir only removes a folder that is empty.
    for folder in (path.parent, path.parent.parent):
        if documents_root in folder.parents:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _storage_failure_reason(exc: Exception) -> str:
    if isinstance(exc, SuspiciousFileOperation):
        return "its name can't be used for a stored file. Rename it and upload it again."
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "the server has no room left to store it. Ask an administrator to free some space."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the server is not allowed to write it. Ask an administrator to check the storage folder."
    # strerror only: the exception's text may name server paths.
    detail = f" ({exc.strerror})" if exc.strerror else ""
    return f"the server could not write it{detail}. Try again, or ask an administrator."


def enqueue_ingest(version_id: int) -> None:
    from documents.tasks import ingest

    ingest.delay(version_id)


def clean_filename(name: str) -> str:
    """The name a document is shown under: the uploaded name, without folders, capped in length."""
    return filenames.display_name(name, Document._meta.get_field("filename").max_length)


def _sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for block in upload.chunks():
        digest.update(block)
    return digest.hexdigest()


# --- Ingestion -------------------------------------------------------------------------


class DocumentProgress:
    """Reports ingestion progress on the document row (what the UI and API show)."""

    def __init__(self, document: Document):
        self.document = document
        self._last_write = 0.0

    def parsing(self, pages_total: int) -> None:
        self.document.mark_parsing(pages_total)

    def pages(self, done: int, final: bool = False) -> None:
        if final or time.monotonic() - self._last_write > PROGRESS_INTERVAL:
            self.document.record_pages(done)
            self._last_write = time.monotonic()

    def chunking(self) -> None:
        self.document.mark_chunking()

    def embedding(self, total: int, done: int) -> None:
        self.document.mark_embedding(total)
        self.document.record_embedded(done)

    def embedded(self, done: int) -> None:
        self.document.record_embedded(done)


class QuietProgress(DocumentProgress):
    """For re-indexing a ready document: it keeps showing `ready`; only its heartbeat moves."""

    def parsing(self, pages_total: int) -> None:
        self.document.heartbeat()

    def pages(self, done: int, final: bool = False) -> None:
        pass

    def chunking(self) -> None:
        self.document.heartbeat()

    def embedding(self, total: int, done: int) -> None:
        self.document.heartbeat()

    def embedded(self, done: int) -> None:
        self.document.heartbeat()


def ingest_version(version_id: int) -> None:
    """Parse, chunk and embed one version, then make it the document's active version.

    Safe to run twice or concurrently: only one worker holds a document at a time,
    an active version does no work, a superseded version is skipped, and each stage
    resumes what an interrupted run left behind.
    """
    version = DocumentVersion.objects.select_related("document__bot").filter(pk=version_id).first()
    if version is None:
        return  # deleted since it was queued
    with _document_lock(version.document_id) as acquired:
        if not acquired:
            return  # another worker is on it
        document = Document.objects.select_related("bot").get(pk=version.document_id)
        if document.current_version_id != version.id:
            return  # a newer upload (or a rollback) replaced it
        bot = document.bot
        if document.status == Document.Status.READY and _is_indexed(document, version, bot.index_version):
            return
        progress = DocumentProgress(document)
        try:
            parse_stage(version, progress)
            chunk_stage(version, bot, progress)
        except parsers.ParseError as exc:
            document.fail(str(exc))
            return
        embed_stage(version, bot, progress)
        activate(version, bot.index_version)


def _is_indexed(document: Document, version: DocumentVersion, index_version: int) -> bool:
    return (
        document.active_version_id == version.id
        and Chunk.objects.filter(document=document, is_active=True, index_version=index_version).exists()
    )


@contextlib.contextmanager
def _document_lock(document_id: int) -> Iterator[bool]:
    """A Postgres advisory lock, released when we finish or when our connection dies (worker killed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, document_id])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, document_id])


def parse_stage(version: DocumentVersion, progress: DocumentProgress) -> None:
    """Store the version's pages; raises ParseError for files that can't be read."""
    if version.page_count is not None:
        return
    path = Path(version.file.path)
    filename = version.document.filename
    pages_total = parsers.page_count(path)
    if pages_total > settings.DOCENT_MAX_PAGES:
        raise parsers.ParseError(
            f"This file has {pages_total} pages; the limit is {settings.DOCENT_MAX_PAGES}. "
            "Split it and upload the parts."
        )
    progress.parsing(pages_total)
    Page.objects.filter(version=version).delete()
    batch: list[Page] = []
    empty_pages: list[int] = []
    stored = 0
    try:
        for page in parsers.parse(path, filename):
            batch.append(Page(version=version, number=page.number, text=page.text))
            if not page.text.strip():
                empty_pages.append(page.number)
            if len(batch) >= PAGE_BATCH:
                stored += len(Page.objects.bulk_create(batch))
                batch = []
                progress.pages(stored)
    except parsers.ParseError:
        raise
    except (RecursionError, MemoryError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # Parsers choke on malformed input in many ways; that is the file's fault, not ours.
        logger.warning("Parser crashed on %s: %r", filename, exc)
        raise parsers.ParseError("This file is damaged or in an unexpected format and can't be read.") from exc
    stored += len(Page.objects.bulk_create(batch))
    progress.pages(stored, final=True)
    with transaction.atomic():
        version.page_count = stored
        version.save(update_fields=["page_count"])
        if empty_pages and stored > 1:
            pages = f"{_plural('page', len(empty_pages))} {parsers.describe_page_ranges(empty_pages)}"
            version.document.notes = f"No extractable text on {pages} (scanned images?); the rest is indexed."
            version.document.save(update_fields=["notes"])


def _plural(word: str, count: int) -> str:
    return word if count == 1 else word + "s"


def chunk_stage(version: DocumentVersion, bot, progress: DocumentProgress) -> None:
    """Turn the version's pages into inactive, not yet embedded chunks for the bot's index version."""
    index_version = bot.index_version
    already_chunked = Chunk.objects.filter(version=version, index_version=index_version).exists()
    if version.chunked_index_version == index_version and already_chunked:
        return  # a resumed run: the chunks are written (an activated-then-replaced version has none left)
    progress.chunking()
    from retrieval.services import embedder, embedding_model_for

    model = embedding_model_for(bot)
    size = max(16, min(bot.chunk_size_tokens, model.max_tokens - 2))
    overlap = max(0, min(bot.chunk_overlap_tokens, size // 2))
    pages = (
        parsers.ParsedPage(number=number, text=text)
        for number, text in Page.objects.filter(version=version).order_by("number").values_list("number", "text")
    )
    drafts = chunkers.chunk_pages(pages, embedder(model), bot.chunking_strategy, size, overlap)
    with transaction.atomic():
        Chunk.objects.filter(version=version, index_version=index_version, is_active=False).delete()
        batch: list[Chunk] = []
        for ordinal, draft in enumerate(drafts):
            batch.append(
                Chunk(
                    bot_id=bot.id,
                    document_id=version.document_id,
                    version=version,
                    index_version=index_version,
                    ordinal=ordinal,
                    page=draft.page,
                    heading_path=draft.heading_path[:500],
                    text=draft.text,
                    token_count=draft.token_count,
                )
            )
            if len(batch) >= CHUNK_BATCH:
                Chunk.objects.bulk_create(batch)
                batch = []
        Chunk.objects.bulk_create(batch)
        if not Chunk.objects.filter(version=version, index_version=index_version).exists():
            raise parsers.ParseError("The file contains no text to index.")
        version.chunked_index_version = index_version
        version.save(update_fields=["chunked_index_version"])


def embed_stage(version: DocumentVersion, bot, progress: DocumentProgress) -> None:
    """Embed the version's chunks that have no embedding yet, one batch at a time."""
    from retrieval.services import embed_texts, embedding_model_for

    model = embedding_model_for(bot)
    pending = Chunk.objects.filter(version=version, index_version=bot.index_version)
    total = pending.count()
    done = total - pending.filter(embedding__isnull=True).count()
    progress.embedding(total, done)
    batch_size = settings.DOCENT_EMBEDDING_BATCH_SIZE * 4
    to_db = VectorField().get_prep_value
    while True:
        batch = list(pending.filter(embedding__isnull=True).order_by("ordinal").values_list("id", "text")[:batch_size])
        if not batch:
            break
        vectors = embed_texts([text for _, text in batch], model)
        with connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE documents_chunk SET embedding = %s::vector, dimensions = %s WHERE id = %s",
                [
                    (to_db(vector), model.dimensions, chunk_id)
                    for (chunk_id, _), vector in zip(batch, vectors, strict=True)
                ],
            )
        done += len(batch)
        progress.embedded(done)


def activate(version: DocumentVersion, index_version: int) -> bool:
    """Swap the document's active chunks for `version`'s at `index_version`, in one transaction.

    Returns False (and changes nothing) if the version was superseded meanwhile.
    """
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=version.document_id)
        if document.current_version_id != version.id:
            return False
        new_chunks = Chunk.objects.filter(version=version, index_version=index_version)
        Chunk.objects.filter(document=document, is_active=True).exclude(pk__in=new_chunks).delete()
        # Unfinished chunks of older versions can never become active any more.
        Chunk.objects.filter(document=document, is_active=False).exclude(version=version).delete()
        count = new_chunks.update(is_active=True)
        document.mark_ready(version, chunk_count=count)
    return True


def fail_internal(version_id: int) -> None:
    """Our fault, retries used up: mark the document failed so it never hangs in a running state."""
    document = Document.objects.filter(current_version_id=version_id).first()
    if document and not document.is_final:
        document.fail(INTERNAL_ERROR, kind=Document.ErrorKind.INTERNAL)


# --- Re-indexing after settings change -------------------------------------------------


def reindex_bot(bot_id: int) -> None:
    """Re-chunk and re-embed every ready document of a bot for its current index version.

    The bot keeps answering from the old chunks while this runs; when every
    document has its new chunks, one transaction swaps them all. A newer settings
    change (higher index version) makes this run stop; the newer run finishes.
    """
    from bots.models import Bot  # the bot row is the application layer's; read only

    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is None:
        return
    index_version = bot.index_version
    documents = Document.objects.filter(bot=bot, status=Document.Status.READY, active_version__isnull=False)
    prepared: list[DocumentVersion] = []
    for document in documents.select_related("active_version"):
        version = document.active_version
        if _is_indexed(document, version, index_version):
            continue
        with _document_lock(document.id) as acquired:
            if not acquired:
                continue  # being ingested: that run uses the new settings already
            progress = QuietProgress(document)
            try:
                parse_stage(version, progress)
                chunk_stage(version, bot, progress)
            except parsers.ParseError as exc:
                # Under the new settings this document can't be indexed: say so on its row
                # (with Retry) rather than leave the bot "re-indexing" forever.
                Chunk.objects.filter(document=document).delete()
                document.fail(f"Could not be re-indexed with the new settings: {exc}")
                continue
            embed_stage(version, bot, progress)
            prepared.append(version)
        if Bot.objects.filter(pk=bot_id, index_version__gt=index_version).exists():
            return
    with transaction.atomic():
        if Bot.objects.select_for_update().filter(pk=bot_id, index_version__gt=index_version).exists():
            return
        for version in prepared:
            activate(version, index_version)


def reindex_progress(bot) -> tuple[int, int]:
    """(documents indexed with the bot's current settings, documents that should be)."""
    ready = Document.objects.filter(bot=bot, status=Document.Status.READY)
    current = ready.filter(chunks__is_active=True, chunks__index_version=bot.index_version).distinct().count()
    return current, ready.count()


def enqueue_reindex(bot_id: int) -> None:
    from documents.tasks import reindex

    transaction.on_commit(lambda: reindex.delay(bot_id))


# --- Sweeper, retry, rollback, delete ----------------------------------------------------


def sweep_stuck_documents() -> int:
    """Re-queue running documents whose row hasn't moved for DOCENT_STALE_SECONDS.

    Their task was lost (worker killed, broker restarted). Re-queueing is safe:
    ingestion is idempotent and holds a per-document lock. Bots left half re-indexed
    are re-queued the same way. Returns how many tasks were queued.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.DOCENT_STALE_SECONDS)
    running = [status for status in Document.Status if status not in Document.FINAL_STATUSES]
    stale = Document.objects.filter(status__in=running, updated_at__lt=cutoff, current_version__isnull=False)
    count = 0
    for document in stale:
        document.heartbeat()  # so the next sweep waits a full period before trying again
        enqueue_ingest(document.current_version_id)
        count += 1
    # Bots whose re-indexing task died: documents still on an older index, untouched for a while.
    stalled_bots = (
        Chunk.objects.filter(is_active=True, index_version__lt=F("bot__index_version"), document__updated_at__lt=cutoff)
        .values_list("bot_id", flat=True)
        .distinct()
    )
    for bot_id in stalled_bots:
        enqueue_reindex(bot_id)
        count += 1
    if count:
        logger.info("Re-queued %d stuck document(s) or re-indexing(s)", count)
    return count


def retry(document: Document) -> Document:
    """Queue a failed document's current version again."""
    if document.status != Document.Status.FAILED or document.current_version_id is None:
        raise ValueError("Only a failed document can be retried.")
    version_id = document.current_version_id
    with transaction.atomic():
        document.mark_queued()
        transaction.on_commit(lambda: enqueue_ingest(version_id))
    return document


def rollback(document: Document, number: int) -> Document:
    """Make an earlier version current again; it is re-indexed and then replaces the active chunks."""
    version = document.versions.filter(number=number).first()
    if version is None:
        raise ValueError(f"This document has no version {number}.")
    with transaction.atomic():
        document.current_version = version
        document.save(update_fields=["current_version"])
        document.mark_queued()
        transaction.on_commit(lambda: enqueue_ingest(version.id))
    return document


def delete_document(document: Document) -> None:
    """Delete the document, its versions, pages and chunks, and its stored files."""
    files = [version.file for version in document.versions.all()]
    with transaction.atomic():
        document.delete()
        transaction.on_commit(lambda: [stored.delete(save=False) for stored in files])


# --- Lookups for the application layer ---------------------------------------------------


def documents_of_bots(bots):
    """Documents belonging to any bot of `bots` (the caller's visibility filter)."""
    return Document.objects.filter(bot__in=bots).select_related("current_version", "active_version")


def versions_of(document: Document):
    return document.versions.order_by("-number")


def any_running(documents) -> bool:
    return any(not document.is_final for document in documents)
