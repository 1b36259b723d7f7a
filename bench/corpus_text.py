"""Is the text Docent indexes the document's text? A run of the parsers over a whole corpus.

Every file under the corpus's format folders (pdf/, html/, docx/, md/, csv/) goes
through the parser layer, as an upload would, without a database. Prints JSON lines:

- one per format: documents, pages, pages with text, documents whose text looks
  garbled (`documents.parsers.looks_garbled` over the whole text), pages the parser
  marked garbled (no engine could decode their font), failures by reason
  and, for web pages, how many kept under a third of their visible text;
- one for the Readability test pages whose expected article is in html_reference/:
  the share of the expected article's words our text holds (recall), and the share of
  ours that are the article's (precision), averaged over the pages;
- with --per-file, one line per file before the totals.

Each file is parsed in a forked child with a time limit, so a parser that hangs or
crashes on one file costs that file only. A progress bar goes to stderr.

    .venv/bin/python bench/corpus_text.py [--docs DIR] [--timeout 60] [--per-file]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The shared corpus is not in the repository: $DOCENT_SHARED_DATA, or shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("DOCENT_SHARED_DATA") or ROOT.parent / "shared" / "data")
DEFAULT_DOCS = SHARED_DATA / "docs"
FORMATS = ("pdf", "html", "docx", "md", "csv")
# A web page whose extracted text is under this share of its visible text has probably lost its article.
UNDER_VISIBLE_SHARE = 1 / 3
_WORD = re.compile(r"\w+")


def parse_file(path: Path) -> dict:
    """What the parsers make of one file: pages, pages with text, garbled or not, the failure's reason."""
    from documents import parsers

    result: dict = {"file": path.name, "pages": 0, "pages_with_text": 0, "garbled": False, "failure": None}
    result["pages_marked_garbled"] = 0  # pages no engine could decode, of which only the readable words are kept
    texts: list[str] = []
    try:
        for page in parsers.parse(path, path.name):
            result["pages"] += 1
            result["pages_marked_garbled"] += getattr(page, "problem", "") == "garbled"
            if page.text.strip():
                result["pages_with_text"] += 1
                texts.append(page.text)
    except parsers.ParseError as exc:
        result["failure"] = str(exc)
    except Exception as exc:  # what the pipeline would report as "damaged": name the crash here
        result["failure"] = f"crash: {type(exc).__name__}"
    text = "\n".join(texts)
    result["chars"] = len(text)
    result["garbled"] = parsers.looks_garbled(text)
    if path.parent.name == "html":
        visible = parsers.visible_text(parsers.decode_html(path.read_bytes()))
        result["visible_chars"] = len(visible)
        result["under_visible_share"] = bool(visible) and len(" ".join(text.split())) < UNDER_VISIBLE_SHARE * len(
            visible
        )
        result["text"] = text  # for the comparison with the reference article; dropped before printing
    return result


def _child(path: Path, connection) -> None:
    try:
        connection.send(parse_file(path))
    finally:
        connection.close()


def guarded_parse(path: Path, timeout: float) -> dict:
    """parse_file in a forked child: a hang becomes "timeout", a dead child "crash"."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(path, sender))
    child.start()
    sender.close()
    result = None
    if receiver.poll(timeout):
        try:
            result = receiver.recv()
        except EOFError:
            result = None
    child.join(5 if result is not None else 0)
    if child.is_alive():
        child.kill()
        child.join()
    if result is None:
        reason = "timeout" if child.exitcode in (None, -9) else f"crash: exit code {child.exitcode}"
        result = {"file": path.name, "pages": 0, "pages_with_text": 0, "garbled": False, "failure": reason}
    return result


def reference_overlap(ours: str, reference_html: Path) -> tuple[float, float]:
    """(recall, precision) of our words against the reference article's, as multisets."""
    from documents import parsers

    expected = Counter(word.lower() for word in _WORD.findall(parsers.visible_text(reference_html.read_text())))
    got = Counter(word.lower() for word in _WORD.findall(ours))
    common = sum((expected & got).values())
    recall = common / sum(expected.values()) if expected else 1.0
    precision = common / sum(got.values()) if got else 0.0
    return recall, precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="corpus folder holding pdf/, html/, ...")
    parser.add_argument("--timeout", type=float, default=60, help="seconds one file may take")
    parser.add_argument("--per-file", action="store_true", help="also print one line per file")
    args = parser.parse_args()
    if not args.docs.is_dir():
        parser.error(f"{args.docs} is not here: pass --docs DIR or set DOCENT_SHARED_DATA to the shared corpus")

    import logging
    import warnings

    from tqdm import tqdm

    from documents import parsers  # noqa: F401 (imported before forking, so each child starts warm)

    logging.disable(logging.WARNING)  # the parsers log every damaged page; the totals say it
    warnings.simplefilter("ignore")
    files = [path for kind in FORMATS for path in sorted((args.docs / kind).glob("*")) if path.is_file()]
    results: dict[str, list[dict]] = {kind: [] for kind in FORMATS}
    for path in tqdm(files, desc="parsing", unit="file", file=sys.stderr):
        results[path.parent.name].append(guarded_parse(path, args.timeout))

    references = args.docs / "html_reference"
    overlaps = []
    for result in results["html"]:
        # readability__test__test-pages__<name>__source.html ↔ readability__<name>__expected.html
        name = result["file"].removeprefix("readability__test__test-pages__").removesuffix("__source.html")
        expected = references / f"readability__{name}__expected.html"
        if expected.is_file():
            overlaps.append(reference_overlap(result.get("text", ""), expected))
        result.pop("text", None)

    if args.per_file:
        for kind in FORMATS:
            for result in results[kind]:
                print(json.dumps({"format": kind, **result}, ensure_ascii=False), flush=True)
    for kind in FORMATS:
        rows = results[kind]
        if not rows:
            continue
        totals = {
            "format": kind,
            "documents": len(rows),
            "read": sum(1 for row in rows if not row["failure"]),
            "pages": sum(row["pages"] for row in rows),
            "pages_with_text": sum(row["pages_with_text"] for row in rows),
            "garbled_documents": sum(1 for row in rows if row["garbled"]),
            "garbled": [row["file"] for row in rows if row["garbled"]],
            "pages_marked_garbled": sum(row.get("pages_marked_garbled", 0) for row in rows),
        }
        if kind == "html":
            under = [row["file"] for row in rows if row.get("under_visible_share")]
            totals["under_third_of_visible_text"] = len(under)
            totals["under_third"] = under
        totals["failures"] = dict(Counter(_reason(row["failure"]) for row in rows if row["failure"]).most_common())
        print(json.dumps(totals, ensure_ascii=False), flush=True)
    if overlaps:
        print(
            json.dumps(
                {
                    "reference": "readability test pages (html_reference/)",
                    "pages": len(overlaps),
                    "mean_recall": round(sum(recall for recall, _ in overlaps) / len(overlaps), 3),
                    "mean_precision": round(sum(precision for _, precision in overlaps) / len(overlaps), 3),
                }
            ),
            flush=True,
        )


def _reason(failure: str) -> str:
    """A failure message cut to its first sentence, so the same reason counts once."""
    return failure.split(". ")[0].rstrip(".")


if __name__ == "__main__":
    main()
