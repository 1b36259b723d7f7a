"""MLflow tracking of finished runs, against a local sqlite:/// store, and failures that leave the run done."""

import json

import pytest

from evaluation import services, tracking
from tests.evaluation.test_runs import CASES, HANDBOOK


def test_metric_names_lose_the_at_sign_mlflow_refuses():
    assert [tracking.metric_name(name) for name in ["hit@1", "mrr@10", "citation_precision", "a+b"]] == [
        "hit_at_1",
        "mrr_at_10",
        "citation_precision",
        "a_b",
    ]


@pytest.mark.django_db
def test_a_finished_run_is_logged_with_the_bots_config_its_metrics_and_the_case_table(
    bot, index_texts, settings, tmp_path
):
    from mlflow.tracking import MlflowClient

    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path}/mlflow.db"
    index_texts(bot, HANDBOOK)
    run = services.start_run(services.create_test_set(bot, "Tracked", [CASES[1], CASES[3]]))
    services.execute_run(run.id)
    run.refresh_from_db()

    assert run.status == "done" and not run.error and run.mlflow_run_id
    client = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI)
    logged = client.get_run(run.mlflow_run_id)
    experiment = client.get_experiment(logged.info.experiment_id)
    assert experiment.name == f"docent/{bot.slug}"
    assert (logged.info.run_name, logged.info.status) == (f"{bot.slug}-v1", "FINISHED")
    snapshot = services.config_snapshot(bot, 1)
    assert snapshot and logged.data.params["top_k"] == str(snapshot["top_k"]) == "5"
    assert set(logged.data.params) == set(snapshot)
    assert logged.data.metrics["hit_at_1"] == run.metrics["hit@1"] == 1
    assert logged.data.metrics["refusal_accuracy"] == 1 and "citation_precision" in logged.data.metrics
    assert logged.data.tags["docent.run_id"] == str(run.id)
    # Artifacts sit beside the sqlite store, not in the worker's working directory.
    assert experiment.artifact_location.startswith((tmp_path / "mlflow-artifacts").as_uri())
    cases = json.loads(
        (tmp_path / client.download_artifacts(run.mlflow_run_id, "cases.json", str(tmp_path))).read_text()
    )
    assert [case["question"] for case in cases] == [CASES[1]["question"], CASES[3]["question"]]
    assert cases[0]["first_relevant_rank"] == 1

    assert tracking.log_run(run) == run.mlflow_run_id  # logged once only
    assert len(client.search_runs([experiment.experiment_id])) == 1


@pytest.mark.django_db
def test_a_tracking_failure_is_noted_and_the_run_stays_done(bot, index_texts, settings, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path}/not-a-folder/mlflow.db"
    index_texts(bot, HANDBOOK)
    run = services.start_run(services.create_test_set(bot, "Tracked", [CASES[3]]))
    services.execute_run(run.id)
    run.refresh_from_db()

    assert run.status == "done" and run.metrics["refusal_accuracy"] == 1
    assert run.error.startswith("Not logged to MLflow:") and not run.mlflow_run_id


@pytest.mark.django_db
def test_without_a_tracking_uri_nothing_is_logged(bot, index_texts, settings):
    settings.MLFLOW_TRACKING_URI = ""
    index_texts(bot, HANDBOOK)
    run = services.start_run(services.create_test_set(bot, "Untracked", [CASES[3]]))
    services.execute_run(run.id)
    run.refresh_from_db()
    assert run.status == "done" and run.mlflow_run_id == "" and run.error == ""
