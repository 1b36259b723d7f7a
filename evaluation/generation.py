"""Generated test sets: questions written from a bot's own passages, plus held-out unanswerable ones.

With an LLM provider (the bot's `provider` and `llm_model`) the model writes one question per
sampled passage; without one the rule-based generator of evaluation.generators picks
informative sentences. Unanswerable cases are rule-based questions about Docent's held-out
general-knowledge corpus, kept only when the bot's documents do not cover them (see
uncovered_held_out_cases). Other bots' documents are never used (the editor may not be
allowed to see them).
"""

from __future__ import annotations

import logging

from django.db import transaction

from evaluation import generators
from evaluation.drafts import CaseDraft
from evaluation.models import TestCase, TestSet
from retrieval import services as retrieval

logger = logging.getLogger(__name__)

MAX_QUESTIONS = 500
# Each LLM question is a model call made while the editor waits: fewer at a time.
MAX_LLM_QUESTIONS = 50
MAX_PASSAGES = 5000
# Held-out candidates searched per wanted unanswerable case at most (each is one search).
HELD_OUT_CHECKS_PER_CASE = 4
# A held-out sentence this similar to one of the bot's passages is covered by the bot's documents.
# With the default model (MiniLM) a passage holding the sentence, or a paraphrase of it, scores
# above 0.55 and passages on other topics below 0.35 (measured on the held-out corpus).
COVERED_SIMILARITY = 0.45
GENERATOR_TEMPERATURE = 0.3
GENERATOR_MAX_TOKENS = 300


def generate_test_set(bot, name: str, *, count: int = 20, unanswerable: int = 3, seed: int = 0, created_by=None):
    """A test set of up to `count` answerable and `unanswerable` unanswerable generated cases for `bot`.

    Each case records its generator: "llm" for the LLM's questions, "rule-based" for the
    rule-based ones and for every unanswerable case. Raises ValueError for a bad request,
    a bot with nothing indexed, or a provider that fails (with the server's message).
    """
    from evaluation import services

    name = (name or "").strip()
    if not 1 <= count <= MAX_QUESTIONS or not 0 <= unanswerable <= generators.MAX_UNANSWERABLE:
        raise ValueError(
            f"Ask for 1 to {MAX_QUESTIONS} questions and 0 to {generators.MAX_UNANSWERABLE} unanswerable ones."
        )
    if not name:
        raise ValueError("A test set needs a name.")
    # Checked before any model is asked: a taken name would waste every call.
    if TestSet.objects.filter(bot=bot, name=name).exists():
        raise ValueError(f"This bot already has a test set named {name!r}.")
    passages = [
        generators.Passage(document=filename, text=text)
        for filename, text in retrieval.active_chunks(bot)
        .order_by("document_id", "ordinal")
        .values_list("document__filename", "text")[:MAX_PASSAGES]
    ]
    if bot.provider_id and count > MAX_LLM_QUESTIONS:
        raise ValueError(
            f"A language model writes at most {MAX_LLM_QUESTIONS} questions at a time (each is a call to it); "
            "generate more sets for more."
        )
    if bot.provider_id:
        generator = TestCase.Generator.LLM
        generated = llm_cases(bot, passages, count, seed)
    else:
        generator = TestCase.Generator.RULE_BASED
        generated = generators.generate(passages, count, seed)
    if not generated:
        raise ValueError("The bot's documents have no sentence to ask about yet; add or finish indexing documents.")
    held_out = uncovered_held_out_cases(bot, unanswerable, seed)
    drafts = [
        CaseDraft(question=case.question, expected_documents=[case.document], reference_answer=case.source)
        for case in generated
        if case.document
    ] + [CaseDraft(question=case.question, answerable=False) for case in held_out]
    with transaction.atomic():
        test_set = services.create_test_set(bot, name, drafts, created_by=created_by, generator=generator)
        test_set.cases.filter(answerable=False).update(generator=TestCase.Generator.RULE_BASED)
    return test_set


def llm_cases(bot, passages: list[generators.Passage], count: int, seed: int) -> list[generators.GeneratedCase]:
    """Questions the bot's LLM writes for sampled passages; a provider failure is a ValueError saying why."""
    from retrieval.llms import LLMError, OpenAICompatibleLLM

    if not passages:
        return []
    provider = bot.provider
    model = bot.llm_model or (provider.model_names or [""])[0]
    llm = OpenAICompatibleLLM(provider.base_url, provider.api_key, model)

    def ask(messages: list[generators.Message]) -> str:
        return llm.complete(messages, temperature=GENERATOR_TEMPERATURE, max_tokens=GENERATOR_MAX_TOKENS).text

    try:
        cases = generators.llm_generate(passages, count, ask, seed)
    except LLMError as exc:
        hint = f" {exc.hint}" if exc.hint else ""
        raise ValueError(
            f"The language model of provider {provider.name!r} could not write questions: {exc.server_message}.{hint}"
        ) from exc
    finally:
        llm.close()
    if not cases:
        raise ValueError(
            f"The language model {model!r} of provider {provider.name!r} wrote no usable question "
            '(each reply must be JSON like {"question": "..."}); check the model, or remove the provider '
            "to generate questions by rule."
        )
    return cases


def uncovered_held_out_cases(bot, wanted: int, seed: int = 0) -> list[generators.GeneratedCase]:
    """Up to `wanted` held-out questions that `bot`'s documents do not cover.

    A question is covered when a passage of the bot is at least COVERED_SIMILARITY similar
    (cosine, the vector search's score) to the held-out sentence it was made from: the bot's
    documents then state the same fact, so it would not be a fair unanswerable case. The
    sentence is compared rather than the question (a list of key terms, whose similarity to
    a passage is noisy), and a fixed bar rather than the bot's refusal threshold, so that
    the cases do not depend on the very setting they measure.
    """
    chosen: list[generators.GeneratedCase] = []
    if wanted <= 0:
        return chosen
    for case in generators.held_out_cases(seed)[: wanted * HELD_OUT_CHECKS_PER_CASE]:
        found = retrieval.search(bot, case.source, k=bot.top_k)
        best = max((chunk.vector_score or 0.0 for chunk in found.chunks), default=0.0)
        if best < COVERED_SIMILARITY:
            chosen.append(case)
            if len(chosen) == wanted:
                break
    return chosen
