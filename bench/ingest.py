"""Ingestion throughput on a real 20-page PDF, through the real pipeline.

Prints JSON lines: pages/s parsed, chunks/s end to end (parse → chunk → embed →
write to pgvector, as the Celery task runs it), and chunks/s of bare
SentenceTransformer.encode on the same chunk texts in the same run.

    make bench            # or: DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/ingest.py [--pdf PATH] [--pages 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The shared corpus is not in the repository: $DOCENT_SHARED_DATA, or shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("DOCENT_SHARED_DATA") or ROOT.parent / "shared" / "data")
# Lessig's "Free Culture" (pdf.js test corpus): pages 17–36 are dense running text, ~2,200 characters each.
DEFAULT_PDF = SHARED_DATA / "docs" / "pdf" / "pdfjs__test__pdfs__freeculture.pdf"


def page_range(path: Path, first: int, pages: int) -> bytes:
    from pypdf import PdfReader, PdfWriter

    reader, writer = PdfReader(path), PdfWriter()
    for page in reader.pages[first - 1 : first - 1 + pages]:
        writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--first-page", type=int, default=17)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    if not args.pdf.is_file():
        parser.error(f"{args.pdf} is not here: pass --pdf PATH or set DOCENT_SHARED_DATA to the shared corpus")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from tqdm import tqdm

    from bots.services import create_bot
    from documents import parsers, services
    from documents.models import Chunk
    from retrieval.services import embedder

    call_command("migrate", verbosity=0)
    pdf = page_range(args.pdf, args.first_page, args.pages)
    model = embedder()
    model.encode(["warm up"])  # model load is not throughput

    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    bot = create_bot(user, f"bench-{time.time_ns()}")

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "docent-bench.pdf"
    tmp.write_bytes(pdf)
    started = time.perf_counter()
    pages = list(parsers.parse(tmp, tmp.name))
    parse_seconds = time.perf_counter() - started
    emit(metric="parse", pdf=args.pdf.name, pages=len(pages), seconds=round(parse_seconds, 3),
         pages_per_s=round(len(pages) / parse_seconds, 1))  # fmt: skip

    with tqdm(total=3, desc="ingest", file=sys.stderr) as bar:
        # The same pipeline the Celery task runs, here in-process so no queue wait is timed.
        upload = services.add_document(bot, SimpleUploadedFile("bench.pdf", pdf), enqueue=False)
        bar.update(1)
        version_id = upload.document.current_version_id
        started = time.perf_counter()
        services.ingest_version(version_id)
        end_to_end = time.perf_counter() - started
        bar.update(1)
        texts = list(Chunk.objects.filter(version_id=version_id).order_by("ordinal").values_list("text", flat=True))
        started = time.perf_counter()
        model.encode(texts)
        bare = time.perf_counter() - started
        bar.update(1)

    upload.document.refresh_from_db()
    assert upload.document.status == "ready", upload.document.error
    emit(metric="ingest_end_to_end", chunks=len(texts), seconds=round(end_to_end, 3),
         chunks_per_s=round(len(texts) / end_to_end, 1))  # fmt: skip
    emit(metric="bare_encode", chunks=len(texts), seconds=round(bare, 3), chunks_per_s=round(len(texts) / bare, 1))
    emit(metric="end_to_end_over_bare", ratio=round(bare / end_to_end, 3))
    bot.delete()


if __name__ == "__main__":
    main()
