"""The Quality tab: test sets, runs with live progress, comparisons, the metric chart, feedback.

Editors only: every view starts from services.get_editable_bot (404 for anyone else)
and looks test sets and runs up among that bot's own. The work is evaluation.services';
these views parse the form, call it, and render. Runs poll as htmx fragments until final.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import FieldDoesNotExist
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from bots import charts, services
from bots.forms import BotSettingsForm
from bots.models import Bot
from bots.views import HtmxHttpRequest, _bot_context
from documents import services as documents
from evaluation import services as evaluation
from retrieval import services as retrieval

QUALITY_TEMPLATE = "bots/bot_quality.html"
# The metrics shown in tables and drawn in the chart, with the names people read.
SHOWN_METRICS = {
    "hit@1": "Hit@1",
    "hit@5": "Hit@5",
    "mrr@10": "MRR@10",
    "ndcg@10": "nDCG@10",
    "recall@10": "Recall@10",
    "citation_precision": "Citation precision",
    "refusal_accuracy": "Refusal accuracy",
    "wrong_refusals": "Wrong refusals",
    "faithfulness": "Faithfulness",
    "answer_relevance": "Answer relevance",
}
CHART_METRICS = ("ndcg@10", "hit@5", "mrr@10", "recall@10", "citation_precision", "refusal_accuracy")
# Above this many documents the expected-documents picker is a text field, not a list.
PICKER_MAX_DOCUMENTS = 500


class CaseForm(forms.Form):
    """One case as a person types it."""

    question = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))
    answerable = forms.BooleanField(
        required=False, initial=True, help_text="Untick for a question the documents should not answer."
    )
    expected_documents = forms.MultipleChoiceField(
        required=False, help_text="The documents that hold the answer (Ctrl or ⌘ to pick several)."
    )
    pages = forms.CharField(required=False, max_length=200, help_text="Optional: page numbers, separated by ';'.")
    reference_answer = forms.CharField(
        required=False, max_length=8000, widget=forms.Textarea(attrs={"rows": 2}), help_text="Optional."
    )

    def __init__(self, *args, bot: Bot, **kwargs):
        super().__init__(*args, **kwargs)
        names = list(
            documents.documents_of_bots([bot])
            .order_by("filename")
            .values_list("filename", flat=True)[: PICKER_MAX_DOCUMENTS + 1]
        )
        if len(names) > PICKER_MAX_DOCUMENTS:
            self.fields["expected_documents"] = forms.CharField(
                required=False, max_length=20000, help_text="File names of the documents that hold the answer, "
                "separated by ';'."
            )  # fmt: skip
        else:
            self.fields["expected_documents"].choices = [(name, name) for name in names]
            self.fields["expected_documents"].widget.attrs["size"] = str(min(max(len(names), 2), 8))

    def case(self) -> dict:
        data = self.cleaned_data
        expected = data["expected_documents"]
        return {
            "question": data["question"],
            "answerable": data["answerable"],
            "expected_documents": expected if data["answerable"] else [],
            "pages": data["pages"],
            "reference_answer": data["reference_answer"],
        }


class NewTestSetForm(CaseForm):
    name = forms.CharField(max_length=200, label="Test set name")
    field_order = ["name", "question", "answerable", "expected_documents", "pages", "reference_answer"]


def _case_initial(case) -> dict:
    return {
        "question": case.question,
        "answerable": case.answerable,
        "expected_documents": [document.filename for document in case.expected_documents.all()],
        "pages": ";".join(map(str, case.pages)),
        "reference_answer": case.reference_answer,
    }


def _test_set(bot: Bot, test_set_id: int):
    test_set = evaluation.test_sets_of_bots([bot]).filter(pk=test_set_id).first()
    if test_set is None:
        raise Http404("No such test set.")
    return test_set


def _run(bot: Bot, run_id: int):
    run = evaluation.runs_of_bots([bot]).select_related("test_set").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


def _metric_rows(metrics: dict) -> list[tuple[str, str, float | None]]:
    return [(key, label, metrics.get(key)) for key, label in SHOWN_METRICS.items() if key in metrics]


def _runs_context(bot: Bot) -> dict:
    runs = list(evaluation.runs_of_bots([bot]).select_related("test_set", "started_by")[:50])
    return {
        "runs": runs,
        "runs_polling": any(not run.is_final for run in runs),
        "table_metrics": [(key, SHOWN_METRICS[key]) for key in ("hit@1", "hit@5", "mrr@10", "ndcg@10")],
    }


def _fine_tunes_context(bot: Bot) -> dict:
    fine_tunes = list(
        evaluation.fine_tunes_of_bots([bot]).select_related("test_set", "base_model", "embedding_model")[:20]
    )
    return {"fine_tunes": fine_tunes, "fine_tunes_polling": any(not ft.is_final for ft in fine_tunes)}


def _chart(bot: Bot, test_set):
    if test_set is None:
        return None
    done = evaluation.runs_of_bots([bot]).filter(test_set=test_set, status="done").order_by("-created_at", "-id")
    runs = [(f"#{run.id} · v{run.config_version}", run.metrics) for run in reversed(done[:30])]
    return charts.metric_chart(runs, CHART_METRICS)


@login_required
@require_GET
def bot_quality(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    test_sets = list(evaluation.test_sets_of_bots([bot]).prefetch_related("runs"))
    for test_set in test_sets:
        test_set.case_count = test_set.cases.count()
        test_set.last_run = next((run for run in test_set.runs.all() if run.status == "done"), None)
    chart_set = next((s for s in test_sets if str(s.pk) == request.GET.get("chart")), None) or next(
        (s for s in test_sets if s.is_default), test_sets[0] if test_sets else None
    )
    feedback_rows = services.feedback_of(bot)
    context = (
        _bot_context(request, bot, "quality")
        | _runs_context(bot)
        | _fine_tunes_context(bot)
        | {
            "test_sets": test_sets,
            "new_set_form": NewTestSetForm(bot=bot),
            "chart": _chart(bot, chart_set),
            "chart_set": chart_set,
            "feedback": feedback_rows[:100],
            "helpful": feedback_rows.filter(rating=1).count(),
            "unhelpful": feedback_rows.filter(rating=-1).count(),
            "answers": retrieval.traces_of_bots([bot]).count(),
            "refused": retrieval.traces_of_bots([bot]).filter(refused=True).count(),
            "generator": "a language model" if bot.provider_id else "rules (no language model is set)",
        }
    )
    return render(request, QUALITY_TEMPLATE, context)


@login_required
@require_GET
def runs_table(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    return render(request, QUALITY_TEMPLATE + "#runs", {"bot": bot} | _runs_context(bot))


@login_required
@require_POST
def test_set_create(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    form = NewTestSetForm(request.POST, bot=bot)
    if form.is_valid():
        try:
            test_set = evaluation.create_test_set(
                bot, form.cleaned_data["name"], [form.case()], created_by=request.user
            )
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Test set “{test_set.name}” created. Add more cases below.")
            return redirect("bots:test-set", bot.slug, test_set.pk)
    else:
        messages.error(request, _form_errors(form))
    return redirect("bots:quality", bot.slug)


@login_required
@require_POST
def test_set_import(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a .csv, .jsonl or BEIR .zip file to import.")
        return redirect("bots:quality", bot.slug)
    try:
        test_set = evaluation.import_test_set(
            bot, upload.name, upload.read(), name=request.POST.get("name", ""), created_by=request.user
        )
    except ValueError as exc:
        messages.error(request, f"{upload.name} was not imported: {exc}")
        return redirect("bots:quality", bot.slug)
    messages.success(request, f"Imported {test_set.cases.count()} cases as “{test_set.name}”.")
    return redirect("bots:test-set", bot.slug, test_set.pk)


@login_required
@require_POST
def test_set_generate(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    try:
        count = int(request.POST.get("count") or 20)
        unanswerable = int(request.POST.get("unanswerable") or 0)
    except ValueError:
        messages.error(request, "Give the number of questions as a whole number.")
        return redirect("bots:quality", bot.slug)
    name = request.POST.get("name", "").strip() or "Generated"
    try:
        test_set = evaluation.generate_test_set(
            bot, name, count=count, unanswerable=unanswerable, created_by=request.user
        )
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("bots:quality", bot.slug)
    messages.success(request, f"Generated {test_set.cases.count()} cases as “{test_set.name}”. Check them below.")
    return redirect("bots:test-set", bot.slug, test_set.pk)


@login_required
def test_set_detail(request: HtmxHttpRequest, slug: str, test_set_id: int) -> HttpResponse:
    """A set's cases, and the form that adds one more."""
    bot = services.get_editable_bot(request.user, slug=slug)
    test_set = _test_set(bot, test_set_id)
    form = CaseForm(request.POST or None, bot=bot)
    if request.method == "POST" and form.is_valid():
        try:
            evaluation.add_case(test_set, form.case())
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Case added.")
            return redirect("bots:test-set", bot.slug, test_set.pk)
    cases = test_set.cases.prefetch_related("expected_documents")
    context = _bot_context(request, bot, "quality") | {
        "test_set": test_set,
        "cases": cases,
        "form": form,
        "needing_documents": evaluation.cases_needing_documents(test_set).count(),
    }
    return render(request, "bots/quality_test_set.html", context)


