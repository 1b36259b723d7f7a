"""Fine-tunes of a bot's embedding model: start, train in the worker, promote, remove.

Re-exported by evaluation.services (the one door the application layer uses). The ML
work is in evaluation.finetuning; this module reads the bot's passages and cases, keeps
the FineTune row's state, and registers a promoted model through retrieval.services.
It never touches bots: switching a bot to the promoted model is the application
layer's model-switch path, passed in to promote_fine_tune as `switch_bot`.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from evaluation import finetuning
from evaluation.models import FineTune, TestSet
from retrieval import services as retrieval
from retrieval.models import EmbeddingModel

logger = logging.getLogger(__name__)

MAX_EPOCHS = 10
# Passages both models embed for the held-out evaluation (and inverse cloze reads).
MAX_PASSAGES = 20_000
# A fine-tune whose worker died this many times while training is failed instead of started again.
MAX_ATTEMPTS = 2
# Progress: preparing pairs up to TRAIN_START, training up to TRAIN_END, then the evaluation.
TRAIN_START, TRAIN_END = 0.05, 0.8


class FineTuneConflict(ValueError):
    """The fine-tune is not in a state that allows this (the API answers 409)."""


def fine_tunes_of_bots(bots):
    return FineTune.objects.filter(bot__in=bots)


def start_fine_tune(bot, *, test_set: TestSet | None = None, epochs: int = 1, started_by=None) -> FineTune:
    """Queue a fine-tune of `bot`'s current embedding model (on the `default` queue).

    With `test_set` (one of the bot's), pairs come from its training cases and the rest
    are held out; without, from inverse cloze over the bot's passages. One fine-tune per
    bot trains at a time (FineTuneConflict otherwise).
    """
    from evaluation.tasks import fine_tune

    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(f"Epochs must be a whole number from 1 to {MAX_EPOCHS}.")
    if test_set is not None:
        if test_set.bot_id != bot.pk:
            raise ValueError("The test set belongs to another bot.")
        if test_set.cases.filter(answerable=True).count() < 2:
            raise ValueError(
                "Fine-tuning from a test set needs at least two answerable cases: one to learn, one to test."
            )
    with transaction.atomic():
        if fine_tunes_of_bots([bot]).exclude(status__in=FineTune.FINAL_STATUSES).select_for_update().exists():
            raise FineTuneConflict("This bot already has a fine-tune in progress; wait until it ends.")
        fine_tune_row = FineTune.objects.create(
            bot=bot,
            test_set=test_set,
            pairs_source=FineTune.Pairs.TEST_SET if test_set is not None else FineTune.Pairs.INVERSE_CLOZE,
            base_model=retrieval.embedding_model_for(bot),
            epochs=epochs,
            created_by=started_by,
        )
        transaction.on_commit(lambda: fine_tune.apply_async((fine_tune_row.id,), queue="default"))
    return fine_tune_row


def run_fine_tune(fine_tune_id: int, on_progress: Callable[[FineTune], None] | None = None) -> FineTune | None:
    """Train, evaluate both models on the held-out cases, and store the metrics (what the worker runs).

    Synchronous, so benchmarks can call it without Celery. A fine-tune already final is
    left alone; any error ends it failed with the reason and removes its half-written
    folder. `on_progress` is called with the row after each saved step of progress.
    """
    row = FineTune.objects.select_related("bot", "test_set", "base_model").filter(pk=fine_tune_id).first()
    if row is None or row.is_final:
        return row
    if row.status == FineTune.Status.RUNNING and row.attempts >= MAX_ATTEMPTS:
        row.fail("The worker stopped while training, twice; try fewer epochs or a smaller test set.")
        return row
    row.start()

    def report(progress: float, steps_done: int | None = None) -> None:
        row.advance(progress, steps_done)
        if on_progress is not None:
            on_progress(row)

    try:
        _train_and_evaluate(row, report)
    except Exception as exc:
        logger.exception("Fine-tune %s failed", fine_tune_id)
        row.refresh_from_db()
        if row.folder is not None:
            shutil.rmtree(row.folder, ignore_errors=True)
        if not row.is_final:
            # ValueErrors explain the input's fault in a sentence; anything else is ours.
            row.fail(str(exc) if isinstance(exc, ValueError) else f"Training stopped: {exc}")
    return row


def _train_and_evaluate(row: FineTune, report: Callable[..., None]) -> None:
    base = row.base_model or retrieval.embedding_model_for(row.bot)
    base_embedder = retrieval.embedder(base)
    passages = [
        finetuning.Passage(chunk_id, document_id, text)
        for chunk_id, document_id, text in retrieval.active_chunks(row.bot)
        .order_by("document_id", "ordinal", "id")
        .values_list("id", "document_id", "text")[:MAX_PASSAGES]
    ]
    if row.pairs_source == FineTune.Pairs.TEST_SET:
        if row.test_set is None:
            raise ValueError("The test set this fine-tune learns from was deleted.")
        cases = [
            finetuning.LabelledQuestion(case.id, case.question, _relevant(case))
            for case in row.test_set.cases.filter(answerable=True).prefetch_related("expected_documents")
        ]
        data = finetuning.test_set_data(cases, passages, base_embedder.encode)
    else:
        data = finetuning.inverse_cloze_data(passages)
    steps_total = finetuning.planned_steps(len(data.pairs), row.epochs)
    row.prepare(
        pair_count=len(data.pairs),
        held_out_count=len(data.held_out),
        steps_total=steps_total,
        model_path=f"{row.bot.slug}-ft-{row.pk}",
    )
    report(TRAIN_START, 0)
    folder = row.folder
    shutil.rmtree(folder, ignore_errors=True)  # a half-written model of an earlier attempt
    folder.parent.mkdir(parents=True, exist_ok=True)
    finetuning.train(
        base_embedder.path,
        data.pairs,
        folder,
        epochs=row.epochs,
        on_step=lambda done, total: report(TRAIN_START + (TRAIN_END - TRAIN_START) * done / total, done),
    )
    baseline = finetuning.held_out_metrics(base_embedder.encode, data.corpus, data.held_out)
    report((TRAIN_END + 1) / 2)
    # Loaded outside retrieval's cache: this model is only registered (and cached) if promoted.
    candidate = finetuning.held_out_metrics(finetuning.encoder(folder), data.corpus, data.held_out)
    promotable = finetuning.is_promotable(baseline, candidate)
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "fine_tune": row.pk,
                "bot": row.bot.slug,
                "base_model": base.name,
                "pairs_source": row.pairs_source,
                "pairs": len(data.pairs),
                "epochs": row.epochs,
                "baseline": baseline,
                "candidate": candidate,
                "promotable": promotable,
                **data.notes,
            },
            indent=2,
        )
    )
    row.finish(baseline=baseline, candidate=candidate, promotable=promotable)


def _relevant(case) -> dict[int, int]:
    grades = {int(document_id): grade for document_id, grade in case.grades.items()}
    return {document.id: grades.get(document.id, 1) for document in case.expected_documents.all()}


def fail_fine_tune(fine_tune_id: int, reason: str) -> None:
    """End a fine-tune that is not final as failed (its task died outside run_fine_tune's own handling)."""
    row = FineTune.objects.filter(pk=fine_tune_id).first()
    if row is not None and not row.is_final:
        row.fail(reason)


def promote_fine_tune(fine_tune: FineTune, *, switch_bot: Callable | None = None):
    """Register the fine-tuned model as an embedding model and return it (retrieval.EmbeddingModel).

    Allowed once, for a done fine-tune whose candidate beat the baseline (promotable),
    while the bot still embeds with the model it was compared against; otherwise
    FineTuneConflict says why. `switch_bot(model)` (the application layer's model-switch
    path, which re-embeds the bot in the background) runs in the same transaction, so a
    refused switch leaves nothing registered.
    """
    with transaction.atomic():
        row = FineTune.objects.select_for_update().select_related("bot").get(pk=fine_tune.pk)
        if row.status != FineTune.Status.DONE:
            raise FineTuneConflict(f"This fine-tune is {row.status}; only a finished one can be promoted.")
        if row.promoted_at is not None:
            raise FineTuneConflict("This fine-tune was already promoted.")
        if not row.promotable:
            raise FineTuneConflict(
                "The fine-tuned model did not beat the current one on the held-out cases "
                f"(nDCG@10 {_figure(row.candidate)} against {_figure(row.baseline)}), so the bot keeps its model."
            )
        if retrieval.embedding_model_for(row.bot).pk != row.base_model_id:
            raise FineTuneConflict("The bot's embedding model changed since this fine-tune was trained; train again.")
        if row.folder is None or not (row.folder / "config.json").exists():
            raise FineTuneConflict("The fine-tuned model's files are missing; train again.")
        model = retrieval.create_embedding_model(name=row.model_path, source=str(row.folder))
        row.mark_promoted(model)
        if switch_bot is not None:
            switch_bot(model)
    fine_tune.refresh_from_db()
    return model


def _figure(metrics: dict) -> str:
    value = metrics.get("ndcg@10")
    return "none" if value is None else f"{value:.3f}"


def delete_fine_tune(fine_tune: FineTune) -> None:
    """Remove the fine-tune, its folder, and the embedding model registered from it.

    Refused (FineTuneConflict) while it trains, and while its model is a bot's embedding
    model or the installation default: those bots would lose the model they search with.
    """
    with transaction.atomic():
        row = FineTune.objects.select_for_update(of=("self",)).select_related("embedding_model").get(pk=fine_tune.pk)
        if not row.is_final:
            raise FineTuneConflict("This fine-tune is still training; wait until it ends.")
        model = row.embedding_model
        if model is not None:
            in_use = list(model.bots.values_list("name", flat=True)[:3])
            if in_use or model.is_default:
                users = ", ".join(in_use) if in_use else "new bots (it is the default)"
                raise FineTuneConflict(
                    f"This model is the embedding model of {users}; switch to another model before removing it."
                )
        row.delete()
        if model is not None:
            model.delete()


@receiver(post_delete, sender=FineTune)
def _remove_model_folder(sender, instance: FineTune, **kwargs) -> None:
    """A deleted fine-tune (also when its bot is deleted) takes its folder and registered model along.

    Unless another bot embeds with that model (an editor may have picked it): then both stay.
    """
    folder, model_id = instance.folder, instance.embedding_model_id

    def remove() -> None:
        model = EmbeddingModel.objects.filter(pk=model_id).first() if model_id is not None else None
        if model is not None:
            if model.is_default or model.bots.exists():
                logger.warning("Keeping %s: a bot still embeds with it", folder)
                return
            model.delete()
        shutil.rmtree(folder, ignore_errors=True)

    if folder is not None:
        transaction.on_commit(remove)
