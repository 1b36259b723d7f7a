"""Editing a test set one case at a time: typed cases, cases from thumbs-down answers, the default set.

create_test_set and the imports (evaluation.services) store whole sets at once; the
Quality tab adds, corrects and removes single cases with these. Every check is the
one draft_of() makes for every other way in, so a typed case is held to the same rules
as an imported one.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.db.models import Max

from documents import services as documents
from evaluation.drafts import draft_of
from evaluation.models import TestCase, TestSet

FEEDBACK_SET_NAME = "From feedback"


def _document_ids(bot, names: list[str]) -> list[int]:
    """The ids of the bot's documents named `names`, in that order; ValueError naming any that is missing."""
    by_name = dict(documents.documents_of_bots([bot]).filter(filename__in=names).values_list("filename", "id"))
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(f"This bot has no document named {', '.join(map(repr, missing))}.")
    return [by_name[name] for name in dict.fromkeys(names)]


def _store(case: TestCase, fields: Mapping, *, needs_documents: bool) -> TestCase:
    draft = draft_of(fields, case.position + 1, needs_documents=needs_documents)
    document_ids = _document_ids(case.test_set.bot, draft.expected_documents)
    case.question, case.pages = draft.question, draft.pages
    case.reference_answer, case.answerable = draft.reference_answer, draft.answerable
    # Grades of documents still expected are kept (graded BEIR qrels); new ones are grade 1.
    case.grades = {key: grade for key, grade in case.grades.items() if int(key) in document_ids}
    with transaction.atomic():
        case.save()
        case.expected_documents.set(document_ids)
    return case


def add_case(test_set: TestSet, fields: Mapping, *, generator: str = TestCase.Generator.TYPED) -> TestCase:
    """Append one case (a mapping with the keys of a typed case) to `test_set`."""
    position = (test_set.cases.aggregate(last=Max("position"))["last"] or 0) + 1
    case = TestCase(test_set=test_set, question="", generator=generator, position=position)
    return _store(case, fields, needs_documents=generator != TestCase.Generator.FEEDBACK)


def update_case(case: TestCase, fields: Mapping) -> TestCase:
    """Replace a case's question, expected documents, pages, reference answer and answerable flag.

    A case from feedback may stay answerable without documents (it is then left out of
    the retrieval metrics until someone names them); every other case needs them.
    """
    return _store(case, fields, needs_documents=case.generator != TestCase.Generator.FEEDBACK)


def delete_case(case: TestCase) -> None:
    case.delete()


def delete_test_set(test_set: TestSet) -> None:
    """Remove the set with its cases and runs."""
    test_set.delete()


def set_default_test_set(test_set: TestSet | None, bot=None) -> None:
    """Make `test_set` the one its bot runs after every settings change; None (with `bot`) clears it."""
    bot = bot if test_set is None else test_set.bot
    with transaction.atomic():
        TestSet.objects.filter(bot=bot, is_default=True).update(is_default=False)
        if test_set is not None:
            TestSet.objects.filter(pk=test_set.pk).update(is_default=True)


def default_test_set(bot) -> TestSet | None:
    return TestSet.objects.filter(bot=bot, is_default=True).first()


def add_feedback_case(bot, question: str, *, created_by=None) -> tuple[TestCase, bool]:
    """The question of a thumbs-down answer as a case of the bot's "From feedback" set: (case, created).

    The case is answerable and names no document yet: whoever turned it into a case
    knows the answer was wrong, not where the right one is. It counts for the answer
    metrics (a refusal of it is a wrong refusal) and joins the retrieval metrics once
    an editor names its documents. Asking twice for the same question returns the first case.
    """
    question = question.strip()
    for _attempt in range(2):
        test_set = TestSet.objects.filter(bot=bot, name=FEEDBACK_SET_NAME).first()
        if test_set is None:
            try:
                with transaction.atomic():
                    test_set = TestSet.objects.create(bot=bot, name=FEEDBACK_SET_NAME, created_by=created_by)
            except IntegrityError:
                continue  # created by a concurrent click: read it
        existing = test_set.cases.filter(question=question).first()
        if existing is not None:
            return existing, False
        return add_case(test_set, {"question": question}, generator=TestCase.Generator.FEEDBACK), True
    raise RuntimeError("The feedback test set could not be created.")  # pragma: no cover - two races in a row


def cases_needing_documents(test_set: TestSet):
    """Answerable cases that name no expected document (from feedback, until an editor names them)."""
    return test_set.cases.filter(answerable=True, expected_documents__isnull=True)
