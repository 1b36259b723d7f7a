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

import bisect
import collections
import contextlib
import dataclasses
import errno
import functools
import hashlib
import itertools
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import kombu.exceptions
import structlog
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, SuspiciousFileOperation
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, Count, F, Max, Q, Subquery, Sum, When
from django.db.models.functions import Length
from django.utils import timezone
from pgvector.django import VectorField

from documents import archives, chunkers, filenames, parsers, signals
from documents.models import Chunk, Document, DocumentVersion, Page
from documents.storage import local_copy

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "Something went wrong on our side while processing this file (internal error). Press Retry."
# Seconds between progress writes while parsing, so a 2,000-page PDF isn't 2,000 UPDATEs.
PROGRESS_INTERVAL = 0.5
PAGE_BATCH = 50
CHUNK_BATCH = 500
# pg_try_advisory_lock key space for "a worker is ingesting document N".
_LOCK_NAMESPACE = 7406
# ... and for "a worker is re-indexing bot N".
_REINDEX_LOCK_NAMESPACE = 7407
RUNNING_STATUSES = [status for status in Document.Status if status not in Document.FINAL_STATUSES]
# Ours, not the file's, and not one document's: worth retrying the task with backoff.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


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


class UnsupportedFiles(NothingStored):
    """Every file of the upload is of a kind Docent can't read (or an archive holding none it can)."""

    status = 415


@dataclass(frozen=True)
class Upload:
    document: Document
    unchanged: bool  # same name and same content as the current version: no work queued
    archive: str = ""  # the ZIP archive the file was unpacked from


@dataclass(frozen=True)
class Refused:
    """A file of a multi-file upload that was not stored (the others were), and why."""

    filename: str
    reason: str
    unsupported: bool = False  # a kind of file Docent can't read, rather than one it could not store

    @property
    def message(self) -> str:
        return f"{self.filename} was not stored: {self.reason}"


@dataclass(frozen=True)
class Unpacked:
    """A ZIP archive whose readable files became documents (they follow it in the results), and what was left out."""

    archive: str
    added: int
    left_out: tuple[archives.LeftOut, ...] = ()

    @property
    def message(self) -> str:
        """One summary for the person who uploaded the archive."""
        added = f"{self.archive} was unpacked into {self.added} {_plural('document', self.added)}."
        if not self.left_out:
            return added
        return f"{added} {_left_out_summary(self.left_out)}"


def _left_out_summary(left_out: tuple[archives.LeftOut, ...] | list[archives.LeftOut]) -> str:
    members = "; ".join(f"{member.name}: {member.reason.rstrip('.')}" for member in left_out)
    return (
        f"Left out ({len(left_out)} {_plural('file', len(left_out))}): {members}. "
        f"Docent reads {parsers.SUPPORTED_DESCRIPTION}."
    )


# --- Upload ----------------------------------------------------------------------------


def max_upload_bytes() -> int:
    return settings.DOCENT_MAX_UPLOAD_MB * 1024 * 1024


def check_upload(bot, files: list[UploadedFile]) -> set[str]:
    """Refuse the whole upload if any file is too large or the bot is full, before storing anything.

    Returns the names of the bot's documents.
    """
    _check_files(files)
    return _check_room(bot, files)


def _check_files(files: list[UploadedFile]) -> None:
    """Refuse an upload with no files, too many, or a file over the size limit."""
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


def _check_room(bot, files: list[UploadedFile]) -> set[str]:
    """Refuse files that would take the bot past its number of documents; returns the names it has."""
    existing = set(Document.objects.filter(bot=bot).values_list("filename", flat=True))
    new_names = {document_name(upload) for upload in files} - existing
    if len(existing) + len(new_names) > settings.DOCENT_MAX_DOCUMENTS_PER_BOT:
        raise BotFull(
            f"This bot can hold {settings.DOCENT_MAX_DOCUMENTS_PER_BOT} documents; delete some before adding more."
        )
    return existing


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


def add_documents(bot, files: list[UploadedFile], enqueue: bool = True) -> list[Upload | Refused | Unpacked]:
    """Store every file Docent can read, unpack ZIP archives, and say for each file not stored why not.

    Limits on the whole upload (file size, number of files, room in the bot) refuse it
    before anything is stored. A file of a kind Docent can't read is refused at once
    (Refused with `unsupported`), so it never becomes a failed document; an archive
    becomes an Unpacked entry followed by its readable files, each stored as a document
    named with its folders. If no file is left to store, UnsupportedFiles (415) is raised.
    A file that can't be written (disk full, I/O error) leaves nothing behind and is
    reported as Refused while the others are stored; if none could be stored,
    NothingStored is raised. Results are in the files' order.
    """
    _check_files(files)
    with contextlib.ExitStack() as unpacked:
        screened = [item for upload in files for item in _screen(upload, unpacked)]
        to_store = [item for item in screened if isinstance(item, UploadedFile)]
        refused = [item for item in screened if isinstance(item, Refused)]
        if not to_store:
            raise (UnsupportedFiles if all(refusal.unsupported for refusal in refused) else NothingStored)(refused)
        if len(to_store) > settings.DOCENT_MAX_FILES_PER_UPLOAD:
            raise TooManyFiles(
                f"Unpacked, this upload holds {len(to_store):,} files; at most "
                f"{settings.DOCENT_MAX_FILES_PER_UPLOAD:,} can be uploaded at once. Upload the rest separately."
            )
        stored = dict(zip(map(id, to_store), _store_all(bot, to_store, enqueue), strict=True))
        ordered = [_from_archive(stored[id(item)], item) if id(item) in stored else item for item in screened]
    if not any(isinstance(result, Upload) for result in ordered):
        raise NothingStored([result for result in ordered if isinstance(result, Refused)])
    return ordered


