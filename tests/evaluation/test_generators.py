"""Generated cases: rule-based or LLM-written questions from a bot's own passages, held-out unanswerable ones."""

import json
import re

import pytest

from evaluation import generation, generators, services
from evaluation.generators import Passage
from evaluation.models import TestSet
from retrieval.models import LLMProvider
from tests.chat_server import API_KEY, MODEL
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


def test_generation_spreads_over_documents_and_repeats_with_the_same_seed():
    passages = [Passage(name, text) for name, text in HANDBOOK.items()]
    cases = generators.generate(passages, count=3, seed=1)
    assert sorted(case.document for case in cases) == sorted(HANDBOOK)
    assert generators.generate(passages, count=3, seed=1) == cases


def topic_of(case, passages) -> str:
    return next(passage.document for passage in passages if case.source in " ".join(passage.text.split()))


def test_held_out_candidates_are_rule_based_questions_about_the_shipped_corpus_spread_over_topics():
    passages = generators.held_out_passages()
    assert len(passages) >= 20 and len({passage.document for passage in passages}) == len(passages)
    candidates = generators.held_out_cases(seed=3)
    assert all(case.document is None and case.question.startswith("What do the documents say") for case in candidates)
    first = candidates[: len(passages)]
    topics = {topic_of(case, passages) for case in first}
    assert len(topics) == len(passages)  # one question per topic before any topic's second
    assert generators.held_out_cases(seed=3) == candidates


def test_json_objects_are_found_in_fences_and_prose_and_bad_replies_give_no_question():
    assert generators.json_object('Sure:\n```json\n{"question": "Who?", "a": {"b": 1}}\n```') == {
        "question": "Who?",
        "a": {"b": 1},
    }
    assert generators.json_object('{not json} then [1] and {"x": 2}') == {"x": 2}
    assert generators.json_object("no braces") is None
    assert generators.parse_question('{"question": "  How many   days of leave do I get? ", "answer": "25"}') == (
        "How many days of leave do I get?",
        "25",
    )
    for reply in ['{"question": ""}', '{"question": 42}', "Here is a question: how?", '{"question": "Why?"}']:
        assert generators.parse_question(reply) is None


def test_the_llm_generator_asks_per_passage_and_drops_unusable_or_repeated_questions():
    passages = [Passage(name, text) for name, text in HANDBOOK.items()] + [Passage("short.txt", "Too short.")]
    lunch = '{"question": "When can I eat lunch at work?"}'
    replies = iter([lunch, "I cannot help.", lunch, '{"question": "What does error E-4417 mean?"}'])
    asked = []

    def ask(messages):
        asked.append(messages[-1]["content"])
        return next(replies)

    cases = generators.llm_generate(passages, count=2, ask=ask, seed=0)

    assert len(asked) == 3  # three documents long enough; the fourth reply was never needed
    assert not any("Too short." in prompt for prompt in asked)
    assert [case.question for case in cases] == ["When can I eat lunch at work?"]
    assert cases[0].document in asked[0]  # the expected document is the passage's own


@pytest.mark.django_db
def test_a_generated_test_set_records_its_generator_and_finds_its_documents(bot, index_texts):
    index_texts(bot, HANDBOOK)
    test_set = services.generate_test_set(bot, "Generated", count=3, unanswerable=1)
    cases = list(test_set.cases.all())
    assert {case.generator for case in cases} == {"rule-based"}
    assert sum(case.answerable for case in cases) == 3
    held_out = {case.question for case in generators.held_out_cases()}
    assert [case.question in held_out for case in cases if not case.answerable] == [True]
    assert services.evaluate_retrieval(test_set)["hit@1"] == 1  # questions share words with their answers


@pytest.mark.django_db
def test_a_bot_without_indexed_text_cannot_generate_cases(bot):
    with pytest.raises(ValueError, match="no sentence to ask about"):
        services.generate_test_set(bot, "Generated")
    with pytest.raises(ValueError, match="1 to 500 questions"):
        services.generate_test_set(bot, "Generated", count=0)


