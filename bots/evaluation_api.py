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
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


@router.get("/runs/{run_id}/cases", response=list[schemas.CaseResultOut])
def list_run_cases(request, run_id: int):
    return evaluation.case_results(_run(request.user, run_id))