def _screen(upload: UploadedFile, unpacked: contextlib.ExitStack) -> list[UploadedFile | Refused | Unpacked]:
    """The upload itself when Docent can read it; its readable files after an Unpacked entry when
    it is an archive; else why not. Unpacked files are closed (deleted) when `unpacked` exits."""
    name = document_name(upload)
    try:
        upload.seek(0)
        head = upload.read(archives.SNIFF_BYTES)
        upload.seek(0)
    except OSError:
        return [upload]  # storing it will fail and say why
    if archives.is_archive(upload, head):
        limits = parsers.ZipLimits.from_settings(settings)
        try:
            members, left_out = archives.unpack(upload, limits, max_upload_bytes())
        except archives.ArchiveRefused as exc:
            return [Refused(name, str(exc))]
        for member in members:
            unpacked.callback(_close_quietly, member)
        if not members:
            reason = (
                f"It holds no file Docent can read. {_left_out_summary(left_out)}"
                if left_out
                else ("The archive is empty.")
            )
            return [Refused(name, reason, unsupported=True)]
        return [Unpacked(name, len(members), tuple(left_out)), *members]
    if head.strip():  # an empty file fails with its reason, as the parser gives it
        try:
            parsers.sniff_kind(head, name)
        except parsers.ParseError as exc:
            return [Refused(name, str(exc), unsupported=True)]
    return [upload]


def _from_archive(result: Upload | Refused, upload: UploadedFile) -> Upload | Refused:
    if isinstance(result, Upload) and isinstance(upload, archives.ArchiveMember):
        return dataclasses.replace(result, archive=upload.archive)
    return result


def _close_quietly(upload: UploadedFile) -> None:
    with contextlib.suppress(OSError):
        upload.close()


def _store_all(bot, files: list[UploadedFile], enqueue: bool) -> list[Upload | Refused]:
    """Store files that passed _screen, each all or nothing; results in the files' order."""
    existing = _check_room(bot, files)
    results: dict[int, Upload | Refused] = {}
    # Names the bot doesn't have yet (a dropped folder, mostly) are stored together, in a
    # few queries rather than ten per file; the rest are new versions, one by one.
    new: dict[str, int] = {}
    for index, upload in enumerate(files):
        new.setdefault(document_name(upload), index)
    new = {name: index for name, index in new.items() if name not in existing}
    # IntegrityError: another upload created one of these names meanwhile; store them one by one.
    with contextlib.suppress(IntegrityError):
        results.update(_store_new_documents(bot, {index: files[index] for index in new.values()}, enqueue))
    for index, upload in enumerate(files):
        if index not in results:
            try:
                results[index] = _store(bot, upload, enqueue)
            except FileNotStored as exc:
                results[index] = Refused(document_name(upload), str(exc))
    return [results[index] for index in range(len(files))]


def _store_new_documents(bot, uploads: dict[int, UploadedFile], enqueue: bool) -> dict[int, Upload | Refused]:
    """Create a document per upload (keyed by its position; names new to the bot) in one transaction.

    The same promise as _store for each file: all of it or nothing, and a file that can't
    be written is Refused. Raises IntegrityError, having stored nothing, if one of the
    names was created meanwhile.
    """
    results: dict[int, Upload | Refused] = {}
    written: list[DocumentVersion] = []
    try:
        hashes = {}
        for index, upload in uploads.items():
            try:
                hashes[index] = _sha256(upload)
            except OSError as exc:
                results[index] = Refused(document_name(upload), _storage_failure_reason(exc))
        with transaction.atomic():
            documents = Document.objects.bulk_create(
                [Document(bot=bot, filename=document_name(uploads[index])) for index in hashes]
            )
            refused_documents = []
            for (index, content_hash), document in zip(hashes.items(), documents, strict=True):
                upload = uploads[index]
                version = DocumentVersion(
                    document=document, number=1, content_hash=content_hash, size_bytes=upload.size
                )
                try:
                    upload.seek(0)
                    version.file.save(_stored_name(document.filename), upload, save=False)
                except (OSError, SuspiciousFileOperation) as exc:
                    _discard_stored_file(version, document.filename)
                    logger.warning("Could not store %s for bot %s: %r", document.filename, bot.pk, exc)
                    results[index] = Refused(document.filename, _storage_failure_reason(exc))
                    refused_documents.append(document.pk)
                    continue
                written.append(version)
                document.current_version = version
                results[index] = Upload(document=document, unchanged=False)
            DocumentVersion.objects.bulk_create(written)
            Document.objects.bulk_update([version.document for version in written], ["current_version"])
            Document.objects.filter(pk__in=refused_documents).delete()
            if enqueue:
                for version in written:
                    transaction.on_commit(functools.partial(enqueue_ingest, version.id))
    except BaseException:
        for version in written:
            _discard_stored_file(version, version.document.filename)
        raise
    return results


def add_document(bot, upload: UploadedFile, enqueue: bool = True) -> Upload:
    """Store `upload` as a new version of the bot's document of that name and queue ingestion.

    A name the bot doesn't have yet creates the document. Content identical to the
    current version (same SHA-256) queues nothing, unless that version failed.
    With enqueue=False the caller runs ingest_version itself (the ingest command).
    Raises UploadRefused (FileNotStored when the file can't be written, UnsupportedFiles
    for a kind of file Docent can't read, or a ZIP archive: add_documents unpacks those).
    """
    check_upload(bot, [upload])
    with contextlib.ExitStack() as unpacked:
        screened = _screen(upload, unpacked)
    if screened != [upload]:
        refused = [item for item in screened if isinstance(item, Refused)] or [
            Refused(
                document_name(upload),
                "A ZIP archive is unpacked only when uploaded in the browser or the API; unzip it and add its files.",
                unsupported=True,
            )
        ]
        raise (UnsupportedFiles if all(refusal.unsupported for refusal in refused) else NothingStored)(refused)
    return _store(bot, upload, enqueue)


def _store(bot, upload: UploadedFile, enqueue: bool) -> Upload:
    """Store one file whose upload passed check_upload: all of it and its rows, or nothing.

    The document keeps the uploaded name (clean_filename); the stored file gets a name
    that fits the filesystem (DocumentVersion.file's upload_to). A failure after the
    file was written removes the file and any folder left empty.
    """
    filename = document_name(upload)
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
            version.file.save(_stored_name(filename), upload, save=False)
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
    """Remove what a failed _store wrote, whole or partial (the storage removes folders left empty)."""
    if version is None:
        return
    # A write that failed part-way never set version.file.name; the name it was writing is
    # the one upload_to gives (a taken name would differ, but versions' names are unique).
    name = version.file.name or version.file.field.generate_filename(version, _stored_name(filename))
    try:
        version.file.storage.delete(name)
    except Exception:  # noqa: BLE001 - cleaning up must not hide why the upload failed
        logger.warning("Could not remove %s after a failed upload", name, exc_info=True)


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


