"""Celery tasks for evaluation: thin, given ids only."""

from celery import Task, shared_task

from evaluation import services

INDEX_POLL_SECONDS = 5


class EvaluationTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # A crash outside execute_run's own handling must not leave the run "running".
        services.fail_run(args[0], "The evaluation stopped unexpectedly; it has been logged.")


@shared_task(base=EvaluationTask, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def run_evaluation(self, run_id: int) -> None:
    if services.waiting_for_index(run_id):
        # Asked again later rather than holding a worker; waiting_for_index gives up after an hour.
        raise self.retry(countdown=INDEX_POLL_SECONDS)
    services.execute_run(run_id)


class FineTuneTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # A crash outside run_fine_tune's own handling must not leave the fine-tune "running".
        services.fail_fine_tune(args[0], "The fine-tune stopped unexpectedly; it has been logged.")


@shared_task(base=FineTuneTask, acks_late=True, reject_on_worker_lost=True)
def fine_tune(fine_tune_id: int) -> None:
    services.run_fine_tune(fine_tune_id)
