"""Ingestion throughput through a real Celery worker, against the bare encoder on the same texts.

Three figures, each ratio measured within this one run:

- ingest_pdf: a 20-page text PDF (pages 17–36 of "Free Culture", ~2,200 characters
  each), `--pdf-copies` times under different names; chunks/s from enqueue until every
  copy is ready (parse → chunk → embed → write to pgvector → activate), against
  retrieval.services.embed_texts on the same chunk texts.
- ingest_small_docs: `--documents` NFCorpus abstracts (one short text file each, the
  "thousands of small files" case), stored with documents.services.add_documents;
  documents/s from enqueue until all are ready, against embed_texts on their chunk texts.
- reindex_small_docs: then the bot's passage size is halved, which re-indexes every
  document in the background; documents/s until the bot switches to the new passages,
  against embed_texts on those passages.

Ingestion runs in a separate `celery worker` process on the embedded broker (one pool
process, as `make run` starts it), warmed up first so loading the model is not timed.

    make bench
    DOCENT_DATA_DIR=.data/bench .venv/bin/python bench/ingest.py [--documents 300] [--only small_docs]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The shared corpus is not in the repository: $DOCENT_SHARED_DATA, or shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("DOCENT_SHARED_DATA") or ROOT.parent / "shared" / "data")
# Lessig's "Free Culture" (pdf.js test corpus): pages 17–36 are dense running text, ~2,200 characters each.
DEFAULT_PDF = SHARED_DATA / "docs" / "pdf" / "pdfjs__test__pdfs__freeculture.pdf"
NFCORPUS = SHARED_DATA / "beir" / "nfcorpus" / "corpus.jsonl"


def emit(**figures) -> None:
    print(json.dumps(figures), flush=True)


def page_range(path: Path, first: int, pages: int) -> bytes:
    from pypdf import PdfReader, PdfWriter

    reader, writer = PdfReader(path), PdfWriter()
    for page in reader.pages[first - 1 : first - 1 + pages]:
        writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def nfcorpus_files(limit: int) -> list[tuple[str, bytes]]:
    files = []
    with open(NFCORPUS, encoding="utf-8") as corpus:
        for line in corpus:
            entry = json.loads(line)
            text = f"{entry['title']}\n\n{entry['text']}".strip()
            if entry["text"].strip():
                files.append((f"{entry['_id']}.txt", text.encode()))
            if len(files) == limit:
                break
    return files


class Worker:
    """A `celery worker` process on this data directory's database and broker, as `make run` starts it."""

    def __init__(self) -> None:
        from django.conf import settings
        from django.db import connection

        db = connection.settings_dict
        host = quote(db.get("HOST") or "", safe="") if (db.get("HOST") or "").startswith("/") else db.get("HOST")
        port = f":{db['PORT']}" if db.get("PORT") else ""
        password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgresql://{db['USER']}{password}@{host}{port}/{db['NAME']}",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        }
        self.log = tempfile.NamedTemporaryFile(prefix="docent-bench-worker-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "ingest,default",
            "--concurrency", "1", "--without-gossip", "--without-mingle", "--purge",
            "--hostname", f"bench-{os.getpid()}@%h", "--loglevel", "INFO",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        # Messages sent before it is ready would be purged.
        deadline = time.monotonic() + 120
        while " ready." not in Path(self.log.name).read_text(errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit("The Celery worker did not start within 2 minutes.")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        Path(self.log.name).unlink(missing_ok=True)

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise SystemExit(f"The Celery worker died:\n{Path(self.log.name).read_text(errors='replace')[-3000:]}")


def ingest_through_worker(worker: Worker, bot, version_ids: list[int], desc: str) -> float:
    """Enqueue every version the way an upload does and wait until all are final; seconds taken."""
    from tqdm import tqdm

    from documents import services
    from documents.models import Document

    documents = Document.objects.filter(bot=bot)
    with tqdm(total=len(version_ids), desc=desc, unit="doc", file=sys.stderr) as bar:
        started = time.perf_counter()
        for version_id in version_ids:
            services.enqueue_ingest(version_id)
        while True:
            final = documents.filter(status__in=Document.FINAL_STATUSES).count()
            if final > bar.n:
                bar.update(final - bar.n)
            if final >= len(version_ids):
                break
            worker.check_alive()
            time.sleep(0.1)
        seconds = time.perf_counter() - started
    failed = list(documents.filter(status=Document.Status.FAILED).values_list("filename", "error")[:5])
    if failed:
        raise SystemExit(f"Some documents failed: {failed}")
    return seconds


def bare_encode_seconds(bot) -> tuple[int, float]:
    """(chunks, seconds) of retrieval.services.embed_texts on the bot's chunk texts."""
    from documents.models import Chunk
    from retrieval.services import embed_texts

    texts = list(
        Chunk.objects.filter(bot=bot, is_active=True).order_by("document_id", "ordinal").values_list("text", flat=True)
    )
    started = time.perf_counter()
    embed_texts(texts)
    return len(texts), time.perf_counter() - started


def bench_pdf(worker: Worker, user, args) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from bots.services import create_bot
    from documents import services

    if not args.pdf.is_file():
        emit(bench="ingest_pdf", skipped=f"{args.pdf.name} is not here (set DOCENT_SHARED_DATA to the shared corpus)")
        return
    pdf = page_range(args.pdf, args.first_page, args.pages)
    bot = create_bot(user, f"bench-pdf-{time.time_ns()}")
    files = [SimpleUploadedFile(f"freeculture-{n}.pdf", pdf) for n in range(args.pdf_copies)]
    uploads = services.add_documents(bot, files, enqueue=False)
    seconds = ingest_through_worker(worker, bot, [u.document.current_version_id for u in uploads], "ingest_pdf")
    chunks, bare = bare_encode_seconds(bot)
    emit(bench="ingest_pdf", pdf=args.pdf.name, pages=args.pages * args.pdf_copies, chunks=chunks,
         seconds=round(seconds, 2), chunks_per_s=round(chunks / seconds, 1),
         bare_encoder_chunks_per_s=round(chunks / bare, 1), ratio=round(bare / seconds, 3))  # fmt: skip
    bot.delete()


def bench_small_docs(worker: Worker, user, args) -> None:
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile

    from bots.services import create_bot
    from documents import services

    if not NFCORPUS.is_file():
        emit(bench="ingest_small_docs", skipped=f"{NFCORPUS} is not here (set DOCENT_SHARED_DATA to the shared corpus)")
        return
    files = nfcorpus_files(args.documents)
    bot = create_bot(user, f"bench-small-{time.time_ns()}")
    version_ids = []
    per_upload = settings.DOCENT_MAX_FILES_PER_UPLOAD
    for start in range(0, len(files), per_upload):
        uploads = [SimpleUploadedFile(name, content) for name, content in files[start : start + per_upload]]
        version_ids += [u.document.current_version_id for u in services.add_documents(bot, uploads, enqueue=False)]
    seconds = ingest_through_worker(worker, bot, version_ids, "ingest_small_docs")
    chunks, bare = bare_encode_seconds(bot)
    documents = len(version_ids)
    emit(bench="ingest_small_docs", documents=documents, chunks=chunks, seconds=round(seconds, 2),
         documents_per_s=round(documents / seconds, 2), bare_encoder_documents_per_s=round(documents / bare, 2),
         ratio=round(bare / seconds, 3))  # fmt: skip
    reindex_small_docs(worker, user, bot, documents)
    bot.delete()


def reindex_small_docs(worker: Worker, user, bot, documents: int) -> None:
    """A chunking change re-indexes every document in the background: documents/s until the bot switches.

    The progress bar counts passages embedded for the new settings; the documents switch together at the end.
    """
    from tqdm import tqdm

    from bots.services import update_bot
    from documents import services
    from documents.models import Chunk

    with tqdm(desc="reindex_small_docs", unit="passage", file=sys.stderr) as bar:
        started = time.perf_counter()
        bot = update_bot(bot, user, {"chunk_size_tokens": bot.chunk_size_tokens // 2})  # queues the re-index
        embedded = Chunk.objects.filter(bot=bot, index_version=bot.index_version, embedding__isnull=False)
        while services.reindex_progress(bot)[0] < documents:
            bar.update(embedded.count() - bar.n)
            worker.check_alive()
            time.sleep(0.2)
        seconds = time.perf_counter() - started
    chunks, bare = bare_encode_seconds(bot)
    emit(bench="reindex_small_docs", documents=documents, chunks=chunks, seconds=round(seconds, 2),
         documents_per_s=round(documents / seconds, 2), bare_encoder_documents_per_s=round(documents / bare, 2),
         ratio=round(bare / seconds, 3))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--first-page", type=int, default=17)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--pdf-copies", type=int, default=3, help="copies of the PDF ingested (as separate files)")
    parser.add_argument("--documents", type=int, default=2000, help="NFCorpus abstracts ingested as small files")
    parser.add_argument("--only", choices=["pdf", "small_docs"], help="run one of the two figures")
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from bots.services import create_bot
    from documents import services
    from retrieval.services import embed_texts

    call_command("migrate", verbosity=0)
    embed_texts(["warm up"])  # the bare encoder's model load is not throughput
    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    worker = Worker()
    worker.start()
    try:
        # The worker loads its model on its first document: not timed.
        warm = create_bot(user, f"bench-warm-{time.time_ns()}")
        (upload,) = services.add_documents(warm, [SimpleUploadedFile("warm.txt", b"Warming up the encoder.")], False)
        ingest_through_worker(worker, warm, [upload.document.current_version_id], "worker warm-up")
        warm.delete()
        if args.only in (None, "pdf"):
            bench_pdf(worker, user, args)
        if args.only in (None, "small_docs"):
            bench_small_docs(worker, user, args)
    finally:
        worker.stop()


if __name__ == "__main__":
    main()
