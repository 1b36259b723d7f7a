"""Rule-based cases from a bot's own passages."""

import pytest

from evaluation import generators, services
from evaluation.generators import Passage
from tests.evaluation.test_runs import HANDBOOK


def test_informative_sentences_need_length_and_a_number_or_a_name():
    text = (
        "Hello there. Full-time employees receive 25 days of paid vacation per calendar year. "
        "Is this a question that should be skipped by the generator? "
        "Contact Maria Lopez in Human Resources before booking any leave."
    )
    assert generators.informative_sentences(text) == [
        "Full-time employees receive 25 days of paid vacation per calendar year.",
        "Contact Maria Lopez in Human Resources before booking any leave.",
    ]


def test_a_question_names_the_sentences_numbers_and_names_first():
    sentence = "Printer error E-4417 means the toner cartridge is empty and must be replaced."
    question = generators.question_for(sentence)
    assert question == "What do the documents say about Printer error E-4417 cartridge replaced?"


def test_generation_spreads_over_documents_and_adds_held_out_unanswerable_cases():
    passages = [Passage(name, text) for name, text in HANDBOOK.items()]
    cases = generators.generate(passages, count=3, unanswerable=2, seed=1)
    assert sorted(case.document for case in cases[:3]) == sorted(HANDBOOK)
    assert [case.document for case in cases[3:]] == [None, None]
    assert {case.question for case in cases[3:]} <= set(generators.HELD_OUT_QUESTIONS)
    assert generators.generate(passages, count=3, unanswerable=2, seed=1) == cases  # the same seed, the same set


@pytest.mark.django_db
def test_a_generated_test_set_records_its_generator_and_finds_its_documents(bot, index_texts):
    index_texts(bot, HANDBOOK)
    test_set = services.generate_test_set(bot, "Generated", count=3, unanswerable=1)
    cases = list(test_set.cases.all())
    assert {case.generator for case in cases} == {"rule-based"}
    assert sum(case.answerable for case in cases) == 3
    assert services.evaluate_retrieval(test_set)["hit@1"] == 1  # questions share words with their answers


@pytest.mark.django_db
def test_a_bot_without_indexed_text_cannot_generate_cases(bot):
    with pytest.raises(ValueError, match="no sentence to ask about"):
        services.generate_test_set(bot, "Generated")
    with pytest.raises(ValueError, match="1 to 500 questions"):
        services.generate_test_set(bot, "Generated", count=0)
