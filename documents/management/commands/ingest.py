"""Ingest files or folders into a bot from the command line, through the same pipeline as uploads."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from bots.models import Bot
from documents import services


@dataclass(frozen=True)
class Row:
    """One line of the summary: a document, a file that was refused, or an archive that was unpacked."""

    name: str
    status: str
    chunks: str = "-"
    reason: str = ""


class Command(BaseCommand):
    help = "Ingest files and folders (recursively) into a bot, with a progress bar and a summary."

    def add_arguments(self, parser):
        parser.add_argument("bot_slug")
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument(
            "--queue", action="store_true", help="Hand the files to the Celery workers instead of ingesting here."
        )

    def handle(self, *args, bot_slug: str, paths: list[Path], queue: bool, **options):
        bot = Bot.objects.filter(slug=bot_slug).first()
        if bot is None:
            raise CommandError(f"No bot with the slug {bot_slug!r}.")
        files = sorted(self.expand(paths))
        if not files:
            raise CommandError("No files found at the given paths.")
        rows: list[Row] = []
        with tqdm(files, unit="file", desc=f"Ingesting into {bot.slug}") as bar:
            for path in bar:
                bar.set_postfix_str(path.name[:40])
                rows.extend(self.ingest_one(bot, path, queue))
        self.summarize(rows)

    def expand(self, paths: list[Path]):
        for path in paths:
            if path.is_dir():
                yield from (child for child in path.rglob("*") if child.is_file() and not child.name.startswith("."))
            elif path.is_file():
                yield path
            else:
                raise CommandError(f"{path} does not exist.")

    def ingest_one(self, bot: Bot, path: Path, queue: bool) -> list[Row]:
        """The file as an upload takes it: a ZIP archive gives a row for itself and one per file in it."""
        try:
            with open(path, "rb") as handle:
                upload = UploadedFile(handle, name=path.name, size=path.stat().st_size)
                results = services.add_documents(bot, [upload], enqueue=queue)
        except services.NothingStored as exc:
            return [Row(refusal.filename, "refused", reason=refusal.reason) for refusal in exc.refused]
        except services.UploadRefused as exc:
            return [Row(path.name, "refused", reason=str(exc))]
        rows = []
        for result in results:
            if isinstance(result, services.Refused):
                rows.append(Row(result.filename, "refused", reason=result.reason))
            elif isinstance(result, services.Unpacked):
                rows.append(Row(result.archive, "unpacked", reason=result.message))
            else:
                document = result.document
                if not result.unchanged and not queue:
                    services.ingest_version(document.current_version_id)
                document.refresh_from_db()
                reason = document.error or ("unchanged" if result.unchanged else "")
                rows.append(Row(document.filename, document.status, str(document.chunk_count), reason))
        return rows

    def summarize(self, rows: list[Row]) -> None:
        width = max(len(row.name) for row in rows)
        self.stdout.write("")
        self.stdout.write(f"{'file'.ljust(width)}  {'status':9}  {'chunks':>6}  reason")
        for row in rows:
            self.stdout.write(f"{row.name.ljust(width)}  {row.status:9}  {row.chunks:>6}  {row.reason}")
        counts = Counter(row.status for row in rows)
        self.stdout.write("")
        self.stdout.write(", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