def enqueue_ingest(version_id: int) -> bool:
    """Send an ingest message for `version_id` unless one is already waiting; True if sent.

    The one way ingestion is queued: uploads, retry, rollback, the sweeper, and a task
    handing on its turn all come here. A message goes out only for a document's current
    version while the document still needs work, and at most one waits per version: the
    conditional UPDATE below claims the document's `pending_version` atomically, and the
    task that takes the message clears it (ingest_next). With the broker unreachable
    nothing is sent and nothing claimed: the document stays queued for the sweeper.
    """
    from documents.tasks import ingest

    if _broker_recently_down():
        return False
    claimed = (
        Document.objects.filter(current_version_id=version_id, status__in=RUNNING_STATUSES)
        .exclude(pending_version_id=version_id)
        .update(pending_version_id=version_id, pending_since=timezone.now())
    )
    if not claimed:
        return False
    sent = False
    try:
        sent = _publish(ingest, version_id)
    finally:
        if not sent:  # nothing was queued: don't let the row claim otherwise
            Document.objects.filter(pending_version_id=version_id).update(pending_version=None, pending_since=None)
    return sent


# After a message could not reach the broker, this process sends none for this long: a
# thousand files uploaded during an outage wait for one broker timeout, not a thousand.
BROKER_PAUSE_SECONDS = 5.0
_broker_down_at: float | None = None


def _broker_recently_down() -> bool:
    return _broker_down_at is not None and time.monotonic() - _broker_down_at < BROKER_PAUSE_SECONDS


def _publish(task, *args) -> bool:
    """Send a task; False, and a warning, if the broker can't be reached within its timeout.

    The work it stood for is not lost: rows record what needs doing, and the sweeper
    (sweep_stuck_documents) sends it again once the broker answers.
    """
    global _broker_down_at
    try:
        task.delay(*args)
    except (kombu.exceptions.OperationalError, OSError) as exc:
        _broker_down_at = time.monotonic()
        logger.warning("The broker is unreachable; %s%r waits for the sweeper: %r", task.name, args, exc)
        return False
    _broker_down_at = None
    return True


def clean_filename(name: str) -> str:
    """The name a document is shown under: the uploaded name, without folders, capped in length."""
    return filenames.display_name(name, Document._meta.get_field("filename").max_length)


def document_name(upload: UploadedFile) -> str:
    """The name an upload's document gets: clean_filename, or for a file from an archive its path there."""
    if not isinstance(upload, archives.ArchiveMember):
        return clean_filename(upload.name)
    max_chars = Document._meta.get_field("filename").max_length
    if len(upload.name) <= max_chars:
        return upload.name
    stem, extension = filenames.split_extension(upload.name)
    return stem[: max_chars - len(extension)] + extension


def _stored_name(filename: str) -> str:
    """The name the stored file is made from: a document's name without the folders an archive gave it."""
    return filename.rsplit("/", 1)[-1]


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


class SmallFileProgress(DocumentProgress):
    """For a small file: parsed and chunked in a moment, it goes from queued to embedding or ready.

    Three row writes per file saved; a folder of thousands of one-paragraph files spent a
    good part of its time on them. A crash leaves it queued, where the sweeper finds it.
    """

    def parsing(self, pages_total: int) -> None:
        pass

    def pages(self, done: int, final: bool = False) -> None:
        pass

    def chunking(self) -> None:
        pass


# Files up to this size show no parsing and chunking steps (SmallFileProgress).
SMALL_FILE_BYTES = 256 * 1024


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
    """Parse, chunk and embed one version in one go, then make it the document's active version.

    For the ingest command and tests; the worker goes through ingest_next, which takes
    turns. Safe to run twice or concurrently: only one worker holds a document at a time,
    an active version does no work, a superseded version is skipped, and each stage
    resumes what an interrupted run left behind.
    """
    document_id = DocumentVersion.objects.filter(pk=version_id).values_list("document_id", flat=True).first()
    if document_id is None:
        return  # deleted since it was queued
    with _Turn(deadline=None) as turn:
        turn.take(document_id, version_id)  # nothing if another worker holds it
        turn.embed_and_activate()


def ingest_next(version_id: int) -> None:
    """Handle one ingest message: one turn of work, for the document whose turn it is and the few after it.

    The message names `version_id`, but turns go round-robin: to the bot served least
    recently, within it to this message's own document if it needs work, else to the
    document served least recently. A turn ends at the first stage or embedding-batch
    boundary after DOCENT_INGEST_SLICE_SECONDS, and whatever still needs work goes to the
    back of the queue, so neither one huge file nor one bot's thousand files hold the
    queue for everyone else.

    Small files share a turn (_Turn): while the turn's time lasts, the documents next in
    turn order whose own message waits in the broker are parsed and chunked as well, until
    their passages fill one embedding batch, and all are embedded in one encoder call. A
    folder of one-paragraph files would otherwise spend most of its time on a task and its
    bookkeeping per two-passage encode. Their messages, when they come, find nothing to do.
    """
    # This message is taken: a new one may be sent for its version from now on.
    Document.objects.filter(pending_version_id=version_id).update(pending_version=None, pending_since=None)
    served = _serve_next_turn(version_id)
    if not served:
        # Nothing waits that no other worker holds: if this message's own document waits, its turn comes again.
        enqueue_ingest(version_id)
        return
    # Whatever still needs work goes to the back of the queue (one message per version at most).
    unfinished = Document.objects.filter(
        current_version_id__in={version_id, *served}, status__in=RUNNING_STATUSES, pending_version__isnull=True
    ).values_list("current_version_id", flat=True)
    for needs_turn in unfinished:
        enqueue_ingest(needs_turn)


def _serve_next_turn(version_id: int) -> list[int]:
    """Run one turn for the first documents in turn order that no other worker holds; their version ids."""
    with _Turn(deadline=time.monotonic() + settings.DOCENT_INGEST_SLICE_SECONDS) as turn:
        for document_id, candidate_id, message_waits in _turn_order(version_id, TURN_DOCUMENTS):
            if turn.served:
                if not turn.has_room():
                    break
                if not message_waits:
                    continue  # the ingest command's to run, or the sweeper's to re-queue
            turn.take(document_id, candidate_id)
            if turn.stopped:
                break
        turn.embed_and_activate()
    return turn.served


