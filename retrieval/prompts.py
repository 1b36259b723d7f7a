"""Prompt templates and the text work around a generative answer.

Pure Python, no Django. `fit_prompt` / `build_messages` turn a question, the
retrieved chunks and the conversation so far into OpenAI chat messages that fit a
token budget; `map_citations` turns the model's [n] markers back into citations;
`rewrite_followup` makes a follow-up question stand on its own for retrieval.

Templates are `string.Template` strings filled with `safe_substitute`, so a bot
builder's template may contain literal braces (JSON examples) and an unknown
`$name` is left as written instead of failing the answer. Placeholders:

- `$instructions`: the bot's own instructions (may be empty)
- `$context`: the numbered context blocks, `[1] (report.pdf, page 3, Intro > Scope) text`
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from string import Template

from retrieval.answerers import Citation, ScoredChunk

REFUSAL = "The documents don't cover this."

DEFAULT_TEMPLATE = f"""$instructions

Answer the user's question using only the numbered context passages below; do not use \
anything you know from elsewhere.
After each claim, cite the passage it comes from with its number in square brackets, \
for example [1] or [2][3]. Cite only numbers that appear in the context.
If the passages don't contain the answer, reply with exactly this sentence and nothing else: {REFUSAL}
Answer in the language of the question.

Context:
$context"""

NO_CONTEXT = "(No passages were found for this question.)"

# Placeholders: $history (earlier turns, one "User: ..." / "Assistant: ..." line each)
# and $question.
REWRITE_PROMPT = """Rewrite the user's last question so that it can be understood without the conversation \
before it: replace pronouns and vague references ("it", "that one", "what about ...") with what they refer to. \
Keep the question's language and meaning; add nothing else. If it already stands on its own, return it unchanged. \
Reply with the rewritten question only.

Conversation:
$history

Last question: $question"""

Message = dict[str, str]
HistoryTurn = tuple[str, str]  # (role, text), role "user" or "assistant"

_HISTORY_ROLES = {"user", "assistant"}


class PromptTooLongError(ValueError):
    """Even without history and context, the prompt doesn't fit the budget."""


@dataclass
class Prompt:
    """Chat messages that fit the budget, and what had to be left out to get there.

    `chunks` are the context blocks that made it in, numbered 1..len(chunks) in this
    order: pass them, not the retrieved list, to `map_citations`.
    """

    messages: list[Message]
    chunks: list[ScoredChunk]
    tokens: int
    history_dropped: int = 0
    chunks_dropped: int = 0


def format_context_block(n: int, chunk: ScoredChunk) -> str:
    """`[n] (document, location) text`: the location in the format's terms ("rows 18–24"), else
    `page p, heading path`, leaving out what the chunk lacks."""
    source = [chunk.document_name]
    if chunk.location:
        source.append(chunk.location)
    elif chunk.page is not None:
        source.append(f"page {chunk.page}")
    if chunk.heading_path and chunk.heading_path != chunk.location:
        source.append(chunk.heading_path)
    return f"[{n}] ({', '.join(source)}) {chunk.text.strip()}"


def render_system_prompt(template: str, instructions: str, chunks: Sequence[ScoredChunk]) -> str:
    context = "\n\n".join(format_context_block(n, chunk) for n, chunk in enumerate(chunks, start=1))
    filled = Template(template).safe_substitute(instructions=instructions.strip(), context=context or NO_CONTEXT)
    return filled.strip()


