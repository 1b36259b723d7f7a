"""The evaluation API (/api/v1/): test sets, runs and comparisons of a bot.

Only a bot's editors reach any of it; everyone else gets 404. Every endpoint calls
evaluation.services, looking objects up through the bots the caller may edit.
"""

from django.http import Http404
from ninja import File, Router, Status, UploadedFile
from ninja.errors import HttpError

from bots import evaluation_schemas as schemas
from bots import services
from bots.models import Bot
from bots.schemas import ErrorOut
from documents import services as documents
from evaluation import services as evaluation

router = Router(tags=["evaluation"])


def _test_set(user, test_set_id: int):
    test_set = evaluation.test_sets_of_bots(Bot.objects.editable_by(user)).filter(pk=test_set_id).first()
    if test_set is None:
        raise Http404("No such test set.")
    return test_set


def _run(user, run_id: int):
    run = evaluation.runs_of_bots(Bot.objects.editable_by(user)).select_related("bot").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


def _test_set_out(test_set) -> dict:
    return {
        "id": test_set.id,
        "name": test_set.name,
        "case_count": test_set.cases.count(),
        "is_default": test_set.is_default,
        "created_at": test_set.created_at,
    }


@router.post("/bots/{bot_id}/test-sets", response={201: schemas.TestSetOut})
def create_test_set(request, bot_id: int, payload: schemas.TestSetIn):
    bot = services.get_editable_bot(request.user, pk=bot_id)
    test_set = evaluation.create_test_set(
        bot,
        payload.name,
        [case.dict() for case in payload.cases],
        created_by=request.user,
        is_default=payload.is_default,
    )
    return Status(201, _test_set_out(test_set))


@router.get("/bots/{bot_id}/test-sets", response=list[schemas.TestSetOut])
def list_test_sets(request, bot_id: int):
    bot = services.get_editable_bot(request.user, pk=bot_id)
    return [_test_set_out(test_set) for test_set in evaluation.test_sets_of_bots([bot])]


@router.post("/bots/{bot_id}/test-sets/import", response={201: schemas.TestSetOut})
def import_test_set(request, bot_id: int, file: File[UploadedFile], name: str = ""):
    """Import a test set from a CSV, JSONL or BEIR zip file (field `file`); a BEIR corpus becomes documents."""
    bot = services.get_editable_bot(request.user, pk=bot_id)
    if file.size > documents.max_upload_bytes():
        raise HttpError(413, "The file is larger than the upload limit.")
    test_set = evaluation.import_test_set(bot, file.name, file.read(), name=name, created_by=request.user)
    return Status(201, _test_set_out(test_set))


@router.post("/test-sets/{test_set_id}/runs", response={202: schemas.RunStarted})
def start_run(request, test_set_id: int):
    run = evaluation.start_run(_test_set(request.user, test_set_id), started_by=request.user)
    return Status(202, {"id": run.id, "status": run.status})


@router.get("/runs/compare", response=schemas.ComparisonOut)
def compare_runs(request, a: int, b: int):
    return evaluation.compare_runs(_run(request.user, a), _run(request.user, b))


