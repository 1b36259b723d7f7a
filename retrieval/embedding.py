"""Embedding models in use: which one a bot embeds with, loading it, encoding, and its vector index.

The loaders live in retrieval.embedders (torch loads on first use, never at import);
this module picks the registered model and talks to the database.
"""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings
from django.db import connection

from retrieval.embedders import (
    DEFAULT_MODEL_SOURCE,
    ONNX_FP32,
    TORCH,
    AnyEmbedder,
    ensure_export,
    export_state,
    get_embedder,
    get_query_embedder,
)
from retrieval.models import EmbeddingModel

logger = logging.getLogger(__name__)
# Sources whose export failed in this process (prepare_query_embedders).
_NOT_EXPORTABLE: set[str] = set()


def default_embedding_model() -> EmbeddingModel:
    """The installation's default model; the shipped one if none is marked (or the row was lost)."""
    model = EmbeddingModel.objects.filter(is_default=True).first()
    if model is None:
        model, _ = EmbeddingModel.objects.get_or_create(
            name="all-MiniLM-L6-v2",
            defaults={"source": DEFAULT_MODEL_SOURCE, "dimensions": 384, "max_tokens": 256, "is_default": True},
        )
    return model


def embedding_model_for(bot) -> EmbeddingModel:
    """The model `bot` embeds with: its own choice, or the installation's default."""
    return bot.embedding_model if bot.embedding_model_id else default_embedding_model()


def embedder(model: EmbeddingModel | None = None) -> AnyEmbedder:
    """The loaded model (default: the installation's default) on its backend, once per process."""
    model = model or default_embedding_model()
    return get_embedder(model.source, model.backend)


def warm_up() -> None:
    """Load what embeds questions for the default model ahead of the first request (exporting it if need be)."""
    embed_queries(["warm-up"])


def prepare_query_embedders() -> None:
    """Export every registered torch model's fp32 ONNX twin that is missing or out of date (in the worker).

    So a web process embeds the first question after a model is added or fine-tuned at
    once, instead of waiting for the export.
    """
    default_embedding_model()  # the shipped model's row exists
    for model in EmbeddingModel.objects.filter(backend=TORCH).exclude(source__in=_NOT_EXPORTABLE):
        try:
            ensure_export(model.source, ONNX_FP32)
        except (ValueError, OSError) as exc:
            _NOT_EXPORTABLE.add(model.source)  # not tried again by this process
            logger.warning("No ONNX export of %s; its questions will be embedded with torch: %s", model.name, exc)


def embed_texts(texts: list[str], model: EmbeddingModel | None = None) -> np.ndarray:
    """Passages to vectors on the model's own backend: what ingestion stores."""
    return embedder(model).encode(texts, batch_size=settings.DOCENT_EMBEDDING_BATCH_SIZE)


def embed_queries(texts: list[str], model: EmbeddingModel | None = None) -> np.ndarray:
    """Questions (or an answer's sentences) to vectors comparable with the stored ones, without torch.

    See retrieval.embedders.get_query_embedder: a torch model's fp32 ONNX twin, so the
    web process never loads torch.
    """
    model = model or default_embedding_model()
    encoder = get_query_embedder(model.source, model.backend)
    return encoder.encode(texts, batch_size=settings.DOCENT_EMBEDDING_BATCH_SIZE)


def query_embedder_problem(model: EmbeddingModel | None = None) -> str:
    """Why questions for `model` (default: the installation's default) can't be embedded at once; "" if they can.

    For readiness probes, so cheap: the ONNX export get_query_embedder loads must be in
    place for the current weights and its files readable. Loads no model, exports nothing.
    """
    model = model or default_embedding_model()
    variant = ONNX_FP32 if model.backend == TORCH else model.backend
    export_dir, current = export_state(model.source, variant)
    if not current:
        return f"the {variant} export of {model.name} is missing or out of date (a worker or `serve` makes it)"
    for name in ("model.onnx", "tokenizer.json"):
        try:
            with open(export_dir / name, "rb") as file:
                file.read(1)
        except OSError as exc:
            return f"the {variant} export of {model.name} can't be read: {name} ({exc.strerror})"
    return ""


def ensure_vector_index(dimensions: int) -> None:
    """Create the partial HNSW index for vectors of this many dimensions, if missing.

    All embeddings share one untyped vector column; an index per dimension over
    `embedding::halfvec(n)` lets models of different sizes coexist, each searched
    through its own index (search() casts the same way so the planner uses it). Half
    precision and the denser graph are what migration retrieval 0009 chose for the
    shipped model's index, by measurement: the same recall in half the size, and
    m=32 / ef_construction=128 for recall@10 ≥ 0.95.
    """
    dimensions = int(dimensions)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS chunk_embedding_hnsw_{dimensions} ON documents_chunk "
            f"USING hnsw ((embedding::halfvec({dimensions})) halfvec_cosine_ops) "
            f"WITH (m = 32, ef_construction = 128) WHERE dimensions = {dimensions} AND is_active"
        )
