"""`manage.py evaluate`: a run in this process with the metrics as a table or JSON."""

import json

import pytest
from django.core.management import CommandError, call_command

from evaluation import services
from tests.evaluation.test_runs import CASES, HANDBOOK

pytestmark = pytest.mark.django_db


def test_evaluate_prints_the_metrics_of_a_named_test_set_as_json(bot, index_texts, capsys):
    index_texts(bot, HANDBOOK)
    services.create_test_set(bot, "Basics", CASES[::3])
    call_command("evaluate", bot.slug, "Basics", "--json")
    printed = json.loads(capsys.readouterr().out)
    assert printed["config_version"] == 1
    assert printed["metrics"]["hit@1"] == 1 and printed["metrics"]["refusal_accuracy"] == 1


def test_evaluate_imports_a_file_and_prints_a_table(bot, index_texts, tmp_path, capsys):
    index_texts(bot, HANDBOOK)
    path = tmp_path / "smoke.csv"
    path.write_text("question,expected_documents\nWhen does the canteen open?,canteen.txt\n")
    call_command("evaluate", bot.slug, str(path))
    out = capsys.readouterr().out
    assert "smoke on " in out and "mrr@10               1.0000" in out and "refusal_accuracy     –" in out


def test_evaluate_names_what_is_missing(bot):
    with pytest.raises(CommandError, match="no test set named 'Nope'"):
        call_command("evaluate", bot.slug, "Nope")
    with pytest.raises(CommandError, match="No bot with the slug"):
        call_command("evaluate", "no-such-bot", "Nope")
