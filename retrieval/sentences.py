"""Stored vectors for the built-in answerer: each chunk's sentences and headings, embedded once.

An extractive answer compares the question with every sentence of the retrieved
passages and with the headings and labels they sit under (retrieval.answerers).
Embedding those per answer took ~70 ms of a ~200 ms answer on a 10k-chunk bot; with
them stored, an answer embeds only its question.

They are filled in the background, not during ingestion: a document is searchable as
soon as its chunks are embedded, and ingestion throughput stays that of the chunk
encoder. `fill_sentence_vectors` takes active chunks lacking them, newest first, and
stops while documents are waiting to be ingested; the beat runs it every
DOCENT_SENTENCE_FILL_SECONDS (retrieval.tasks). Until a chunk has them, answers embed
its texts as before: slower, never different.

Chunk.sentence_vectors holds an 8-byte digest of the texts (answerers.scoring_texts,
in order), then one float16 row per text. Vectors whose digest does not match the
chunk's texts today (the sentence splitter changed) are ignored, so they can be stale
but never wrong; a re-index or `fill_sentence_vectors(refresh=True)` replaces them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence

import numpy as np
from django.db import connection, transaction

from documents.models import Chunk, Document
from retrieval.answerers import ScoredChunk, scoring_texts
from retrieval.embedding import embed_texts, embedding_model_for

_DIGEST_BYTES = 8
# Chunks per transaction: their rows stay locked while they are embedded (~1 s).
FILL_BATCH = 64


def _digest(texts: Sequence[str]) -> bytes:
    return hashlib.blake2b("\x1f".join(texts).encode(), digest_size=_DIGEST_BYTES).digest()


def pack(texts: Sequence[str], vectors: np.ndarray) -> bytes:
    """`vectors` (one row per text) as stored in Chunk.sentence_vectors."""
    return _digest(texts) + np.asarray(vectors, dtype=np.float16).tobytes()


def unpack(blob: bytes, texts: Sequence[str], dimensions: int) -> np.ndarray | None:
    """The stored rows for `texts`, or None if they were stored for other texts or another model size."""
    blob = bytes(blob)
    body = blob[_DIGEST_BYTES:]
    if blob[:_DIGEST_BYTES] != _digest(texts) or len(body) != len(texts) * dimensions * 2:
        return None
    return np.frombuffer(body, dtype=np.float16).reshape(len(texts), dimensions).astype(np.float32)


def stored_vectors(chunks: Sequence[ScoredChunk], dimensions: int) -> Mapping[str, np.ndarray]:
    """Text → unit vector for the texts of `chunks` that have current stored vectors (one query)."""
    if not chunks:
        return {}
    blobs = dict(
        Chunk.objects.filter(id__in=[chunk.chunk_id for chunk in chunks], sentence_vectors__isnull=False).values_list(
            "id", "sentence_vectors"
        )
    )
    known: dict[str, np.ndarray] = {}
    for chunk in chunks:
        if (blob := blobs.get(chunk.chunk_id)) is None:
            continue
        texts = scoring_texts(chunk.text, chunk.heading_path)
        vectors = unpack(blob, texts, dimensions)
        if vectors is not None:
            known.update(zip(texts, vectors, strict=True))
    return known


def ingestion_waiting() -> bool:
    """Documents are being ingested: their chunk embeddings come before sentence vectors."""
    return Document.objects.exclude(status__in=Document.FINAL_STATUSES).exists()


def fill_sentence_vectors(
    max_seconds: float | None = None, yield_to_ingestion: bool = True, progress=None, bot_id: int | None = None
) -> int:
    """Store sentence vectors for active chunks lacking them, a batch at a time; how many chunks got them.

    Stops when none are left, after `max_seconds`, or (with `yield_to_ingestion`) as soon
    as documents are waiting to be ingested. Safe to run in several workers at once:
    each batch locks its rows and skips rows another worker holds. `progress`, if
    given, is called with the number of chunks done after each batch. `bot_id` limits
    it to one bot's chunks (benchmarks).
    """
    started = time.monotonic()
    done = 0
    while True:
        if yield_to_ingestion and ingestion_waiting():
            break
        filled = _fill_batch(bot_id)
        if not filled:
            break
        done += filled
        if progress is not None:
            progress(filled)
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            break
    return done


def _fill_batch(bot_id: int | None = None) -> int:
    waiting = Chunk.objects.filter(is_active=True, sentence_vectors__isnull=True)
    if bot_id is not None:
        waiting = waiting.filter(bot_id=bot_id)
    with transaction.atomic():
        chunks = list(
            waiting.select_related("bot__embedding_model")
            .select_for_update(of=("self",), skip_locked=True)
            .only("id", "text", "heading_path", "bot__embedding_model", "bot__id")
            .order_by("-id")[:FILL_BATCH]
        )
        if not chunks:
            return 0
        by_model: dict[int, list[Chunk]] = {}
        models = {}
        for chunk in chunks:
            model = embedding_model_for(chunk.bot)
            models[model.pk] = model
            by_model.setdefault(model.pk, []).append(chunk)
        rows = []
        for model_id, group in by_model.items():
            texts_of = {chunk.pk: scoring_texts(chunk.text, chunk.heading_path) for chunk in group}
            distinct = list(dict.fromkeys(text for texts in texts_of.values() for text in texts))
            vectors = dict(zip(distinct, embed_texts(distinct, models[model_id]), strict=True)) if distinct else {}
            dimensions = models[model_id].dimensions
            for chunk in group:
                texts = texts_of[chunk.pk]
                matrix = np.array([vectors[text] for text in texts]).reshape(len(texts), dimensions)
                rows.append((pack(texts, matrix), chunk.pk))
        with connection.cursor() as cursor:
            # One statement for the batch: the chunk table's statement triggers run once, not per row.
            cursor.execute(
                "UPDATE documents_chunk c SET sentence_vectors = v.blob"
                " FROM unnest(%s::bigint[], %s::bytea[]) AS v(id, blob) WHERE c.id = v.id",
                [[chunk_id for _, chunk_id in rows], [blob for blob, _ in rows]],
            )
    return len(chunks)