def _turn_order(version_id: int, limit: int = 20) -> list[tuple[int, int, bool]]:
    """(document id, version id, whether its message waits) of documents needing work, whose turn comes first first.

    Bots by when any of their documents last had a turn (never first), the message's own
    bot on a tie; within a bot the message's own document, then the one served least
    recently. So a bot dropping one file while another has a thousand queued waits one
    turn, not a thousand. The bots' lists are interleaved, so a turn that takes several
    documents takes the first of each waiting bot before the second of any.
    """
    waiting = Document.objects.filter(status__in=RUNNING_STATUSES, current_version__isnull=False)
    own_bot_id = Subquery(Document.objects.filter(current_version_id=version_id).values("bot_id")[:1])
    bots = (
        Document.objects.filter(bot_id__in=waiting.values("bot_id"))
        .values("bot_id")
        .annotate(last_served=Max("served_at"), own=Case(When(bot_id=own_bot_id, then=0), default=1))
        .order_by(F("last_served").asc(nulls_first=True), "own", "bot_id")
        .values_list("bot_id", flat=True)
    )
    per_bot: list[list[tuple[int, int, bool]]] = []
    for bot_id in bots[:limit]:
        documents = waiting.filter(bot_id=bot_id).order_by(
            Case(When(current_version_id=version_id, then=0), default=1),
            F("served_at").asc(nulls_first=True),
            "id",
        )
        per_bot.append(
            [
                (document_id, current, pending == current)
                for document_id, current, pending in documents.values_list(
                    "id", "current_version_id", "pending_version_id"
                )[:limit]
            ]
        )
    order = [entry for round_ in itertools.zip_longest(*per_bot) for entry in round_ if entry is not None]
    return order[:limit]


# At most this many documents share one turn (and one embedding batch).
TURN_DOCUMENTS = 64


@dataclass
class _Prepared:
    """A document of a turn whose pages and chunks are stored, waiting for its passages' embeddings."""

    version: DocumentVersion
    progress: DocumentProgress
    total: int = 0  # its passages
    left: int = 0  # ... still without an embedding
    shows_progress: bool = False  # its row says "embedding" and counts passages as they are done

    @property
    def document(self) -> Document:
        return self.version.document

    @property
    def index_version(self) -> int:
        return self.version.document.bot.index_version


