"""The LLM judge: a language model grades each answer of a run for faithfulness and relevance.

A bot names its judge (judge_provider, judge_model); a run copies that choice into
EvaluationRun.judge when it starts, so a later change of the bot's settings does not
change how a run already going is graded. Per case the judge sees the question, the
passages the answer was built from (the cited ones first, then the top retrieved ones)
and the answer, and replies with JSON. A failing judge call or an unusable reply is
recorded in that case's judgement as {"error": ...}; it never fails the run.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence

from evaluation.generators import Message, json_object

logger = logging.getLogger(__name__)

# The run metrics a judge adds: means over the judged, answered (not refused) cases.
JUDGE_METRICS = ("faithfulness", "answer_relevance")
MAX_PASSAGES = 8
MAX_PASSAGE_CHARS = 1500
MAX_REASONING_CHARS = 2000
JUDGE_MAX_TOKENS = 400

JUDGE_PROMPT = """You grade the answers of a question-answering assistant that answers from an \
organisation's documents. You get a question, the numbered passages the assistant retrieved, and \
its answer. Grade two things, each from 0 to 1:
- faithfulness: the share of the answer's claims that the passages support. 1 means every claim \
is supported by the passages; 0 means none is, or the answer contradicts them. Judge only against \
the passages, not your own knowledge.
- relevance: how well the answer addresses the question. 1 means it answers it directly and \
completely; 0 means it is off topic.
Reply with JSON only: {"faithfulness": <number>, "relevance": <number>, "reasoning": "<one to three \
sentences on why>"}."""

_SCORE_KEYS = {
    "faithfulness": ("faithfulness", "faithful", "groundedness"),
    "relevance": ("relevance", "answer_relevance", "relevancy", "answer_relevancy"),
}


class UnusableVerdict(ValueError):
    """The judge's reply holds no usable grades."""


def judge_of(bot) -> dict:
    """{"provider", "model"} of the bot's judge, or {} when it has none (the model defaults to the provider's first)."""
    provider = bot.judge_provider
    if provider is None:
        return {}
    model = bot.judge_model or (provider.model_names or [""])[0]
    return {"provider": provider.name, "model": model}


def judge_messages(question: str, answer: str, passages: Sequence[tuple[str, str]]) -> list[Message]:
    """The chat messages asking for a verdict; `passages` are (document name, text)."""
    blocks = []
    for number, (document, text) in enumerate(passages[:MAX_PASSAGES], start=1):
        if len(text) > MAX_PASSAGE_CHARS:
            text = text[:MAX_PASSAGE_CHARS] + "…"
        blocks.append(f"[{number}] ({document})\n{text}")
    context = "\n\n".join(blocks) or "(no passage was retrieved)"
    return [
        {"role": "system", "content": JUDGE_PROMPT},
        {"role": "user", "content": f"Question:\n{question}\n\nPassages:\n{context}\n\nAnswer:\n{answer}"},
    ]


def parse_verdict(reply: str) -> dict:
    """{"faithfulness", "relevance", "reasoning"} from the judge's reply; raises UnusableVerdict.

    Takes the first JSON object in the reply (also inside a Markdown fence or after prose),
    with grades as numbers, numeric strings or percentages; a reply that is not JSON but
    says "faithfulness: 0.8" and "relevance: 0.9" is read too.
    """
    found = json_object(reply) or {}
    lowered = {str(key).strip().lower(): value for key, value in found.items()}
    verdict: dict = {}
    for name, keys in _SCORE_KEYS.items():
        value = next((lowered[key] for key in keys if key in lowered), None)
        if value is None:
            match = re.search(rf"(?<![a-z]){name}\W{{0,3}}\s*[:=]?\s*\"?(-?[0-9.]+%?)", reply, re.IGNORECASE)
            value = match.group(1) if match else None
        if value is None:
            raise UnusableVerdict(f"The judge's reply gives no {name}: {_quote(reply)}")
        verdict[name] = _score(value, name)
    reasoning = lowered.get("reasoning", lowered.get("explanation", ""))
    verdict["reasoning"] = str(reasoning).strip()[:MAX_REASONING_CHARS] if reasoning else ""
    return verdict


def _score(value, name: str) -> float:
    percent = isinstance(value, str) and value.strip().endswith("%")
    try:
        number = float(value.strip().rstrip("%") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise UnusableVerdict(f"The judge's {name} {value!r} is not a number.") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise UnusableVerdict(f"The judge's {name} {value!r} is not a number.")
    if percent:
        number /= 100
    if not 0 <= number <= 1:
        raise UnusableVerdict(f"The judge's {name} {number:g} is not between 0 and 1.")
    return round(number, 4)


def _quote(reply: str) -> str:
    text = " ".join(reply.split())
    return repr(text[:200] + ("…" if len(text) > 200 else ""))


def judge_case(run, question: str, answer, found_chunks: Sequence) -> dict:
    """The judgement of one case of `run`: {} without a judge or for a refusal, else a verdict or {"error"}.

    `answer` is retrieval's Answer; `found_chunks` the retrieved ScoredChunks, best first.
    """
    if not run.judge or answer.refused:
        return {}
    cited = [citation.chunk for citation in answer.citations]
    chunks = {chunk.chunk_id: chunk for chunk in [*cited, *found_chunks[: run.bot.top_k]]}
    passages = [(chunk.document_name, chunk.text) for chunk in chunks.values()]
    try:
        llm = _judge_llm(run.judge)
        try:
            completion = llm.complete(
                judge_messages(question, answer.text, passages), temperature=0.0, max_tokens=JUDGE_MAX_TOKENS
            )
        finally:
            llm.close()
        return parse_verdict(completion.text)
    except Exception as exc:  # a judge's failure is this case's note, never the run's end
        logger.warning("Run %s: the judge could not grade a case: %s", run.pk, exc)
        return {"error": str(exc) or type(exc).__name__}


def _judge_llm(judge: dict):
    from retrieval.llms import OpenAICompatibleLLM
    from retrieval.services import get_provider

    provider = get_provider(judge.get("provider"))
    if provider is None:
        raise ValueError("The run names no judge provider.")
    return OpenAICompatibleLLM(provider.base_url, provider.api_key, judge.get("model") or provider.model_names[0])


def judge_metrics(judgements: Iterable[tuple[dict, bool]]) -> dict:
    """faithfulness and answer_relevance: means over (judgement, refused) pairs that were graded and not refused.

    Also judged_cases and judge_errors (counts); a metric is None when no case was graded.
    """
    graded, errors = [], 0
    for judgement, refused in judgements:
        if "error" in judgement:
            errors += 1
        elif not refused and "faithfulness" in judgement:
            graded.append(judgement)

    def mean(key: str) -> float | None:
        return round(sum(j[key] for j in graded) / len(graded), 6) if graded else None

    return {
        "faithfulness": mean("faithfulness"),
        "answer_relevance": mean("relevance"),
        "judged_cases": len(graded),
        "judge_errors": errors,
    }
