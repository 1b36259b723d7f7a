"""Ingest files or folders into a bot from the command line, through the same pipeline as uploads."""

from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from bots.models import Bot
from documents import services
from documents.models import Document


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
        results: list[tuple[str, Document | None, str]] = []
        with tqdm(files, unit="file", desc=f"Ingesting into {bot.slug}") as bar:
            for path in bar:
                bar.set_postfix_str(path.name[:40])
                results.append(self.ingest_one(bot, path, queue))
        self.summarize(results)

    def expand(self, paths: list[Path]):
        for path in paths:
            if path.is_dir():
                yield from (child for child in path.rglob("*") if child.is_file() and not child.name.startswith("."))
            elif path.is_file():
                yield path
            else:
                raise CommandError(f"{path} does not exist.")

    def ingest_one(self, bot: Bot, path: Path, queue: bool) -> tuple[str, Document | None, str]:
        try:
            with open(path, "rb") as handle:
                upload = services.add_document(bot, File(handle, name=path.name), enqueue=queue)
        except services.UploadRefused as exc:
            return path.name, None, str(exc)
        if upload.unchanged:
            return path.name, upload.document, "unchanged"
        if not queue:
            services.ingest_version(upload.document.current_version_id)
        upload.document.refresh_from_db()
        return path.name, upload.document, ""

    def summarize(self, results) -> None:
        width = max(len(name) for name, _, _ in results)
        self.stdout.write("")
        self.stdout.write(f"{'file'.ljust(width)}  {'status':9}  {'chunks':>6}  reason")
        counts: dict[str, int] = {}
        for name, document, note in results:
            status = document.status if document else "refused"
            counts[status] = counts.get(status, 0) + 1
            chunks = str(document.chunk_count) if document else "-"
            reason = (document.error if document else "") or note
            self.stdout.write(f"{name.ljust(width)}  {status:9}  {chunks:>6}  {reason}")
        self.stdout.write("")
        self.stdout.write(", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