class _Turn:
    """One turn of ingestion: the documents it holds the locks of, prepared one by one, embedded together.

    Each document's own trouble stays its own (_on_its_own): a file that can't be read
    fails with its reason, a bug in one fails that one with INTERNAL_ERROR, a document
    deleted meanwhile drops out; the others go on. A lost database connection ends the
    turn for Celery to retry; everything done so far is stored and resumes.
    """

    def __init__(self, deadline: float | None):
        self.deadline = deadline
        self.served: list[int] = []  # version ids worked on
        self.prepared: list[_Prepared] = []
        self.stopped = False  # the time ran out in the middle of a document's stages
        self._locked: list[int] = []
        self._served_documents: list[int] = []
        self._model = None
        self._models: dict[int, object] = {}  # bot id → its embedding model
        self._batch_size = settings.DOCENT_EMBEDDING_BATCH_SIZE * 4

    def __enter__(self) -> _Turn:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self._served_documents and exc_info[0] is None:
                # To the back of their bot's line (_turn_order).
                Document.objects.filter(pk__in=self._served_documents).update(served_at=timezone.now())
        finally:
            with connection.cursor() as cursor:
                for document_id in self._locked:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, document_id])

    def has_room(self) -> bool:
        """Whether another document may join: time is left and the embedding batch isn't full."""
        pending = sum(prepared.left for prepared in self.prepared)
        return not (
            self.stopped or _past(self.deadline) or len(self.served) >= TURN_DOCUMENTS or pending >= self._batch_size
        )

    def take(self, document_id: int, version_id: int) -> None:
        """Lock the document if no other worker holds it, and parse and chunk it as far as time allows."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, document_id])
            if not cursor.fetchone()[0]:
                return
        self._locked.append(document_id)
        version = DocumentVersion.objects.select_related("document__bot").filter(pk=version_id).first()
        if version is None:
            return  # deleted since the turn order was read
        model = self._model_of(version.document.bot)
        if self._model is not None and model.pk != self._model.pk:
            return  # another encoder: its own turn will come
        self.served.append(version.id)
        self._served_documents.append(document_id)
        with _on_its_own(version):
            prepared = self._prepare(version)
            if prepared is not None:
                self._model = model
                self._count_passages(prepared)
                self.prepared.append(prepared)

    def _model_of(self, bot):
        from retrieval.services import embedding_model_for

        if bot.id not in self._models:
            self._models[bot.id] = embedding_model_for(bot)
        return self._models[bot.id]

    def _prepare(self, version: DocumentVersion) -> _Prepared | None:
        document = version.document
        if document.current_version_id != version.id:
            return None  # a newer upload (or a rollback) replaced it
        if document.status == Document.Status.FAILED:
            return None  # a message that outlived its document's failure; Retry queues it anew
        bot = document.bot
        if document.status == Document.Status.READY and _is_indexed(document, version, bot.index_version):
            return None
        small = version.size_bytes <= SMALL_FILE_BYTES
        progress = SmallFileProgress(document) if small else DocumentProgress(document)
        try:
            if parse_stage(version, progress) and _past(self.deadline):
                self.stopped = True
                return None
            if chunk_stage(version, bot, progress, self._model_of(bot)) and _past(self.deadline):
                self.stopped = True
                return None
        except parsers.ParseError as exc:
            document.fail(str(exc))
            return None
        return _Prepared(version, progress)

    def _count_passages(self, prepared: _Prepared) -> None:
        counts = Chunk.objects.filter(version=prepared.version, index_version=prepared.index_version).aggregate(
            total=Count("id"), left=Count("id", filter=Q(embedding__isnull=True))
        )
        prepared.total, prepared.left = counts["total"], counts["left"]
        # A document the first batch won't finish shows its progress; the others go straight to ready.
        if sum(other.left for other in self.prepared) + prepared.left > self._batch_size:
            prepared.progress.embedding(prepared.total, prepared.total - prepared.left)
            prepared.shows_progress = True

    def embed_and_activate(self) -> None:
        """Embed the prepared documents' passages, a batch at a time across documents, until done or out of time.

        Each batch takes passages in turn order, so the first document finishes first; a
        document whose passages are all embedded becomes ready at once.
        """
        if not self.prepared:
            return
        from retrieval.services import embed_texts

        by_version = {prepared.version.id: prepared for prepared in self.prepared}
        order = Case(*(When(version_id=version_id, then=position) for position, version_id in enumerate(by_version)))
        waiting = Q()
        for prepared in self.prepared:
            waiting |= Q(version_id=prepared.version.id, index_version=prepared.index_version)
        pending = Chunk.objects.filter(waiting, embedding__isnull=True).order_by(order, "ordinal")
        batches_done = 0
        while any(prepared.left for prepared in self.prepared):
            if batches_done and _past(self.deadline):
                break
            batch = list(pending.values_list("id", "version_id", "text")[: self._batch_size])
            if not batch:
                break  # a document deleted meanwhile took its passages with it
            vectors = embed_texts([text for _, _, text in batch], self._model)
            _store_embeddings([chunk_id for chunk_id, _, _ in batch], vectors, self._model.dimensions)
            batches_done += 1
            for version_id, count in collections.Counter(version_id for _, version_id, _ in batch).items():
                prepared = by_version[version_id]
                prepared.left = max(0, prepared.left - count)
                if prepared.left:
                    with _on_its_own(prepared.version):
                        if not prepared.shows_progress:
                            prepared.progress.embedding(prepared.total, prepared.total - prepared.left - count)
                            prepared.shows_progress = True
                        prepared.progress.embedded(prepared.total - prepared.left)
        finished = [prepared for prepared in self.prepared if not prepared.left]
        try:
            _activate_together(finished)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            logger.exception("Activating %d documents together failed; one by one instead", len(finished))
            for prepared in finished:
                with _on_its_own(prepared.version):
                    activate(prepared.version, prepared.index_version)


def _store_embeddings(chunk_ids: list[int], vectors, dimensions: int) -> None:
    """Write a batch's vectors in one statement (the chunk table's statement triggers then run once, not per row)."""
    to_db = VectorField().get_prep_value
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE documents_chunk AS chunk SET embedding = batch.embedding::vector, dimensions = %s"
            " FROM unnest(%s::bigint[], %s::text[]) AS batch(id, embedding) WHERE chunk.id = batch.id",
            [dimensions, chunk_ids, [to_db(vector) for vector in vectors]],
        )
    signals.chunks_embedded.send(sender=Chunk, count=len(chunk_ids))


def _activate_together(finished: list[_Prepared]) -> None:
    """activate() for several documents in one transaction, their passages switched on in one statement.

    A document superseded or deleted meanwhile is left out, as activate() would.
    """
    if not finished:
        return
    with transaction.atomic():
        locked = Document.objects.select_for_update().filter(pk__in=[p.document.id for p in finished]).order_by("pk")
        documents = {document.pk: document for document in locked}
        current = [
            p
            for p in finished
            if p.document.id in documents and documents[p.document.id].current_version_id == p.version.id
        ]
        if not current:
            return
        new_chunks = Q()
        for prepared in current:
            new_chunks |= Q(version_id=prepared.version.id, index_version=prepared.index_version)
            document = documents[prepared.document.id]
            if document.active_version_id is not None or prepared.version.number > 1:
                mine = Chunk.objects.filter(version=prepared.version, index_version=prepared.index_version)
                Chunk.objects.filter(document=document, is_active=True).exclude(pk__in=mine).delete()
                Chunk.objects.filter(document=document, is_active=False).exclude(version=prepared.version).delete()
        counts = dict(
            Chunk.objects.filter(new_chunks)
            .values("version_id")
            .annotate(count=Count("id"))
            .values_list("version_id", "count")
        )
        Chunk.objects.filter(new_chunks).update(is_active=True)
        for prepared in current:
            documents[prepared.document.id].mark_ready(prepared.version, chunk_count=counts.get(prepared.version.id, 0))


@contextlib.contextmanager
def _on_its_own(version: DocumentVersion) -> Iterator[None]:
    """Work on one document of a turn: its failure is its own, the turn goes on with the others.

    Deleted meanwhile: it drops out quietly (_stop_if_deleted). A bug: it fails with
    INTERNAL_ERROR (logged with its traceback). A lost database connection or broker is
    everyone's: it ends the turn, for Celery to retry, naming this document. Lines logged
    meanwhile carry the document's and its bot's ids (a turn serves several documents).
    """
    version_id = version.id
    with structlog.contextvars.bound_contextvars(document_id=version.document_id, bot_id=version.document.bot_id):
        try:
            with _stop_if_deleted(version_id):
                yield
        except TRANSIENT_ERRORS as exc:
            exc.ingest_version_id = version_id  # type: ignore[attr-defined]
            raise
        except Exception:
            logger.exception("Ingesting document version %s failed", version_id)
            fail_internal(version_id)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


@contextlib.contextmanager
def _stop_if_deleted(version_id: int) -> Iterator[None]:
    """Deleting a document mid-ingestion ends its task quietly.

    Whatever the task was about to write fails (the row is gone, a foreign key points at
    nothing, the stored file was removed); if the version is indeed gone, that is no error
    and nothing is left behind: pages and chunks went with it in the same cascade.
    """
    try:
        yield
    except (ObjectDoesNotExist, DatabaseError, FileNotFoundError):
        if DocumentVersion.objects.filter(pk=version_id).exists():
            raise
        logger.info("Document version %s was deleted during ingestion; stopped.", version_id)


def _is_indexed(document: Document, version: DocumentVersion, index_version: int) -> bool:
    return (
        document.active_version_id == version.id
        and Chunk.objects.filter(document=document, is_active=True, index_version=index_version).exists()
    )


def _document_lock(document_id: int) -> contextlib.AbstractContextManager[bool]:
    return _advisory_lock(_LOCK_NAMESPACE, document_id)


@contextlib.contextmanager
def _advisory_lock(namespace: int, key: int) -> Iterator[bool]:
    """A Postgres advisory lock, released when we finish or when our connection dies (worker killed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, key])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])