@router.get("/runs/{run_id}", response=schemas.RunOut)
def get_run(request, run_id: int):
    run = _run(request.user, run_id)
    return {
        "id": run.id,
        "test_set": run.test_set_id,
        "status": run.status,
        "progress": run.progress,
        "config_version": run.config_version,
        "metrics": run.metrics,
        "error": run.error,
        "judge": run.judge,
        "mlflow_run_id": run.mlflow_run_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


@router.get("/runs/{run_id}/cases", response=list[schemas.CaseResultOut])
def list_run_cases(request, run_id: int):
    return evaluation.case_results(_run(request.user, run_id))


def _fine_tune(user, fine_tune_id: int):
    fine_tunes = evaluation.fine_tunes_of_bots(Bot.objects.editable_by(user))
    fine_tune = fine_tunes.select_related("bot", "base_model", "embedding_model").filter(pk=fine_tune_id).first()
    if fine_tune is None:
        raise Http404("No such fine-tune.")
    return fine_tune


def _fine_tune_out(fine_tune) -> dict:
    return {
        "id": fine_tune.id,
        "bot": fine_tune.bot_id,
        "test_set": fine_tune.test_set_id,
        "pairs_source": fine_tune.pairs_source,
        "status": fine_tune.status,
        "progress": fine_tune.progress,
        "epochs": fine_tune.epochs,
        "steps_done": fine_tune.steps_done,
        "steps_total": fine_tune.steps_total,
        "pair_count": fine_tune.pair_count,
        "held_out_count": fine_tune.held_out_count,
        "base_model": fine_tune.base_model.name if fine_tune.base_model_id else None,
        "baseline": fine_tune.baseline,
        "candidate": fine_tune.candidate,
        "promotable": fine_tune.promotable and fine_tune.promoted_at is None,
        "promoted": fine_tune.promoted_at is not None,
        "embedding_model": fine_tune.embedding_model.name if fine_tune.embedding_model_id else None,
        "error": fine_tune.error,
        "created_at": fine_tune.created_at,
        "started_at": fine_tune.started_at,
        "finished_at": fine_tune.finished_at,
        "promoted_at": fine_tune.promoted_at,
    }


@router.post("/bots/{bot_id}/fine-tunes", response={202: schemas.FineTuneStarted, 409: ErrorOut})
def start_fine_tune(request, bot_id: int, payload: schemas.FineTuneIn):
    """Fine-tune the bot's embedding model in the worker; learns from `test_set`'s cases, or the documents."""
    bot = services.get_editable_bot(request.user, pk=bot_id)
    test_set = None
    if payload.test_set is not None:
        test_set = evaluation.test_sets_of_bots([bot]).filter(pk=payload.test_set).first()
        if test_set is None:
            raise HttpError(400, "This bot has no such test set.")
    try:
        fine_tune = evaluation.start_fine_tune(bot, test_set=test_set, epochs=payload.epochs, started_by=request.user)
    except evaluation.FineTuneConflict as exc:
        raise HttpError(409, str(exc)) from exc
    return Status(202, {"id": fine_tune.id, "status": fine_tune.status})


@router.get("/bots/{bot_id}/fine-tunes", response=list[schemas.FineTuneOut])
def list_fine_tunes(request, bot_id: int):
    bot = services.get_editable_bot(request.user, pk=bot_id)
    fine_tunes = evaluation.fine_tunes_of_bots([bot]).select_related("bot", "base_model", "embedding_model")
    return [_fine_tune_out(fine_tune) for fine_tune in fine_tunes]


@router.get("/fine-tunes/{fine_tune_id}", response=schemas.FineTuneOut)
def get_fine_tune(request, fine_tune_id: int):
    return _fine_tune_out(_fine_tune(request.user, fine_tune_id))


@router.post("/fine-tunes/{fine_tune_id}/promote", response={200: schemas.PromotedOut, 409: ErrorOut})
def promote_fine_tune(request, fine_tune_id: int):
    """Make the fine-tuned model the bot's embedding model; the bot is re-embedded in the background.

    The old index answers until the new one is complete. 409 unless the fine-tune is done,
    beat the current model on its held-out cases, and was not promoted yet.
    """
    fine_tune = _fine_tune(request.user, fine_tune_id)
    switched = []

    def switch_bot(model) -> None:
        switched.append(services.update_bot(fine_tune.bot, request.user, {"embedding_model": model}))

    try:
        model = evaluation.promote_fine_tune(fine_tune, switch_bot=switch_bot)
    except evaluation.FineTuneConflict as exc:
        raise HttpError(409, str(exc)) from exc
    bot = switched[0]
    return {
        "fine_tune": fine_tune.id,
        "embedding_model": model.name,
        "dimensions": model.dimensions,
        "config_version": bot.config_version,
        "index_version": bot.index_version,
    }


@router.delete("/fine-tunes/{fine_tune_id}", response={204: None, 409: ErrorOut})
def delete_fine_tune(request, fine_tune_id: int):
    """Remove the fine-tune and its model files; 409 while it trains or while a bot embeds with its model."""
    try:
        evaluation.delete_fine_tune(_fine_tune(request.user, fine_tune_id))
    except evaluation.FineTuneConflict as exc:
        raise HttpError(409, str(exc)) from exc
    return Status(204, None)