def with_provider(bot, base_url: str):
    provider = LLMProvider(name="local", base_url=base_url, model_names=[MODEL])
    provider.set_api_key(API_KEY)
    provider.save()
    bot.provider, bot.llm_model = provider, MODEL
    bot.save()
    return bot


def question_about_the_passage(body) -> str:
    """The test LLM's reply: a question naming the passage's document, with its first words as the answer."""
    prompt = body["messages"][-1]["content"]
    document = re.search(r"Passage from (\S+):", prompt).group(1)
    passage = prompt.split("\n\n", 1)[1]
    return json.dumps({"question": f"What does {document} tell employees?", "answer": " ".join(passage.split()[:4])})


@pytest.mark.django_db
def test_with_an_llm_provider_the_model_writes_one_question_per_passage_and_each_case_names_its_generator(
    bot, index_texts, chat_server
):
    index_texts(bot, HANDBOOK)
    with_provider(bot, chat_server.base_url)
    chat_server.reply_for = question_about_the_passage

    test_set = services.generate_test_set(bot, "Written", count=3, unanswerable=2)

    cases = list(test_set.cases.prefetch_related("expected_documents"))
    answerable = [case for case in cases if case.answerable]
    assert {case.generator for case in answerable} == {"llm"}
    assert sorted(case.question for case in answerable) == sorted(
        f"What does {name} tell employees?" for name in HANDBOOK
    )
    for case in answerable:  # the expected document is the passage's own
        assert [document.filename for document in case.expected_documents.all()] == [case.question.split()[2]]
        assert HANDBOOK[case.question.split()[2]].startswith(case.reference_answer)
    unanswerable = [case for case in cases if not case.answerable]
    assert len(unanswerable) == 2 and {case.generator for case in unanswerable} == {"rule-based"}
    assert len(chat_server.requests) == 3
    assert chat_server.requests[0]["body"]["model"] == MODEL


@pytest.mark.django_db
def test_a_failing_or_unusable_llm_provider_is_a_readable_error_and_stores_nothing(bot, index_texts, chat_server):
    index_texts(bot, HANDBOOK)
    with_provider(bot, chat_server.base_url)
    chat_server.reply = "Sorry, I can only chat."
    with pytest.raises(ValueError, match="wrote no usable question"):
        services.generate_test_set(bot, "Written", count=2)
    assert len(chat_server.requests) == 3  # at most two passages per wanted question, and only three exist

    bot.provider.model_names = ["gone-model"]
    bot.provider.save()
    bot.llm_model = "gone-model"
    bot.save()
    with pytest.raises(ValueError, match="provider 'local' could not write questions: .*does not exist"):
        services.generate_test_set(bot, "Written", count=2)
    requests = len(chat_server.requests)
    with pytest.raises(ValueError, match="at most 50 questions at a time"):
        services.generate_test_set(bot, "Written", count=51)
    assert len(chat_server.requests) == requests  # refused before any call
    assert not TestSet.objects.filter(bot=bot).exists()


@pytest.mark.django_db
def test_held_out_questions_the_bots_own_documents_cover_are_not_used_as_unanswerable(bot, index_texts):
    passages = generators.held_out_passages()
    # The topics whose questions come first (the round-robin goes through topics by name), so few are searched.
    covered = {passage.document: passage.text for passage in sorted(passages, key=lambda p: p.document)[:3]}
    index_texts(bot, {f"{topic.split(':')[1]}.txt": text for topic, text in covered.items()})
    candidates = generators.held_out_cases()
    source_topic = {case.question: topic_of(case, passages) for case in candidates}

    chosen = generation.uncovered_held_out_cases(bot, wanted=5, seed=0)

    assert not any(source_topic[case.question] in covered for case in chosen)
    assert [source_topic[case.question] in covered for case in candidates[:3]] == [True] * 3  # were candidates
    assert chosen == candidates[3:8]  # the other topics' questions stay in
