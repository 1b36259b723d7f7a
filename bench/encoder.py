"""The optimised encoder against the reference one: throughput and retrieval quality on the same texts.

Encodes a BEIR corpus (title and text, as BEIR does) with the embedding model on torch
(fp32) and on ONNX Runtime with int8 weights (retrieval.embedders.OnnxEmbedder),
then ranks every corpus entry for each judged query of the split by exact dot product
(numpy, no database) and prints one JSON line:

    {"bench": "encoder", "fp32_chunks_per_s", "optimised_chunks_per_s", "speedup",
     "ndcg10_fp32", "ndcg10_optimised", "ndcg10_change", "within_1pct", ...}

    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/encoder.py [--data DIR] [--limit N] [--check]

The corpus is encoded in blocks that alternate between the two encoders, so both see
the same load on a shared machine and the speedup is measured within one run. The
export to ONNX (first run on a machine, cached under $DOCENT_DATA_DIR/models/) is
timed separately and not counted. `--limit N` encodes only the first N corpus entries:
quicker, but its nDCG ranks a subset and is not comparable to published figures.
`--check` exits 1 unless nDCG@10 of the optimised encoder is within 1% of fp32's,
the condition for making it the default (issue 11).

On the full nfcorpus (3,633 entries, 323 test queries), a busy 2-core AVX2 machine
without VNNI: fp32 5.5 and int8 ONNX 9.9 chunks/s (speedup 1.79), nDCG@10 0.3160 and
0.3163 (+0.1%). Short strings drift most under int8 (a one-word text reaches a cosine
of ~0.96 with torch's vector; sentences ~0.99).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = 128  # texts per timed block; blocks alternate between the encoders


def default_data() -> Path:
    shared = os.environ.get("DOCENT_SHARED_DATA")
    base = Path(shared).expanduser() if shared else ROOT.parent / "shared" / "data"
    return base / "beir" / "nfcorpus"


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_beir(folder: Path, split: str, limit: int | None):
    corpus = read_jsonl(folder / "corpus.jsonl")[:limit]
    doc_ids = [entry["_id"] for entry in corpus]
    texts = [f"{entry.get('title', '')} {entry['text']}".strip() for entry in corpus]
    known = set(doc_ids)
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as rows:
        next(rows)  # header
        for row in rows:
            query_id, doc_id, grade = row.rstrip("\n").split("\t")
            if doc_id in known and int(grade) > 0:
                qrels.setdefault(query_id, {})[doc_id] = int(grade)
    queries = {entry["_id"]: entry["text"] for entry in read_jsonl(folder / "queries.jsonl") if entry["_id"] in qrels}
    return doc_ids, texts, queries, qrels


def ndcg10(doc_vectors: np.ndarray, query_vectors: np.ndarray, doc_ids, query_ids, qrels) -> float:
    from evaluation.metrics import RetrievalCase, retrieval_metrics

    scores = query_vectors @ doc_vectors.T
    top = np.argsort(-scores, axis=1)[:, :10]
    cases = [
        RetrievalCase(query_id, [doc_ids[index] for index in top[row]], qrels[query_id])
        for row, query_id in enumerate(query_ids)
    ]
    return retrieval_metrics(cases)["ndcg@10"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="a BEIR folder (default: nfcorpus)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="encode only the first N corpus entries")
    parser.add_argument("--batch-size", type=int, default=int(os.environ.get("DOCENT_EMBEDDING_BATCH_SIZE", 32)))
    parser.add_argument("--model", default=None, help="a model source (default: the shipped all-MiniLM-L6-v2)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless nDCG@10 stays within 1%% of fp32")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (args.data / "corpus.jsonl").is_file():
        # `make bench` runs everywhere; the figure needs a BEIR folder, which a clone lacks.
        print(json.dumps({"bench": "encoder", "skipped": f"no BEIR corpus.jsonl in {args.data}; pass --data DIR"}))
        return 0

    from retrieval.embedders import DEFAULT_MODEL_SOURCE, Embedder, OnnxEmbedder

    source = args.model or DEFAULT_MODEL_SOURCE
    # Where settings.DATA_DIR points, without importing settings (that starts the embedded Postgres).
    data_dir = Path(os.environ.get("DOCENT_DATA_DIR") or ROOT / ".data").expanduser()
    doc_ids, texts, queries, qrels = load_beir(args.data, args.split, args.limit)
    query_ids = list(queries)

    reference = Embedder(source)
    started = time.perf_counter()
    optimised = OnnxEmbedder(source, models_dir=data_dir / "models")
    load_seconds = time.perf_counter() - started
    # One small batch each first: lazy initialisation is not throughput.
    reference.encode(texts[:8], args.batch_size)
    optimised.encode(texts[:8], args.batch_size)

    vectors = {"fp32": [], "optimised": []}
    seconds = {"fp32": 0.0, "optimised": 0.0}
    encoders = {"fp32": reference, "optimised": optimised}
    blocks = range(0, len(texts), BLOCK)
    for number, start in enumerate(tqdm(blocks, desc="encoding corpus", unit="block", file=sys.stderr)):
        # Alternate which goes first, so neither always meets a warmer or cooler machine.
        for name in ("fp32", "optimised") if number % 2 == 0 else ("optimised", "fp32"):
            began = time.perf_counter()
            vectors[name].append(encoders[name].encode(texts[start : start + BLOCK], args.batch_size))
            seconds[name] += time.perf_counter() - began

    query_texts = [queries[query_id] for query_id in query_ids]
    ndcg = {
        name: ndcg10(
            np.concatenate(vectors[name]),
            encoders[name].encode(query_texts, args.batch_size),
            doc_ids,
            query_ids,
            qrels,
        )
        for name in ("fp32", "optimised")
    }
    change = (ndcg["optimised"] - ndcg["fp32"]) / ndcg["fp32"]
    within = change >= -0.01
    print(
        json.dumps(
            {
                "bench": "encoder",
                "model": source,
                "backend": optimised.backend,
                "data": args.data.name,
                "split": args.split,
                "texts": len(texts),
                "queries": len(query_ids),
                "batch_size": args.batch_size,
                "fp32_chunks_per_s": round(len(texts) / seconds["fp32"], 1),
                "optimised_chunks_per_s": round(len(texts) / seconds["optimised"], 1),
                "speedup": round(seconds["fp32"] / seconds["optimised"], 2),
                "ndcg10_fp32": round(ndcg["fp32"], 4),
                "ndcg10_optimised": round(ndcg["optimised"], 4),
                "ndcg10_change": round(change, 4),
                "within_1pct": within,
                "exported_now": optimised.exported_now,
                "load_seconds": round(load_seconds, 1),
            }
        ),
        flush=True,
    )
    return 0 if within or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
