"""Experiment tracking: each finished evaluation run also logged to MLflow, when MLFLOW_TRACKING_URI is set.

One MLflow experiment per bot ("docent/<bot slug>"), one MLflow run per evaluation run,
named "<bot slug>-v<config version>": params are the bot's settings at that config
version, metrics the run's numeric metrics, and the per-case table is the artifact
cases.json. MLflow metric names may not contain "@", so hit@1 is logged as hit_at_1
(every character MLflow refuses becomes "_"). A tracking failure is logged and noted on
the run (EvaluationRun.error, the run stays done); it never fails the evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

CASES_ARTIFACT = "cases.json"
# MLflow's limit on a param value; longer values (a long prompt template) are cut.
MAX_PARAM_CHARS = 6000
_UNSAFE = re.compile(r"[^\w\-. /]")


def metric_name(name: str) -> str:
    """A Docent metric name as MLflow accepts it: hit@1 → hit_at_1."""
    return _UNSAFE.sub("_", name.replace("@", "_at_"))


def experiment_name(bot) -> str:
    return f"docent/{bot.slug}"


def mlflow_run_name(run) -> str:
    return f"{run.bot.slug}-v{run.config_version}"


def log_run(run) -> str:
    """Log the finished `run` to MLflow if tracking is configured; returns the MLflow run id ("" if not logged).

    Stores the id in run.mlflow_run_id. A run already logged is not logged twice.
    """
    uri = settings.MLFLOW_TRACKING_URI
    if not uri or run.status != run.Status.DONE or run.mlflow_run_id:
        return run.mlflow_run_id or ""
    try:
        mlflow_run_id = _log(run, uri)
    except Exception as exc:  # MLflow down or misconfigured: the evaluation itself stands
        logger.exception("Evaluation run %s could not be logged to MLflow", run.pk)
        run.error = f"Not logged to MLflow: {exc}"[:2000]
        run.save(update_fields=["error"])
        return ""
    run.mlflow_run_id = mlflow_run_id
    run.save(update_fields=["mlflow_run_id"])
    return mlflow_run_id


def _log(run, uri: str) -> str:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from evaluation import services

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, experiment_name(run.bot), uri)
    tags = {
        "docent.run_id": str(run.pk),
        "docent.bot": run.bot.slug,
        "docent.test_set": run.test_set.name,
        "docent.config_version": str(run.config_version),
    }
    if run.judge:
        tags["docent.judge"] = f"{run.judge.get('provider')}/{run.judge.get('model')}"
    created = client.create_run(experiment_id, run_name=mlflow_run_name(run), tags=tags)
    run_id = created.info.run_id
    try:
        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_name(name), float(value), now, 0)
            for name, value in run.metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ]
        params = [
            Param(metric_name(key), _param_value(value))
            for key, value in services.config_snapshot(run.bot, run.config_version).items()
        ]
        client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag("docent.cases", str(run.cases_total))])
        client.log_text(run_id, json.dumps(services.case_results(run), indent=1, default=str), CASES_ARTIFACT)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_CHARS]


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
    except MlflowException:
        # Another worker created it meanwhile.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _artifact_location(uri: str, name: str) -> str | None:
    """Beside a local sqlite store: <its folder>/mlflow-artifacts/<experiment>; elsewhere the server decides.

    Without this MLflow puts a local store's artifacts under the worker's working directory.
    """
    parts = urlsplit(uri)
    if parts.scheme != "sqlite" or not parts.path or parts.path in {"/", "/:memory:"}:
        return None
    database = Path(unquote(parts.path[1:]))  # sqlite:///relative.db and sqlite:////absolute.db
    return (database.resolve().parent / "mlflow-artifacts" / name.replace("/", "-")).as_uri()