def fit_prompt(
    template: str,
    instructions: str,
    question: str,
    chunks: Sequence[ScoredChunk],
    history: Sequence[HistoryTurn],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> Prompt:
    """Messages for `question` whose contents count at most `budget_tokens` together.

    To fit, history goes first, oldest message first (an answer whose question was
    dropped goes with it); then context blocks, lowest-ranked (last) first. Only
    message contents are counted: leave room in the budget for the chat format's few
    tokens per message. Raises PromptTooLongError when the instructions and the
    question alone are over budget.
    """
    for role, _ in history:
        if role not in _HISTORY_ROLES:
            raise ValueError(f"History roles must be 'user' or 'assistant', not {role!r}.")

    kept_chunks = list(chunks)
    system = render_system_prompt(template, instructions, kept_chunks)
    system_tokens = count_tokens(system)
    question_tokens = count_tokens(question)
    turns = list(history)
    turn_tokens = [count_tokens(text) for _, text in turns]

    def total() -> int:
        return system_tokens + sum(turn_tokens) + question_tokens

    history_dropped = 0
    while turns and total() > budget_tokens:
        turns.pop(0)
        turn_tokens.pop(0)
        history_dropped += 1
        if turns and turns[0][0] == "assistant":
            turns.pop(0)
            turn_tokens.pop(0)
            history_dropped += 1

    chunks_dropped = 0
    while kept_chunks and total() > budget_tokens:
        kept_chunks.pop()
        chunks_dropped += 1
        system = render_system_prompt(template, instructions, kept_chunks)
        system_tokens = count_tokens(system)

    if total() > budget_tokens:
        raise PromptTooLongError(
            f"The instructions and the question take {total()} tokens, more than the prompt budget of "
            f"{budget_tokens}: shorten the bot's instructions or raise the budget."
        )

    messages: list[Message] = [{"role": "system", "content": system}]
    messages += [{"role": role, "content": text} for role, text in turns]
    messages.append({"role": "user", "content": question})
    return Prompt(
        messages=messages,
        chunks=kept_chunks,
        tokens=total(),
        history_dropped=history_dropped,
        chunks_dropped=chunks_dropped,
    )


def build_messages(
    template: str,
    instructions: str,
    question: str,
    chunks: Sequence[ScoredChunk],
    history: Sequence[HistoryTurn],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[Message]:
    """OpenAI chat messages (system with numbered context, history, question) within the budget.

    See `fit_prompt`, which also says which chunks made it into the prompt.
    """
    return fit_prompt(template, instructions, question, chunks, history, budget_tokens, count_tokens).messages


# "[3]" or "[1, 3]"; the horizontal space before it is taken along so a dropped
# marker doesn't leave "claim ." behind.
_CITATION_MARKER = re.compile(r"(?P<space>[ \t]*)\[(?P<numbers>\s*\d+(?:\s*,\s*\d+)*\s*)\]")


def map_citations(answer_text: str, chunks: Sequence[ScoredChunk]) -> tuple[str, list[Citation], list[int]]:
    """The answer with its [n] markers checked against the context blocks.

    Markers naming a block (1..len(chunks)) stay, "[1, 3]" and "[1][2]" included;
    numbers naming none are removed from the text and returned in `dropped` (in
    order of first appearance) for the caller to log. Citations come one per cited
    block, in order of first citation, numbered as in the text.
    """
    cited: dict[int, Citation] = {}
    dropped: list[int] = []

    def check(marker: re.Match[str]) -> str:
        numbers = [int(number) for number in marker["numbers"].split(",")]
        valid = [n for n in numbers if 1 <= n <= len(chunks)]
        for n in numbers:
            if n in valid:
                cited.setdefault(n, Citation(n=n, chunk=chunks[n - 1]))
            elif n not in dropped:
                dropped.append(n)
        if not valid:
            return ""
        if len(valid) == len(numbers):
            return marker[0]
        return f"{marker['space']}[{', '.join(str(n) for n in valid)}]"

    clean_text = _CITATION_MARKER.sub(check, answer_text).strip()
    return clean_text, list(cited.values()), dropped


# Words that carry no topic of their own: question words, auxiliaries, pronouns,
# articles, prepositions and the vaguest verbs. What remains is taken for nouns.
# fmt: off
_STOPWORDS = frozenset([
    "a", "an", "the", "and", "or", "but", "if", "then", "so", "also", "too", "as", "at", "by", "for", "from",
    "in", "into", "of", "off", "on", "onto", "out", "over", "to", "up", "with", "without", "about", "after",
    "before", "between", "during", "under", "within", "than", "via", "per",
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "whether",
    "is", "am", "are", "was", "were", "be", "been", "being", "do", "does", "did", "done", "doing",
    "have", "has", "had", "having", "can", "could", "may", "might", "must", "shall", "should", "will", "would",
    "don't", "doesn't", "didn't", "can't", "isn't", "aren't", "won't", "what's", "it's", "that's", "there's",
    "i", "me", "my", "mine", "we", "us", "our", "ours", "you", "your", "yours", "he", "him", "his", "she", "her",
    "hers", "it", "its", "they", "them", "their", "theirs", "this", "that", "these", "those", "there", "here",
    "one", "ones", "not", "no", "yes", "any", "some", "all", "each", "every", "much", "many", "more", "most",
    "less", "few", "long", "often", "else", "again", "instead", "same", "other",
    "get", "gets", "got", "getting", "make", "makes", "made", "take", "takes", "took", "need", "needs",
    "mean", "means", "say", "says", "said", "work", "works", "apply", "applies", "happen", "happens",
    "go", "goes", "use", "used", "allowed", "possible", "please", "tell", "explain", "know",
])
_BACK_REFERENCES = frozenset([
    "it", "its", "they", "them", "their", "this", "that", "these", "those", "he", "him", "his", "she", "her", "there",
])
# fmt: on
_FOLLOWUP_OPENINGS = ("and ", "what about ", "how about ", "what if ", "also ", "same for ", "but what about ")
# A question this short ("Part-time staff?") only makes sense against the one before it.
SHORT_QUESTION_WORDS = 3
MAX_CARRIED_PHRASES = 3

_WORD = re.compile(r"[\w][\w'’-]*")
_CLAUSE_BREAK = re.compile(r"[,;:.!?()\[\]\"“”]+")


def rewrite_followup(question: str, history: Sequence[HistoryTurn]) -> str:
    """`question` made to stand alone by a simple rule, without a model.

    A question that looks like a follow-up (at most three words; opens with "and",
    "what about", "how about", ...; or refers back with it/that/they/this/those and
    names no more than one thing itself) gets the key noun phrases of the previous
    user question put in front: "vacation days: And for part-time staff?". Earlier
    follow-ups are resolved the same way first, so a chain keeps its topic. Anything
    else comes back unchanged. The word lists are English.
    """
    previous: str | None = None
    for role, text in history:
        if role == "user":
            previous = _with_topic_of(text, previous)
    return _with_topic_of(question, previous)


def _with_topic_of(question: str, previous: str | None) -> str:
    if previous is None or not _looks_like_followup(question):
        return question
    # A phrase with the same last word as one of the question's own ("full-time
    # employees" against "part-time employees") is what the follow-up replaces.
    own_heads = {phrase.split()[-1].lower() for phrase in _noun_phrases(question)}
    carried = [phrase for phrase in _noun_phrases(previous) if phrase.split()[-1].lower() not in own_heads]
    carried = carried[:MAX_CARRIED_PHRASES]
    if not carried:
        return question
    return f"{', '.join(carried)}: {question.strip()}"


def _looks_like_followup(question: str) -> bool:
    words = [_normalised(word) for word in _WORD.findall(question)]
    if not words:
        return False
    if len(words) <= SHORT_QUESTION_WORDS:
        return True
    opening = " ".join(words) + " "
    if opening.startswith(_FOLLOWUP_OPENINGS):
        return True
    refers_back = any(word in _BACK_REFERENCES for word in words)
    own_topic_words = [word for word in words if word not in _STOPWORDS]
    return refers_back and len(own_topic_words) <= 1


def _normalised(word: str) -> str:
    return word.lower().replace("’", "'")


def _noun_phrases(text: str) -> list[str]:
    """Runs of consecutive topic words, in order, without repeats ("vacation days").

    Stopwords and punctuation both end a run.
    """
    phrases: list[str] = []
    for clause in _CLAUSE_BREAK.split(text):
        run: list[str] = []
        for word in [*_WORD.findall(clause), ""]:  # the empty word ends the last run
            if word and _normalised(word) not in _STOPWORDS:
                run.append(word)
                continue
            if run:
                phrase = " ".join(run)
                if phrase.lower() not in (existing.lower() for existing in phrases):
                    phrases.append(phrase)
                run = []
    return phrases


def build_rewrite_messages(question: str, history: Sequence[HistoryTurn], max_turns: int = 6) -> list[Message]:
    """Messages asking a model to rewrite `question` with REWRITE_PROMPT, from the last `max_turns` turns."""
    recent = list(history)[-max_turns:] if max_turns > 0 else []
    lines = [f"{'User' if role == 'user' else 'Assistant'}: {' '.join(text.split())}" for role, text in recent]
    prompt = Template(REWRITE_PROMPT).safe_substitute(history="\n".join(lines) or "(none)", question=question.strip())
    return [{"role": "user", "content": prompt}]
