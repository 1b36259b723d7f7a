"""Run a test set against a bot from the command line, here in this process, and print its metrics."""

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from bots.models import Bot
from evaluation import metrics, services


class Command(BaseCommand):
    help = "Evaluate a bot on one of its test sets (by name) or on a CSV, JSONL or BEIR zip file it imports first."

    def add_arguments(self, parser):
        parser.add_argument("bot_slug")
        parser.add_argument("test_set", help="The name of one of the bot's test sets, or a file to import.")
        parser.add_argument("--json", action="store_true", help="Print the metrics as one JSON object.")

    def handle(self, *args, bot_slug: str, test_set: str, json: bool, **options):
        bot = Bot.objects.filter(slug=bot_slug).first()
        if bot is None:
            raise CommandError(f"No bot with the slug {bot_slug!r}.")
        try:
            chosen = self.test_set(bot, test_set)
            run = services.start_run(chosen)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if services.waiting_for_index(run.id):
            self.stderr.write("Waiting for the bot's documents to finish indexing (a worker must be running)…")
            while services.waiting_for_index(run.id):
                time.sleep(2)
        with tqdm(total=chosen.cases.count(), unit="case", desc=f"Evaluating {bot.slug}") as bar:
            services.execute_run(run.id, on_case=lambda run: bar.update(run.cases_done - bar.n))
        run.refresh_from_db()
        if run.status != run.Status.DONE:
            raise CommandError(f"The run failed: {run.error}")
        if json:
            self.stdout.write(_json({"run": run.id, "config_version": run.config_version, "metrics": run.metrics}))
            return
        self.stdout.write(f"Run {run.id}: {chosen.name} on {bot.slug} v{run.config_version}")
        for name in [*metrics.RETRIEVAL_MEASURES, *metrics.ANSWER_METRICS]:
            value = run.metrics.get(name)
            self.stdout.write(f"  {name:<20} {'–' if value is None else f'{value:.4f}'}")

    def test_set(self, bot, name: str):
        found = services.test_sets_of_bots([bot]).filter(name=name).first()
        if found is not None:
            return found
        path = Path(name)
        if not path.is_file():
            raise CommandError(f"{bot.slug} has no test set named {name!r}, and no file is at that path.")
        return services.import_test_set(bot, path.name, path.read_bytes())


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)
