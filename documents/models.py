"""Documents, their uploaded versions, their pages, and the chunks retrieval searches.

A Document is a file name within a bot. Each upload of that name is a
DocumentVersion (the file and its hash); parsing stores the version's text as Pages,
so re-chunking never needs to parse again. Ingestion writes a version's Chunks as
inactive rows, embeds them, and then, in one transaction, deactivates the document's
old chunks and activates the new ones: search only ever sees `is_active` chunks.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from pgvector.django import SparseVectorField, VectorField

from documents.filenames import fit_bytes


class Document(models.Model):
    """A file in a bot's knowledge, and the state of its latest ingestion.

    Status moves queued → parsing → chunking → embedding → ready, or to failed from
    any non-final state. A new upload of the same name sends it back to queued while
    the previous version's chunks keep answering. Transitions are the mark_*() and
    fail() methods below; each saves at once so the UI sees it and a crash leaves
    the last state behind as evidence.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        PARSING = "parsing"
        CHUNKING = "chunking"
        EMBEDDING = "embedding"
        READY = "ready"
        FAILED = "failed"

    FINAL_STATUSES = {Status.READY, Status.FAILED}

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="documents")
    # The name as uploaded, for display (documents.filenames.display_name caps it); the
    # stored file's name is shortened separately to fit the filesystem.
    filename = models.CharField(max_length=500)

    class ErrorKind(models.TextChoices):
        INPUT = "input", "the file"  # encrypted, corrupt, empty, unsupported: retrying won't help
        INTERNAL = "internal", "Docent"  # database gone, worker killed: retried, then Retry button

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=10, choices=ErrorKind.choices, blank=True)
    notes = models.TextField(blank=True, help_text="Warnings about a file that was still indexed.")
    pages_total = models.PositiveIntegerField(default=0)
    pages_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0, help_text="Chunks of the active version.")
    current_version = models.ForeignKey(
        "DocumentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    active_version = models.ForeignKey(
        "DocumentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Queue bookkeeping (see documents.services.enqueue_ingest): the version named by the
    # ingest message waiting in the broker, if any, so a version never has two; and when a
    # task last gave this document a slice of work, for round-robin between bots and documents.
    pending_version = models.ForeignKey(
        "DocumentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pending_since = models.DateTimeField(null=True, blank=True)
    served_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["bot", "filename"], name="unique_filename_per_bot")]

    def __str__(self) -> str:
        return self.filename

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def progress(self) -> float:
        """0 to 1: parsing is the first 10%, chunking the next 10%, embedding the rest."""
        if self.status == self.Status.READY:
            return 1.0
        if self.status == self.Status.PARSING and self.pages_total:
            return round(0.1 * self.pages_done / self.pages_total, 3)
        if self.status == self.Status.CHUNKING:
            return 0.1
        if self.status == self.Status.EMBEDDING and self.chunks_total:
            return round(0.2 + 0.8 * self.chunks_done / self.chunks_total, 3)
        return 0.0

    def _set(self, **fields) -> None:
        """Write `fields` at once; raises Document.DoesNotExist if the row was deleted meanwhile.

        A filtered UPDATE rather than save(update_fields=...), whose error for a deleted row
        is a bare DatabaseError that ingestion can't tell apart from a real one.
        """
        for name, value in fields.items():
            setattr(self, name, value)
        self.updated_at = timezone.now()
        if not type(self).objects.filter(pk=self.pk).update(**fields, updated_at=self.updated_at):
            raise self.DoesNotExist(f"Document {self.pk} was deleted.")

    def mark_queued(self) -> None:
        self._set(
            status=self.Status.QUEUED,
            error="",
            error_kind="",
            notes="",
            pages_done=0,
            pages_total=0,
            chunks_done=0,
            chunks_total=0,
        )

    def mark_parsing(self, pages_total: int = 0) -> None:
        self._set(status=self.Status.PARSING, error="", error_kind="", pages_total=pages_total, pages_done=0)

    def record_pages(self, pages_done: int) -> None:
        self._set(pages_done=pages_done)

    def mark_chunking(self) -> None:
        self._set(status=self.Status.CHUNKING)

    def mark_embedding(self, chunks_total: int) -> None:
        self._set(status=self.Status.EMBEDDING, chunks_total=chunks_total, chunks_done=0)

    def record_embedded(self, chunks_done: int) -> None:
        self._set(chunks_done=chunks_done)

    def mark_ready(self, version: DocumentVersion, chunk_count: int) -> None:
        self._set(
            status=self.Status.READY,
            error="",
            error_kind="",
            active_version=version,
            chunk_count=chunk_count,
            chunks_done=chunk_count,
            chunks_total=chunk_count,
        )

    def fail(self, reason: str, kind: str = ErrorKind.INPUT) -> None:
        self._set(status=self.Status.FAILED, error=reason, error_kind=kind)

    def heartbeat(self) -> None:
        """Show the sweeper that work on this document is alive."""
        self._set()


