"""Documents' public entry points: upload, ingestion, and lookups for the application layer.

These functions own their transactions. Views, API endpoints, tasks and management
commands call them and hold no ingestion logic of their own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from documents import chunkers, parsers
from documents.models import Chunk, Document, DocumentVersion

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "Something went wrong on our side while processing this file. Press Retry to try again."
# Seconds between progress writes while parsing, so a 2,000-page PDF isn't 2,000 UPDATEs.
PROGRESS_INTERVAL = 0.5


class UploadTooLarge(Exception):
    """A file is over DOCENT_MAX_UPLOAD_MB; nothing of the upload was stored."""


@dataclass(frozen=True)
class Upload:
    document: Document
    unchanged: bool  # same name and same content as the current version: no work queued


def max_upload_bytes() -> int:
    return settings.DOCENT_MAX_UPLOAD_MB * 1024 * 1024


def check_upload_sizes(files: list[UploadedFile]) -> None:
    """Refuse the whole upload if any file is too large, before anything is stored."""
    for upload in files:
        if upload.size > max_upload_bytes():
            raise UploadTooLarge(
                f"{upload.name} is {upload.size / 1024 / 1024:.1f} MB; "
                f"the limit is {settings.DOCENT_MAX_UPLOAD_MB} MB per file."
            )


def add_documents(bot, files: list[UploadedFile]) -> list[Upload]:
    check_upload_sizes(files)
    return [add_document(bot, upload) for upload in files]


def add_document(bot, upload: UploadedFile) -> Upload:
    """Store `upload` as a new version of the bot's document of that name and queue ingestion.

    A name the bot doesn't have yet creates the document. Content identical to the
    current version (same SHA-256) queues nothing, unless that version failed.
    """
    check_upload_sizes([upload])
    filename = clean_filename(upload.name)
    content_hash = _sha256(upload)
    with transaction.atomic():
        document, _ = Document.objects.select_for_update().get_or_create(bot=bot, filename=filename)
        current = document.current_version
        if current and current.content_hash == content_hash and document.status != Document.Status.FAILED:
            return Upload(document=document, unchanged=True)
        number = (current.number + 1) if current else 1
        version = DocumentVersion(document=document, number=number, content_hash=content_hash, size_bytes=upload.size)
        upload.seek(0)
        version.file.save(filename, upload, save=False)
        version.save()
        document.current_version = version
        document.save(update_fields=["current_version"])
        document.mark_queued()
        transaction.on_commit(lambda: _enqueue(version.id))
    return Upload(document=document, unchanged=False)


def _enqueue(version_id: int) -> None:
    from documents.tasks import ingest

    ingest.delay(version_id)


def clean_filename(name: str) -> str:
    name = Path(name or "").name.strip().replace("\x00", "")
    return name[:255] or "untitled"


def _sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for block in upload.chunks():
        digest.update(block)
    return digest.hexdigest()


def ingest_version(version_id: int) -> None:
    """Parse, chunk and embed one version, then make it the document's active version.

    Safe to run twice: a version that is already active does no work, a version
    superseded by a newer upload is skipped, and the chunk write replaces whatever
    an interrupted run left behind, in the same transaction that activates it.
    """
    version = DocumentVersion.objects.select_related("document__bot").filter(pk=version_id).first()
    if version is None:
        return  # deleted since it was queued
    document = version.document
    if document.current_version_id != version.id:
        return  # a newer upload replaced it
    if document.status == Document.Status.READY and document.active_version_id == version.id:
        return
    bot = document.bot
    path = Path(version.file.path)

    try:
        document.mark_parsing(pages_total=parsers.page_count(path))
        pages = _parse(document, path)
        document.mark_chunking()
        drafts = list(
            chunkers.fixed_token_chunks(
                pages, _tokenizer(), *_chunk_sizes(bot.chunk_size_tokens, bot.chunk_overlap_tokens)
            )
        )
    except parsers.ParseError as exc:
        document.fail(str(exc))
        return
    if not drafts:
        document.fail("The file contains no text to index.")
        return

    document.mark_embedding(len(drafts))
    vectors = []
    batch_size = settings.DOCENT_EMBEDDING_BATCH_SIZE * 4
    for start in range(0, len(drafts), batch_size):
        vectors.extend(_embed([draft.text for draft in drafts[start : start + batch_size]]))
        document.record_embedded(len(vectors))
    _activate(version, drafts, vectors)


def _parse(document: Document, path: Path) -> list[parsers.ParsedPage]:
    pages = []
    last_report = time.monotonic()
    try:
        for page in parsers.parse(path, document.filename):
            pages.append(page)
            if time.monotonic() - last_report > PROGRESS_INTERVAL:
                document.record_pages(len(pages))
                last_report = time.monotonic()
    except parsers.ParseError:
        raise
    except (RecursionError, MemoryError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # Parsers choke on malformed input in many ways; that is the file's fault, not ours.
        logger.warning("Parser crashed on document %s: %r", document.pk, exc)
        raise parsers.ParseError("This file is damaged or in an unexpected format and can't be read.") from exc
    document.record_pages(len(pages))
    return pages


def _chunk_sizes(size: int, overlap: int) -> tuple[int, int]:
    """Clamp the bot's sizes to what the embedding model can see (minus [CLS] and [SEP])."""
    from retrieval.services import embedder

    size = max(16, min(size, embedder().max_tokens - 2))
    overlap = max(0, min(overlap, size // 2))
    return size, overlap


def _tokenizer() -> chunkers.Tokenizer:
    from retrieval.services import embedder

    return embedder()


def _embed(texts: list[str]):
    from retrieval.services import embed_texts

    return embed_texts(texts)


def _activate(version: DocumentVersion, drafts: list[chunkers.ChunkDraft], vectors) -> None:
    """Swap the document's chunks for `version`'s in one transaction."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=version.document_id)
        if document.current_version_id != version.id:
            return
        Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    bot_id=document.bot_id,
                    document=document,
                    version=version,
                    ordinal=ordinal,
                    page=draft.page,
                    heading_path=draft.heading_path,
                    text=draft.text,
                    token_count=draft.token_count,
                    embedding=vector,
                )
                for ordinal, (draft, vector) in enumerate(zip(drafts, vectors, strict=True))
            ],
            batch_size=500,
        )
        document.mark_ready(version, chunk_count=len(drafts))


def fail_internal(version_id: int) -> None:
    """Our fault, retries used up: mark the document failed so it never hangs in a running state."""
    document = Document.objects.filter(current_version_id=version_id).first()
    if document and not document.is_final:
        document.fail(INTERNAL_ERROR)


def documents_of_bots(bots):
    """Documents belonging to any bot of the queryset `bots` (the caller's visibility filter)."""
    return Document.objects.filter(bot__in=bots).select_related("current_version")