@login_required
def case_edit(request: HtmxHttpRequest, slug: str, test_set_id: int, case_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    test_set = _test_set(bot, test_set_id)
    case = test_set.cases.filter(pk=case_id).first()
    if case is None:
        raise Http404("No such case.")
    form = CaseForm(request.POST or None, bot=bot, initial=_case_initial(case))
    if request.method == "POST" and form.is_valid():
        try:
            evaluation.update_case(case, form.case())
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Case saved.")
            return redirect("bots:test-set", bot.slug, test_set.pk)
    context = _bot_context(request, bot, "quality") | {"test_set": test_set, "case": case, "form": form}
    return render(request, "bots/quality_case.html", context)


@login_required
@require_POST
def case_delete(request: HtmxHttpRequest, slug: str, test_set_id: int, case_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    test_set = _test_set(bot, test_set_id)
    case = test_set.cases.filter(pk=case_id).first()
    if case is None:
        raise Http404("No such case.")
    evaluation.delete_case(case)
    messages.success(request, "Case removed.")
    return redirect("bots:test-set", bot.slug, test_set.pk)


@login_required
@require_POST
def test_set_delete(request: HtmxHttpRequest, slug: str, test_set_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    test_set = _test_set(bot, test_set_id)
    evaluation.delete_test_set(test_set)
    messages.success(request, f"Test set “{test_set.name}” and its runs removed.")
    return redirect("bots:quality", bot.slug)


@login_required
@require_POST
def test_set_default(request: HtmxHttpRequest, slug: str, test_set_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    test_set = _test_set(bot, test_set_id)
    if test_set.is_default:
        evaluation.set_default_test_set(None, bot)
        messages.success(request, f"“{test_set.name}” is no longer the default test set.")
    else:
        evaluation.set_default_test_set(test_set)
        hint = "" if bot.evaluate_on_change else " Turn on “Evaluate after every change” in Settings to run it then."
        messages.success(request, f"“{test_set.name}” is now the default test set.{hint}")
    if request.POST.get("next") == "set":
        return redirect("bots:test-set", bot.slug, test_set.pk)
    return redirect("bots:quality", bot.slug)


@login_required
@require_POST
def run_start(request: HtmxHttpRequest, slug: str, test_set_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    test_set = _test_set(bot, test_set_id)
    try:
        run = evaluation.start_run(test_set, started_by=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("bots:quality", bot.slug)
    return redirect("bots:run", bot.slug, run.pk)


@login_required
@require_GET
def run_detail(request: HtmxHttpRequest, slug: str, run_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    run = _run(bot, run_id)
    context = _bot_context(request, bot, "quality") | {
        "run": run,
        "metric_rows": _metric_rows(run.metrics),
        "waiting": run.status == "queued" and evaluation.waiting_for_index(run.pk),
    }
    if request.htmx and request.GET.get("part") == "status":
        if run.is_final:  # the whole page, now with the cases and the metrics
            return HttpResponseClientRefresh()
        return render(request, "bots/quality_run.html#status", context)
    context["cases"] = evaluation.case_results(run) if run.is_final else []
    context["others"] = (
        evaluation.runs_of_bots([bot]).filter(test_set=run.test_set, status="done").exclude(pk=run.pk)[:20]
    )
    return render(request, "bots/quality_run.html", context)


@login_required
@require_GET
def run_compare(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    ids = [request.GET.get("a", ""), request.GET.get("b", "")]
    if not all(value.isdigit() for value in ids):
        messages.error(request, "Pick two runs to compare.")
        return redirect("bots:quality", bot.slug)
    a, b = (_run(bot, int(value)) for value in ids)
    try:
        comparison = evaluation.compare_runs(a, b)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("bots:quality", bot.slug)
    deltas = comparison["metric_deltas"]
    rows = [
        (label, a.metrics.get(key), b.metrics.get(key), deltas.get(key), key in evaluation.LOWER_IS_BETTER)
        for key, label in SHOWN_METRICS.items()
        if key in a.metrics or key in b.metrics
    ]
    settings_changed = [
        (_setting_label(field), _setting_value(field, old), _setting_value(field, new))
        for field, (old, new) in comparison["config_diff"].items()
    ]
    context = _bot_context(request, bot, "quality") | {
        "a": a,
        "b": b,
        "comparison": comparison,
        "rows": rows,
        "settings_changed": settings_changed,
    }
    return render(request, "bots/quality_compare.html", context)


@login_required
@require_POST
def feedback_to_case(request: HtmxHttpRequest, slug: str, feedback_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    try:
        case, created = services.feedback_to_case(bot, feedback_id, created_by=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("bots:quality", bot.slug)
    if created:
        messages.success(request, "Added to “From feedback”. Name the documents that hold the right answer.")
    else:
        messages.info(request, "This question is already a case; here it is.")
    return redirect("bots:case", bot.slug, case.test_set_id, case.pk)


def _setting_label(field: str) -> str:
    return str(BotSettingsForm.Meta.labels.get(field) or field.replace("_", " ").capitalize())


def _setting_value(field: str, value):
    """A setting as saved in a config snapshot, for people: related rows by name, not id."""
    try:
        related = Bot._meta.get_field(field).related_model
    except FieldDoesNotExist:
        return value
    if related is None or value is None:
        return value
    row = related.objects.filter(pk=value).first()
    return str(row) if row is not None else f"(removed, id {value})"


def _form_errors(form: forms.Form) -> str:
    return " ".join(f"{form.fields[name].label or name}: {' '.join(errors)}" if name != "__all__" else " ".join(errors)
                    for name, errors in form.errors.items())  # fmt: skip


@login_required
@require_GET
def fine_tunes_table(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    return render(request, QUALITY_TEMPLATE + "#fine-tunes", {"bot": bot} | _fine_tunes_context(bot))


@login_required
@require_POST
def fine_tune_start(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    source = request.POST.get("test_set", "")
    test_set = _test_set(bot, int(source)) if source.isdigit() else None
    epochs = request.POST.get("epochs", "1")
    try:
        if not epochs.isdigit():
            raise ValueError("Give the number of epochs as a whole number from 1 to 10.")
        evaluation.start_fine_tune(bot, test_set=test_set, epochs=int(epochs), started_by=request.user)
    except ValueError as exc:  # FineTuneConflict is one too
        messages.error(request, str(exc))
    else:
        messages.success(request, "Fine-tuning started in the background; this page shows its progress.")
    return redirect(reverse("bots:quality", args=[bot.slug]) + "#fine-tunes-card")


def _fine_tune(bot: Bot, fine_tune_id: int):
    fine_tune = evaluation.fine_tunes_of_bots([bot]).filter(pk=fine_tune_id).first()
    if fine_tune is None:
        raise Http404("No such fine-tune.")
    return fine_tune


@login_required
@require_POST
def fine_tune_promote(request: HtmxHttpRequest, slug: str, fine_tune_id: int) -> HttpResponse:
    """Switch the bot to the fine-tuned model through the ordinary settings change (a new config version)."""
    bot = services.get_editable_bot(request.user, slug=slug)
    fine_tune = _fine_tune(bot, fine_tune_id)
    try:
        model = evaluation.promote_fine_tune(
            fine_tune, switch_bot=lambda model: services.update_bot(bot, request.user, {"embedding_model": model})
        )
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"The bot now embeds with {model.name}. Its documents are being re-embedded; "
            "answers use the previous index until that is done.",
        )
    return redirect(reverse("bots:quality", args=[bot.slug]) + "#fine-tunes-card")


@login_required
@require_POST
def fine_tune_delete(request: HtmxHttpRequest, slug: str, fine_tune_id: int) -> HttpResponse:
    bot = services.get_editable_bot(request.user, slug=slug)
    try:
        evaluation.delete_fine_tune(_fine_tune(bot, fine_tune_id))
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Fine-tuned model removed.")
    return redirect(reverse("bots:quality", args=[bot.slug]) + "#fine-tunes-card")