# Filesystems allow 255 bytes per path component; Django may add "_" and 7 characters
# to a name that is taken, so stay well below.
STORED_NAME_MAX_BYTES = 200


def _version_upload_to(version: DocumentVersion, filename: str) -> str:
    stored_name = fit_bytes(f"v{version.number}-{filename}", STORED_NAME_MAX_BYTES)
    return f"documents/bot-{version.document.bot_id}/doc-{version.document_id}/{stored_name}"


class DocumentVersion(models.Model):
    """One upload of a document: the stored file and the hash that detects re-uploads."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    file = models.FileField(upload_to=_version_upload_to, max_length=500)
    content_hash = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    page_count = models.PositiveIntegerField(null=True, blank=True, help_text="Set once all pages are stored.")
    chunked_index_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The bot index version whose chunks of this version are all written."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document", "-number"]
        constraints = [models.UniqueConstraint(fields=["document", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"{self.document.filename} v{self.number}"


class Page(models.Model):
    """The extracted text of one page of a version (text files are one page)."""

    version = models.ForeignKey(DocumentVersion, on_delete=models.CASCADE, related_name="pages")
    number = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["version", "number"]
        constraints = [models.UniqueConstraint(fields=["version", "number"], name="unique_page_number")]

    def __str__(self) -> str:
        return f"{self.version} p.{self.number}"


class Chunk(models.Model):
    """A passage of a document version with its embedding and full-text vector.

    `bot` and `document` repeat what `version` implies so that search filters on
    indexed columns without joins. Chunks are written inactive and without
    embeddings; search sees only active ones, which have an embedding of
    `dimensions` floats from the model the bot used at `index_version`.

    Embeddings of different models (and so dimensions) coexist in one untyped
    vector column; each dimension has its own partial HNSW index over
    `embedding::vector(n)` (see retrieval.services.ensure_vector_index).
    """

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    version = models.ForeignKey(DocumentVersion, on_delete=models.CASCADE, related_name="chunks")
    index_version = models.PositiveIntegerField(help_text="The bot's index settings version that produced it.")
    ordinal = models.PositiveIntegerField()
    page = models.PositiveIntegerField(null=True, blank=True)
    heading_path = models.CharField(max_length=500, blank=True)
    location = models.CharField(
        max_length=500,
        blank=True,
        help_text='Where the passage is, in its format\'s terms: "page 3", "rows 18–24", "Benefits › Dental".',
    )
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    embedding = VectorField(null=True, blank=True)
    # The built-in answerer's vectors for this chunk's sentences and headings (float16, with
    # a digest of the texts they belong to), filled in the background after ingestion so an
    # answer embeds only its question; retrieval.sentences explains the format.
    sentence_vectors = models.BinaryField(null=True, blank=True, editable=False)
    dimensions = models.PositiveSmallIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    search_vector = models.GeneratedField(
        expression=SearchVector("heading_path", weight="A", config="english")
        + SearchVector("text", weight="B", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    # BM25 term weights of an active chunk (saturated, length-normalised term frequency per
    # hashed lexeme), set by a database trigger; retrieval.keyword explains and reads it.
    bm25 = SparseVectorField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["document", "ordinal"]
        indexes = [
            GinIndex(name="chunk_search_vector_gin", fields=["search_vector"], condition=Q(is_active=True)),
            models.Index(name="chunk_active_bot", fields=["bot"], condition=Q(is_active=True)),
            models.Index(name="chunk_pending", fields=["version", "index_version"], condition=Q(is_active=False)),
            # The background fill of sentence vectors finds its work without scanning every chunk.
            models.Index(
                name="chunk_without_sentences",
                fields=["id"],
                condition=Q(is_active=True, sentence_vectors__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["version", "index_version", "ordinal"], name="unique_chunk_ordinal"),
        ]

    def __str__(self) -> str:
        return f"{self.document.filename} #{self.ordinal}"

    @property
    def citation_location(self) -> str:
        """`location`, or for chunks made before it was stored, the heading path or a PDF's page.

        Only a PDF has pages worth naming: every other format is one "page 1". Reads
        `document` (select it with the chunk).
        """
        if self.location or self.heading_path:
            return self.location or self.heading_path
        if self.page and (self.page > 1 or self.document.filename.lower().endswith(".pdf")):
            return f"page {self.page}"
        return ""