def _held_locks(namespace: int) -> set[int]:
    """Keys of this database's advisory locks in `namespace` that some connection holds now.

    Read from pg_locks rather than by trying the lock, which would make a worker that
    tries at the same moment believe another one is on it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [namespace],
        )
        return {key for (key,) in cursor.fetchall()}


def parse_stage(version: DocumentVersion, progress: DocumentProgress) -> bool:
    """Store the version's pages; raises ParseError for files that can't be read.

    False if there was nothing to do (the pages were stored by an earlier run).
    """
    if version.page_count is not None:
        return False
    filename = version.document.filename
    # The parsers seek around in a real file; the stored one may be in object storage.
    with local_copy(version.file) as path:
        pages_total = parsers.page_count(path)
        if pages_total > settings.DOCENT_MAX_PAGES:
            raise parsers.ParseError(
                f"This file has {pages_total} pages; the limit is {settings.DOCENT_MAX_PAGES}. "
                "Split it and upload the parts."
            )
        progress.parsing(pages_total)
        Page.objects.filter(version=version).delete()
        batch: list[Page] = []
        problems: dict[int, str] = {}  # page number → why its text is missing or partial (ParsedPage.problem)
        stored = 0
        try:
            for page in parsers.parse(path, filename, parsers.ZipLimits.from_settings(settings)):
                batch.append(Page(version=version, number=page.number, text=page.text))
                if page.problem:
                    problems[page.number] = page.problem
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
        if note := parsers.describe_text_problems(problems):
            version.document.notes = note
            version.document.save(update_fields=["notes"])
    return True


def _plural(word: str, count: int) -> str:
    return word if count == 1 else word + "s"


def chunk_stage(version: DocumentVersion, bot, progress: DocumentProgress, model=None) -> bool:
    """Turn the version's pages into inactive, not yet embedded chunks for the bot's index version.

    False if there was nothing to do (an earlier run wrote them). `model`: the bot's
    embedding model, if the caller has it at hand.
    """
    index_version = bot.index_version
    if (
        version.chunked_index_version == index_version
        and Chunk.objects.filter(version=version, index_version=index_version).exists()
    ):
        return False  # a resumed run: the chunks are written (an activated-then-replaced version has none left)
    progress.chunking()
    from retrieval.services import embedder, embedding_model_for

    model = model or embedding_model_for(bot)
    size = max(16, min(bot.chunk_size_tokens, model.max_tokens - 2))
    overlap = max(0, min(bot.chunk_overlap_tokens, size // 2))
    pages = (
        parsers.ParsedPage(number=number, text=text)
        for number, text in Page.objects.filter(version=version).order_by("number").values_list("number", "text")
    )
    drafts = chunkers.chunk_pages(pages, embedder(model), bot.chunking_strategy, size, overlap)
    locate = _locator(version)
    limit = settings.DOCENT_MAX_CHUNKS_PER_DOCUMENT
    with transaction.atomic():
        Chunk.objects.filter(version=version, index_version=index_version, is_active=False).delete()
        batch: list[Chunk] = []
        chars_chunked = 0
        written = 0
        for ordinal, draft in enumerate(drafts):
            if ordinal == limit:
                raise parsers.ParseError(_too_many_passages(version, limit, chars_chunked, overlap / size))
            chars_chunked += len(draft.text)
            batch.append(
                Chunk(
                    bot_id=bot.id,
                    document_id=version.document_id,
                    version=version,
                    index_version=index_version,
                    ordinal=ordinal,
                    page=draft.page,
                    heading_path=draft.heading_path[:500],
                    location=locate(draft)[:500],
                    text=draft.text,
                    token_count=draft.token_count,
                )
            )
            if len(batch) >= CHUNK_BATCH:
                written += len(Chunk.objects.bulk_create(batch))
                batch = []
        written += len(Chunk.objects.bulk_create(batch))
        if not written:
            raise parsers.ParseError("The file contains no text to index.")
        version.chunked_index_version = index_version
        version.save(update_fields=["chunked_index_version"])
    return True


def _locator(version: DocumentVersion):
    """A function giving a chunk draft of `version` its location in the terms of the file's format.

    A PDF's passages are on pages ("page 3"); a spreadsheet's are rows, numbered as a
    spreadsheet shows them with the header as row 1 ("rows 18–24"); the other formats
    have one page, so their passages are where their headings put them ("Benefits › Dental"),
    or nowhere more precise than the document.
    """
    kind = _format_of(version)
    if kind == "pdf":
        return lambda draft: f"page {draft.page}" if draft.page else ""
    if kind == "csv":
        text = Page.objects.filter(version=version, number=1).values_list("text", flat=True).first() or ""
        try:
            with local_copy(version.file) as path:
                numbers = parsers.spreadsheet_rows(path, version.document.filename)
        except (OSError, ValueError, parsers.ParseError):
            numbers = []  # then counted from the text, as if the file had no blank rows
        return _CsvRows(text, numbers)
    return lambda draft: draft.heading_path


def _format_of(version: DocumentVersion) -> str:
    """What parsers.parse read the version's file as ("pdf", "csv", ...); "" if that can't be told now."""
    try:
        with version.file.open("rb") as handle:
            head = handle.read(archives.SNIFF_BYTES)
        return parsers.sniff_kind(head, version.document.filename)
    except (OSError, ValueError, parsers.ParseError):
        return ""


class _CsvRows:
    """Row numbers of the chunks of a CSV document, whose page text has one data row per paragraph (parsers.csv_text).

    `numbers` gives each paragraph's row as a spreadsheet shows the file (parsers.spreadsheet_rows:
    blank rows and rows above the header count); without it, the header is taken as row 1
    and the data rows as following it without gaps. Chunks come in order and each lies at or
    after the previous one's start, so each is looked for from there: finding it is cheap
    even in a file of a million rows.
    """

    def __init__(self, text: str, numbers: list[int] | None = None) -> None:
        self.text = text
        self.row_starts = [0] + [match.end() for match in re.finditer(r"\n\n", text)]
        self.numbers = numbers if numbers and len(numbers) == len(self.row_starts) else None
        self.cursor = 0

    def __call__(self, draft) -> str:
        start = self.text.find(draft.text, self.cursor)
        if start < 0:
            return ""
        self.cursor = start
        end = start + max(len(draft.text) - 1, 0)
        first, last = (self._row(bisect.bisect_right(self.row_starts, offset) - 1) for offset in (start, end))
        return f"row {first}" if first == last else f"rows {first}–{last}"

    def _row(self, paragraph: int) -> int:
        # Without numbers: the header is row 1, the first data row (paragraph 0) row 2.
        return self.numbers[paragraph] if self.numbers else paragraph + 2


def _too_many_passages(version: DocumentVersion, limit: int, chars_chunked: int, overlap_share: float) -> str:
    """The reason for refusing a file that makes more than `limit` chunks, with about how many it would.

    The total is estimated from the share of the text the first `limit` chunks covered:
    chunking the rest only to count it could take minutes of the worker's time.
    """
    chars_total = Page.objects.filter(version=version).aggregate(chars=Sum(Length("text")))["chars"] or 0
    chars_covered = max(1, chars_chunked * (1 - overlap_share))
    estimate = max(limit + 1, int(round(limit * chars_total / chars_covered, -2)))
    parts = -(-estimate // limit)
    return (
        f"This file would make about {estimate:,} passages; the limit is {limit:,} per document. "
        f"Split it into {parts} or more files and upload those."
    )


def embed_stage(version: DocumentVersion, bot, progress: DocumentProgress, deadline: float | None = None) -> bool:
    """Embed the version's chunks that have no embedding yet, one batch at a time.

    True once every chunk has its embedding; False if it stopped at `deadline` (a
    time.monotonic() value, checked after each batch, so a call embeds at least one) with
    chunks left.
    """
    from retrieval.services import embed_texts, embedding_model_for

    model = embedding_model_for(bot)
    pending = Chunk.objects.filter(version=version, index_version=bot.index_version)
    total = pending.count()
    done = total - pending.filter(embedding__isnull=True).count()
    progress.embedding(total, done)
    batch_size = settings.DOCENT_EMBEDDING_BATCH_SIZE * 4
    batches_done = 0
    while True:
        batch = list(pending.filter(embedding__isnull=True).order_by("ordinal").values_list("id", "text")[:batch_size])
        if not batch:
            return True
        if batches_done and _past(deadline):
            return False
        vectors = embed_texts([text for _, text in batch], model)
        _store_embeddings([chunk_id for chunk_id, _ in batch], vectors, model.dimensions)
        done += len(batch)
        batches_done += 1
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
        # A document's first version has nothing to replace (most of a folder of new files).
        if document.active_version_id is not None or version.number > 1:
            Chunk.objects.filter(document=document, is_active=True).exclude(pk__in=new_chunks).delete()
            # Unfinished chunks of older versions can never become active any more.
            Chunk.objects.filter(document=document, is_active=False).exclude(version=version).delete()
        count = new_chunks.update(is_active=True)
        document.mark_ready(version, chunk_count=count)
    return True


def fail_internal(version_id: int) -> None:
    """Our fault, retries used up: mark the document failed so it never hangs in a running state.

    Deleted or superseded meanwhile: nothing to mark.
    """
    document = Document.objects.filter(current_version_id=version_id).first()
    if document and not document.is_final:
        with contextlib.suppress(Document.DoesNotExist):
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
    with _advisory_lock(_REINDEX_LOCK_NAMESPACE, bot_id) as acquired:
        if acquired:  # otherwise another worker is re-indexing this bot
            _reindex_locked(bot)


def _reindex_locked(bot) -> None:
    from bots.models import Bot

    bot_id = bot.id
    index_version = bot.index_version
    batch_size = settings.DOCENT_EMBEDDING_BATCH_SIZE * 4
    documents = Document.objects.filter(bot=bot, status=Document.Status.READY, active_version__isnull=False)
    prepared: list[DocumentVersion] = []  # chunked and embedded, to switch to together
    chunked: list[DocumentVersion] = []  # chunked, waiting for a full encoder batch of passages
    waiting = 0  # their passages without an embedding
    for document in documents.select_related("active_version"):
        version = document.active_version
        if _is_indexed(document, version, index_version):
            continue
        with _document_lock(document.id) as acquired:
            if not acquired:
                continue  # being ingested: that run uses the new settings already
            progress = QuietProgress(document)
            with _stop_if_deleted(version.id):
                try:
                    parse_stage(version, progress)
                    chunk_stage(version, bot, progress)
                except parsers.ParseError as exc:
                    # Under the new settings this document can't be indexed: say so on its row
                    # (with Retry) rather than leave the bot "re-indexing" forever.
                    Chunk.objects.filter(document=document).delete()
                    document.fail(f"Could not be re-indexed with the new settings: {exc}")
                    continue
                chunked.append(version)
                waiting += Chunk.objects.filter(version=version, index_version=index_version, embedding=None).count()
        if waiting >= batch_size:
            _embed_together(chunked, bot, batch_size)
            prepared += chunked
            chunked, waiting = [], 0
        if Bot.objects.filter(pk=bot_id, index_version__gt=index_version).exists():
            return
    _embed_together(chunked, bot, batch_size)
    prepared += chunked
    with transaction.atomic():
        if Bot.objects.select_for_update().filter(pk=bot_id, index_version__gt=index_version).exists():
            return
        _switch_together(prepared, index_version)


def _switch_together(versions: list[DocumentVersion], index_version: int) -> None:
    """activate() for a re-index's documents in a handful of statements (in the caller's transaction).

    A document superseded or deleted meanwhile is left out, as activate() would leave it.
    """
    locked = Document.objects.select_for_update().filter(pk__in=[v.document_id for v in versions]).order_by("pk")
    documents = {document.pk: document for document in locked}
    current_versions = {document.current_version_id for document in documents.values()}
    current = [version for version in versions if version.id in current_versions]
    if not current:
        return
    document_ids = [version.document_id for version in current]
    version_ids = [version.id for version in current]
    # The passages they answered from until now, and unfinished ones of their older versions.
    Chunk.objects.filter(document_id__in=document_ids, is_active=True).delete()
    Chunk.objects.filter(document_id__in=document_ids, is_active=False).exclude(version_id__in=version_ids).delete()
    new = Chunk.objects.filter(version_id__in=version_ids, index_version=index_version)
    counts = dict(new.values("version_id").annotate(count=Count("id")).values_list("version_id", "count"))
    new.update(is_active=True)
    for version in current:
        documents[version.document_id].mark_ready(version, chunk_count=counts.get(version.id, 0))


def _embed_together(versions: list[DocumentVersion], bot, batch_size: int) -> None:
    """Embed the passages of several documents' versions in full encoder batches, across documents.

    Re-indexing a bot of many small files one document at a time would give the encoder
    two or three passages per call. A document deleted meanwhile took its passages along.
    """
    from retrieval.services import embed_texts, embedding_model_for

    if not versions:
        return
    model = embedding_model_for(bot)
    pending = Chunk.objects.filter(version__in=versions, index_version=bot.index_version, embedding=None)
    while batch := list(pending.order_by("version_id", "ordinal").values_list("id", "text")[:batch_size]):
        vectors = embed_texts([text for _, text in batch], model)
        _store_embeddings([chunk_id for chunk_id, _ in batch], vectors, model.dimensions)


def reindex_progress(bot) -> tuple[int, int]:
    """(documents answering from the bot's current index settings, documents that should be)."""
    ready = Document.objects.filter(bot=bot, status=Document.Status.READY)
    current = ready.filter(chunks__is_active=True, chunks__index_version=bot.index_version).distinct().count()
    return current, ready.count()


def reindex_prepared(bot) -> int:
    """How many ready documents have all their passages embedded for the current index settings.

    A re-index activates every document's new passages at once at the end, so this is
    the count that moves while it runs (the old index keeps answering meanwhile).
    """
    ready = Document.objects.filter(bot=bot, status=Document.Status.READY)
    current = Chunk.objects.filter(document__in=ready, index_version=bot.index_version)
    unfinished = current.filter(embedding__isnull=True).values("document_id")
    return current.exclude(document_id__in=unfinished).values("document_id").distinct().count()


def enqueue_reindex(bot_id: int) -> None:
    from documents.tasks import reindex

    transaction.on_commit(functools.partial(_publish, reindex, bot_id))


# --- Sweeper, retry, rollback, delete ----------------------------------------------------


def sweep_stuck_documents() -> int:
    """Re-queue documents whose ingestion no live task holds, and bots whose re-indexing died.

    Waiting in a long queue is not being stuck. A document is stuck when no worker holds
    its lock, its row hasn't moved for DOCENT_STALE_SECONDS, and no message for it waits
    in the broker: either none was recorded (pending_version), or the one recorded is
    presumed lost because the broker's ingest queue is empty (broker restarted, or the
    worker that took it died before it could start). A bot's re-indexing is re-queued
    when no worker holds its lock and its documents haven't moved for as long, at most
    once per DOCENT_STALE_SECONDS. Re-queueing is safe: ingestion is idempotent.
    Returns how many tasks were queued.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.DOCENT_STALE_SECONDS)
    queue_empty: bool | None = None  # asked of the broker only when it matters

    def ingest_queue_empty() -> bool:
        nonlocal queue_empty
        if queue_empty is None:
            queue_empty = _ingest_queue_length() == 0
        return queue_empty

    stale = Document.objects.filter(
        status__in=RUNNING_STATUSES, updated_at__lt=cutoff, current_version__isnull=False
    ).exclude(pk__in=_held_locks(_LOCK_NAMESPACE))
    count = 0
    for document in stale:
        if document.pending_version_id == document.current_version_id:
            if document.pending_since > cutoff or not ingest_queue_empty():
                continue  # its message waits its turn
            Document.objects.filter(pk=document.pk, pending_version_id=document.pending_version_id).update(
                pending_version=None, pending_since=None
            )
        count += enqueue_ingest(document.current_version_id)
    # Bots whose re-indexing task died: documents still on an older index, untouched for a while.
    stalled_bots = (
        Chunk.objects.filter(is_active=True, index_version__lt=F("bot__index_version"), document__updated_at__lt=cutoff)
        .exclude(bot_id__in=_held_locks(_REINDEX_LOCK_NAMESPACE))
        .values_list("bot_id", flat=True)
        .distinct()
    )
    for bot_id in stalled_bots:
        # No row records a waiting re-index message (the bot row isn't ours to add to), so
        # touch the documents to wait a full period before presuming this one lost too.
        Document.objects.filter(bot_id=bot_id, status=Document.Status.READY, updated_at__lt=cutoff).update(
            updated_at=timezone.now()
        )
        enqueue_reindex(bot_id)
        count += 1
    if count:
        logger.info("Re-queued %d stuck document(s) or re-indexing(s)", count)
    return count


def _ingest_queue_length() -> int:
    """Messages waiting in the broker's ingest queue (not those a worker has taken)."""
    from config.celery import app

    queue = settings.CELERY_TASK_ROUTES["documents.tasks.*"]["queue"]
    try:
        with app.connection_for_write() as conn:
            return conn.default_channel.queue_declare(queue, passive=True).message_count
    except Exception as exc:  # the queue doesn't exist yet (RabbitMQ), or the broker is down
        logger.warning("Could not count the %s queue's messages: %r", queue, exc)
        return 0


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
        for stored in files:
            # robust: the rows are gone whatever the storage says; a file it can't delete is logged.
            transaction.on_commit(functools.partial(stored.delete, save=False), robust=True)


def prepare_bot_deletion(bot) -> int:
    """Ready `bot`'s documents to go with it; returns how many it has.

    Call it inside the transaction that deletes the bot, before the delete: its rows go
    by cascade, its stored files are deleted once that commits, and its keyword
    statistics are dropped at once rather than counted down chunk by chunk (that made
    deleting a million-passage bot take 53 s instead of 21).
    """
    from retrieval.services import drop_keyword_statistics

    drop_keyword_statistics(bot.pk)
    versions = DocumentVersion.objects.filter(document__bot=bot).only("file")
    for version in versions.iterator(chunk_size=2000):
        if version.file:
            transaction.on_commit(functools.partial(version.file.delete, save=False), robust=True)
    return Document.objects.filter(bot=bot).count()


# --- Lookups for the application layer ---------------------------------------------------


def documents_of_bots(bots):
    """Documents belonging to any bot of `bots` (the caller's visibility filter)."""
    return Document.objects.filter(bot__in=bots).select_related("current_version", "active_version")


def versions_of(document: Document):
    return document.versions.order_by("-number")


def any_running(documents) -> bool:
    return any(not document.is_final for document in documents)
