"""Reading test sets from files: CSV and JSONL rows, and BEIR folders or zips.

Only parsing: each function returns plain data (rows as dicts, a BeirSet) or raises
ValueError naming the file and line to fix. evaluation.services turns the result into
a stored test set (and, for BEIR, the bot's documents).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings


def _decode(data: bytes, kind: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"The {kind} file is not UTF-8 text.") from None


def parse_csv(data: bytes) -> list[dict[str, str]]:
    """Cases from CSV with a header row.

    Columns: question, expected_documents (';'-separated names), pages, reference_answer, answerable.
    """
    reader = csv.DictReader(io.StringIO(_decode(data, "CSV")))
    columns = {column.strip() for column in reader.fieldnames or [] if column}
    if "question" not in columns:
        raise ValueError("The CSV needs a header row with at least a 'question' column.")
    allowed = {"question", "expected_documents", "pages", "reference_answer", "answerable"}
    if columns - allowed:
        raise ValueError(f"Unknown CSV column(s): {', '.join(sorted(columns - allowed))}.")
    rows = []
    try:
        for row in reader:
            if None in row:
                raise ValueError(f"CSV line {reader.line_num} has more fields than the header.")
            row = {key.strip(): (value or "") for key, value in row.items() if key}
            if any(value.strip() for value in row.values()):
                rows.append(row)
    except csv.Error as exc:
        raise ValueError(f"The CSV could not be read at line {reader.line_num}: {exc}.") from None
    return rows


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    """Cases from JSON lines, one object per line with the keys of a typed case."""
    cases = []
    for number, line in enumerate(_decode(data, "JSONL").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"JSONL line {number} is not valid JSON: {exc.msg}.") from None
        if not isinstance(case, dict):
            raise ValueError(f"JSONL line {number} must be a JSON object.")
        cases.append(case)
    return cases


@dataclass
class BeirSet:
    corpus: dict[str, str]  # _id → title and text
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id → corpus id → grade


def read_beir_folder(folder: str | Path, split: str = "test") -> BeirSet:
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder.name} is not a folder.")
    files = {path.relative_to(folder).as_posix(): path for path in folder.rglob("*") if path.is_file()}
    return parse_beir({name: path.read_bytes for name, path in files.items()}, split)


def beir_from_zip(data: bytes, split: str = "test") -> BeirSet:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError):
        raise ValueError("The file is not a readable zip archive.") from None
    limit = settings.DOCENT_MAX_UPLOAD_MB * 1024 * 1024 * 20
    if sum(info.file_size for info in archive.infolist()) > limit:
        raise ValueError("The BEIR zip unpacks to more than Docent reads at once.")
    return parse_beir({name: functools.partial(archive.read, name) for name in names}, split)


def parse_beir(files: dict[str, Callable[[], bytes]], split: str) -> BeirSet:
    """BEIR from {relative path: reader}; the files may sit in one top folder (as BEIR's zips do)."""

    def find(suffix: str) -> str | None:
        matches = sorted((name for name in files if name == suffix or name.endswith("/" + suffix)), key=len)
        return matches[0] if matches else None

    corpus_name, queries_name = find("corpus.jsonl"), find("queries.jsonl")
    qrels_names = sorted(name for name in files if "qrels/" in name and name.endswith(".tsv"))
    if not corpus_name or not queries_name or not qrels_names:
        raise ValueError("A BEIR set needs corpus.jsonl, queries.jsonl and qrels/*.tsv.")
    qrels_name = next((name for name in qrels_names if name.endswith(f"qrels/{split}.tsv")), qrels_names[0])

    corpus = {}
    for number, entry in enumerate(jsonl_objects(files[corpus_name](), "corpus.jsonl"), start=1):
        if not isinstance(entry.get("_id"), str | int) or not isinstance(entry.get("text", ""), str):
            raise ValueError(f"corpus.jsonl line {number} needs an _id and a text.")
        text = "\n\n".join(part for part in (entry.get("title") or "", entry.get("text") or "") if part.strip())
        if text.strip():
            corpus[str(entry["_id"])] = text
    queries = {}
    for number, entry in enumerate(jsonl_objects(files[queries_name](), "queries.jsonl"), start=1):
        if not isinstance(entry.get("_id"), str | int) or not isinstance(entry.get("text"), str):
            raise ValueError(f"queries.jsonl line {number} needs an _id and a text.")
        queries[str(entry["_id"])] = entry["text"]
    qrels: dict[str, dict[str, int]] = {}
    lines = _decode(files[qrels_name](), "qrels").splitlines()
    for number, line in enumerate(lines, start=1):
        parts = line.strip().split("\t")
        if not line.strip() or (number == 1 and not parts[-1].lstrip("-").isdigit()):
            continue  # blank, or the header (query-id, corpus-id, score)
        if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
            raise ValueError(f"{PurePosixPath(qrels_name).name} line {number} must be query-id, corpus-id, score.")
        query_id, corpus_id, grade = parts[0], parts[1], int(parts[2])
        if grade > 0 and query_id in queries and corpus_id in corpus:
            qrels.setdefault(query_id, {})[corpus_id] = grade
    if not corpus:
        raise ValueError("corpus.jsonl has no entry with text.")
    if not qrels:
        raise ValueError("No qrels line joins a query to a corpus entry.")
    return BeirSet(corpus=corpus, queries=queries, qrels=qrels)


def jsonl_objects(data: bytes, kind: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(_decode(data, kind).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{kind} line {number} is not valid JSON.") from None
        if not isinstance(entry, dict):
            raise ValueError(f"{kind} line {number} must be a JSON object.")
        yield entry
