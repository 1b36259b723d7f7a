"""The application layer's entry points: bots, tokens and conversations.

Views, API endpoints and management commands call these; they in turn reach the ML
layer only through documents.services and retrieval.services.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.http import Http404
from django.utils import timezone

from bots.models import ApiToken, Bot, BotConfigVersion, BotShare, Conversation, Feedback, Message
from config import metrics
from documents import services as documents
from evaluation import services as evaluation
from retrieval import services as retrieval

# The longest text a user may write into each free-text field. Bot names, conversation
# titles and token names are bounded by their columns; the rest are TextFields, bounded
# here because they are rendered on pages and put into every prompt.
BOT_NAME_MAX_CHARS = Bot._meta.get_field("name").max_length
INSTRUCTIONS_MAX_CHARS = 4000
PROMPT_TEMPLATE_MAX_CHARS = 8000
LLM_MODEL_MAX_CHARS = Bot._meta.get_field("llm_model").max_length
QUESTION_MAX_CHARS = 4000
CONVERSATION_TITLE_MAX_CHARS = Conversation._meta.get_field("title").max_length
FEEDBACK_COMMENT_MAX_CHARS = 2000
TOKEN_NAME_MAX_CHARS = ApiToken._meta.get_field("name").max_length
# Usernames and group names are at most 150 characters in django.contrib.auth.
GRANTEE_NAME_MAX_CHARS = 150


def checked_text(label: str, text: str, max_chars: int) -> str:
    """`text` if a user may store it; ValueError saying why not otherwise.

    Postgres text cannot hold NUL characters, so they are refused here with a reason
    rather than failing in the database.
    """
    if "\x00" in text:
        raise ValueError(f"{label} must not contain NUL (\\x00) characters.")
    if len(text) > max_chars:
        raise ValueError(f"{label} is too long: at most {max_chars:,} characters, not {len(text):,}.")
    return text


def visible_bots(user):
    return Bot.objects.visible_to(user)


def get_bot(user, *, pk: int | None = None, slug: str | None = None) -> Bot:
    """The bot with this id or slug if `user` may see it; Http404 otherwise (also for others' bots)."""
    lookup = {"pk": pk} if pk is not None else {"slug": slug}
    bot = visible_bots(user).filter(**lookup).first()
    if bot is None:
        raise Http404("No such bot.")
    return bot


def get_editable_bot(user, *, pk: int | None = None, slug: str | None = None) -> Bot:
    """Like get_bot, for changes: a bot the user may only chat with is 404 here too."""
    bot = get_bot(user, pk=pk, slug=slug)
    if not Bot.objects.editable_by(user).filter(pk=bot.pk).exists():
        raise Http404("No such bot.")
    return bot


def can_edit(user, bot: Bot) -> bool:
    return Bot.objects.editable_by(user).filter(pk=bot.pk).exists()


def can_delete(user, bot: Bot) -> bool:
    """Only a bot's owner or an admin may delete it: an editor shares the work, not the decision to discard it."""
    return user.is_superuser or bot.owner_id == user.pk


def delete_bot(user, bot: Bot) -> int:
    """Delete `bot` with everything that belongs to it; returns how many documents it had.

    Its documents, passages, conversations, traces, shares, test sets, runs and
    fine-tunes go with it by cascade, and its stored files once that commits. Anyone
    who may see the bot but not delete it gets PermissionDenied with the reason.
    """
    if not can_delete(user, bot):
        raise PermissionDenied("Only the bot's owner or an admin can delete it.")
    with transaction.atomic():
        # Locks the row: an upload or settings change waiting on it finds the bot gone.
        Bot.objects.select_for_update().filter(pk=bot.pk).first()
        document_count = documents.prepare_bot_deletion(bot)
        Bot.objects.filter(pk=bot.pk).delete()
    return document_count


def get_document(user, pk: int):
    """A document of a bot `user` may edit; Http404 otherwise.

    Chat-only users see a document only as the passages their answers cite, so its
    page, versions and file are as absent to them as another team's.
    """
    document = documents.documents_of_bots(Bot.objects.editable_by(user)).filter(pk=pk).first()
    if document is None:
        raise Http404("No such document.")
    return document


# Settings a bot owner edits; each save of a change is a new config version.
SETTINGS_FIELDS = [
    "name",
    "instructions",
    "provider",
    "llm_model",
    "temperature",
    "max_tokens",
    "prompt_template",
    "top_k",
    "refusal_threshold",
    "chunking_strategy",
    "chunk_size_tokens",
    "chunk_overlap_tokens",
    "embedding_model",
    "rrf_k",
    "vector_weight",
    "keyword_weight",
    "reranker",
    "judge_provider",
    "judge_model",
    "evaluate_on_change",
]
# Changing any of these means the documents must be chunked or embedded again.
INDEX_FIELDS = {"chunking_strategy", "chunk_size_tokens", "chunk_overlap_tokens", "embedding_model"}


def get_trace(user, trace_id: int):
    """A trace of a bot `user` can edit; Http404 otherwise.

    Traces carry scores, prompts and every candidate passage: chat-only users get the
    sources cited in their answers instead.
    """
    trace = (
        retrieval.traces_of_bots(Bot.objects.editable_by(user), include_evaluation=True)
        .filter(pk=trace_id)
        .select_related("bot")
        .first()
    )
    if trace is None:
        raise Http404("No such trace.")
    return trace


def can_create_bots(user) -> bool:
    """Builders (the bots.add_bot permission, directly or through a group) and admins."""
    return user.is_authenticated and user.has_perm("bots.add_bot")


def create_bot(owner, name: str, instructions: str = "") -> Bot:
    if not can_create_bots(owner):
        raise PermissionDenied("Only builders can create bots; ask an admin to make you one.")
    name = checked_text("The name", name.strip(), BOT_NAME_MAX_CHARS)
    if not name:
        raise ValueError("A bot needs a name.")
    instructions = checked_text("The instructions", instructions.strip(), INSTRUCTIONS_MAX_CHARS)
    with transaction.atomic():
        bot = Bot.objects.create(owner=owner, name=name, instructions=instructions)
        BotConfigVersion.objects.create(bot=bot, number=1, changed_by=owner, snapshot=_snapshot(bot))
    return bot


def _snapshot(bot: Bot) -> dict:
    return {field: _plain(getattr(bot, field)) for field in SETTINGS_FIELDS}


def _plain(value):
    return value.pk if hasattr(value, "pk") else value


def update_bot(bot: Bot, user, changes: dict) -> Bot:
    """Apply settings `changes` to `bot` as a new config version.

    Validates every value (ValueError with a readable message), records who
    changed what, and when chunking or the embedding model changed, bumps the
    index version and re-indexes the documents in the background; the old chunks
    keep answering until the new ones are complete.

    The reranker may be given as a registered Reranker or its name; anything that
    names no registered one raises retrieval.UnknownChoice before anything is saved.
    """
    if "reranker" in changes:
        changes = {**changes, "reranker": retrieval.get_reranker(changes["reranker"])}
    _validate_settings(bot, changes)
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        diff = {}
        for field, new in changes.items():
            old = getattr(bot, field)
            if _plain(old) != _plain(new):
                diff[field] = [_plain(old), _plain(new)]
                setattr(bot, field, new)
        if not diff:
            return bot
        bot.config_version += 1
        if INDEX_FIELDS & diff.keys():
            bot.index_version += 1
            documents.enqueue_reindex(bot.pk)
        bot.save()
        BotConfigVersion.objects.create(
            bot=bot, number=bot.config_version, changed_by=user, changes=diff, snapshot=_snapshot(bot)
        )
        if bot.evaluate_on_change:
            evaluate_default_test_set(bot, user)
    return bot


# How the history shows an empty choice of each optional model setting.
_EMPTY_CHOICE_WORDS = {
    "provider": "built-in answerer",
    "embedding_model": "installation default",
    "reranker": "none",
    "judge_provider": "no judge",
}


def settings_history(bot: Bot, form_fields: dict, limit: int = 20) -> list[dict]:
    """The bot's last saved versions, each change in the settings form's words.

    `form_fields` are the settings form's fields, for their labels: "Passage size (tokens):
    200 → 300" and "How documents are split: By headings → Sentences", never column names.
    """
    history = []
    for version in bot.config_versions.select_related("changed_by")[:limit]:
        changes = [
            {
                "label": form_fields[name].label if name in form_fields else name,
                "old": _setting_words(name, old),
                "new": _setting_words(name, new),
            }
            for name, (old, new) in version.changes.items()
        ]
        history.append(
            {
                "number": version.number,
                "created_at": version.created_at,
                "changed_by": version.changed_by.get_username() if version.changed_by else "",
                "changes": changes,
            }
        )
    return history


def _setting_words(name: str, value) -> str:
    if value is None or value == "":
        return _EMPTY_CHOICE_WORDS.get(name, "—")
    field = Bot._meta.get_field(name)
    if field.is_relation:
        related = field.related_model.objects.filter(pk=value).first()
        return str(getattr(related, "name", related)) if related else f"a removed one (#{value})"
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def evaluate_default_test_set(bot: Bot, user):
    """Run the bot's default test set against its current settings; None if it has no default set with cases.

    Called after every saved change when the bot asks for it. The run waits in the queue
    while a change re-indexes the documents (evaluation.services.waiting_for_index).
    """
    test_set = evaluation.default_test_set(bot)
    if test_set is None or not test_set.cases.exists():
        return None
    return evaluation.start_run(test_set, started_by=user)


class SettingError(ValueError):
    """A setting's value is refused; `field` names the setting, so a form can show it there."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


# (lowest, highest) of each numeric setting, and the words its message uses: the same names
# the settings form labels them with. The form's number inputs get these as min and max too.
SETTING_RANGES = {
    "top_k": (1, 50, "Passages per answer"),
    "refusal_threshold": (0.0, 1.0, "The refusal threshold"),
    "temperature": (0.0, 2.0, "Temperature"),
    "max_tokens": (16, 8192, "The longest answer"),
    "rrf_k": (1, 1000, "The fusion constant"),
    "vector_weight": (0.0, 10.0, "The weight of meaning"),
    "keyword_weight": (0.0, 10.0, "The weight of exact words"),
}
# Passage size runs from this up to what the bot's embedding model reads (max_passage_tokens).
MIN_PASSAGE_TOKENS = 32
# Two tokens of every passage the model reads are its start and end markers.
_MODEL_SPECIAL_TOKENS = 2


def max_passage_tokens(embedding_model=None) -> int:
    """The largest passage size (tokens) `embedding_model` (default: the installation's) reads whole."""
    model = embedding_model or retrieval.default_embedding_model()
    return max(MIN_PASSAGE_TOKENS, model.max_tokens - _MODEL_SPECIAL_TOKENS)


def _validate_settings(bot: Bot, changes: dict) -> None:
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise SettingError(None, f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    if "name" in changes and not str(changes["name"]).strip():
        raise SettingError("name", "A bot needs a name.")
    for field, label, max_chars in _SETTINGS_TEXT_LIMITS:
        if isinstance(changes.get(field), str):
            try:
                checked_text(label, changes[field], max_chars)
            except ValueError as exc:
                raise SettingError(field, str(exc)) from exc
    if "chunking_strategy" in changes and changes["chunking_strategy"] not in Bot.Chunking.values:
        raise SettingError("chunking_strategy", f"Chunking must be one of: {', '.join(Bot.Chunking.values)}.")
    for field, (lowest, highest, words) in SETTING_RANGES.items():
        if field in changes and not lowest <= changes[field] <= highest:
            raise SettingError(field, f"{words} must be between {lowest:g} and {highest:g}.")
    embedding_model = changes.get("embedding_model", bot.embedding_model)
    size = changes.get("chunk_size_tokens", bot.chunk_size_tokens)
    overlap = changes.get("chunk_overlap_tokens", bot.chunk_overlap_tokens)
    largest = max_passage_tokens(embedding_model)
    if {"chunk_size_tokens", "embedding_model"} & changes.keys() and not MIN_PASSAGE_TOKENS <= size <= largest:
        model = embedding_model or retrieval.default_embedding_model()
        raise SettingError(
            "chunk_size_tokens",
            f"Passage size must be between {MIN_PASSAGE_TOKENS} and {largest} tokens "
            f"(the most the embedding model {model.name} reads).",
        )
    if {"chunk_size_tokens", "chunk_overlap_tokens"} & changes.keys() and not 0 <= overlap <= size // 2:
        raise SettingError(
            "chunk_overlap_tokens", f"Passage overlap must be between 0 and {size // 2} tokens (half the passage size)."
        )
    for provider_field, model_field in (("provider", "llm_model"), ("judge_provider", "judge_model")):
        provider = changes.get(provider_field, getattr(bot, provider_field))
        model = changes.get(model_field, getattr(bot, model_field))
        if provider is not None and model and provider.model_names and model not in provider.model_names:
            raise SettingError(
                model_field, f"{provider.name} offers {', '.join(provider.model_names)}; pick one of those."
            )


_SETTINGS_TEXT_LIMITS = [
    ("name", "The name", BOT_NAME_MAX_CHARS),
    ("instructions", "The instructions", INSTRUCTIONS_MAX_CHARS),
    ("prompt_template", "The prompt template", PROMPT_TEMPLATE_MAX_CHARS),
    ("llm_model", "The language model's name", LLM_MODEL_MAX_CHARS),
    ("judge_model", "The judge model's name", LLM_MODEL_MAX_CHARS),
]


def share_bot(bot: Bot, *, username: str = "", group: str = "", role: str = BotShare.Role.USER) -> BotShare:
    """Share `bot` with one user or one group; sharing again changes the role."""
    checked_text("The user name", username, GRANTEE_NAME_MAX_CHARS)
    checked_text("The group name", group, GRANTEE_NAME_MAX_CHARS)
    if role not in BotShare.Role.values:
        raise ValueError("The role must be editor or user.")
    if bool(username) == bool(group):
        raise ValueError("Share with either a user or a group.")
    if username:
        grantee = get_user_model().objects.filter(username=username, is_active=True).first()
        if grantee is None:
            raise ValueError(f"There is no user called {username!r}.")
        if grantee.pk == bot.owner_id:
            raise ValueError(f"{username} owns this bot already.")
        share, _ = BotShare.objects.update_or_create(bot=bot, user=grantee, defaults={"role": role})
    else:
        team = Group.objects.filter(name=group).first()
        if team is None:
            raise ValueError(f"There is no group called {group!r}.")
        share, _ = BotShare.objects.update_or_create(bot=bot, group=team, defaults={"role": role})
    return share


def share_candidates(bot: Bot) -> list[str]:
    """Usernames and "group:<name>" entries to suggest in the share box."""
    users = get_user_model().objects.filter(is_active=True).exclude(pk=bot.owner_id).order_by("username")
    groups = Group.objects.order_by("name")
    return [user.get_username() for user in users[:500]] + [f"group:{group.name}" for group in groups[:200]]


def unshare_bot(bot: Bot, share_id: int) -> None:
    deleted, _ = BotShare.objects.filter(bot=bot, pk=share_id).delete()
    if not deleted:
        raise Http404("No such share.")


def shares_of(bot: Bot):
    return bot.shares.select_related("user", "group")


def conversations_of(bot: Bot, user):
    return Conversation.objects.filter(bot=bot, user=user)


def get_conversation(bot: Bot, user, pk: int) -> Conversation:
    conversation = conversations_of(bot, user).filter(pk=pk).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def rename_conversation(conversation: Conversation, title: str) -> Conversation:
    title = checked_text("The title", title.strip(), CONVERSATION_TITLE_MAX_CHARS)
    if not title:
        raise ValueError("A conversation needs a title.")
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def give_feedback(user, message_id: int, rating: int, comment: str = "") -> Feedback:
    """Thumbs up (1) or down (-1) on an answer in one of `user`'s own conversations."""
    if rating not in (1, -1):
        raise ValueError("Feedback is 1 (helpful) or -1 (not helpful).")
    comment = checked_text("The comment", comment.strip(), FEEDBACK_COMMENT_MAX_CHARS)
    message = get_answer(user, message_id)
    feedback, _ = Feedback.objects.update_or_create(
        message=message, defaults={"user": user, "rating": rating, "comment": comment}
    )
    return feedback


def get_answer(user, message_id: int) -> Message:
    """An answer in one of `user`'s own conversations with a bot they may still see; Http404 otherwise."""
    message = Message.objects.filter(
        pk=message_id, role=Message.Role.ASSISTANT, conversation__user=user, conversation__bot__in=visible_bots(user)
    ).first()
    if message is None:
        raise Http404("No such answer.")
    return message


def feedback_of(bot: Bot):
    return Feedback.objects.filter(message__conversation__bot=bot).select_related("message", "user")


def feedback_to_case(bot: Bot, feedback_id: int, *, created_by=None):
    """A thumbs-down answer to `bot` as a test case of it: (case, created). Check the caller may edit `bot`.

    A follow-up ("and for part-timers?") is taken as the standalone question the bot
    searched with, so the case makes sense without the conversation.
    """
    feedback = (
        Feedback.objects.filter(pk=feedback_id, rating=-1, message__conversation__bot=bot)
        .select_related("message__in_reply_to", "message__trace")
        .first()
    )
    if feedback is None:
        raise Http404("No such feedback.")
    message = feedback.message
    question = (message.trace.rewritten_question if message.trace else "") or (
        message.in_reply_to.text if message.in_reply_to else ""
    )
    if not question.strip():
        raise ValueError("This answer's question was not kept, so it cannot become a test case.")
    return evaluation.add_feedback_case(bot, question, created_by=created_by)


def tokens_of(user):
    return ApiToken.objects.filter(user=user).order_by("-created_at")


def create_token(user, name: str) -> tuple[ApiToken, str]:
    """A new API token for `user`; the plain key is returned once and never stored."""
    name = checked_text("The token name", name.strip(), TOKEN_NAME_MAX_CHARS) or "API token"
    return ApiToken.issue(user, name=name)


def revoke_token(user, token_id: int) -> None:
    revoked = ApiToken.objects.filter(user=user, pk=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if not revoked:
        raise Http404("No such token.")


def user_for_token(key: str):
    """The active user a bearer token belongs to, recording its use; None if unknown or revoked."""
    token = ApiToken.objects.active().select_related("user").filter(key_hash=ApiToken.hash_key(key)).first()
    if token is None:
        return None
    token.touch()
    return token.user


def ask(bot: Bot, user, text: str, conversation_id: int | None = None) -> tuple[Conversation, Message]:
    """Put `text` to `bot` in a new or existing conversation of `user`; returns the stored answer."""
    reply = None
    for event in ask_stream(bot, user, text, conversation_id):
        if event.kind == "done":
            reply = event.message
    return reply.conversation, reply


@dataclass
class ChatEvent:
    """A piece of a streamed reply ("token"), or the stored reply itself ("done")."""

    kind: str
    text: str = ""
    message: Message | None = None


def post_question(bot: Bot, user, text: str, conversation_id: int | None = None) -> Message:
    """Store `user`'s question in a new or existing conversation; answer it with answer_stream()."""
    text = checked_text("The question", text.strip(), QUESTION_MAX_CHARS)
    if not text:
        raise ValueError("Ask a question first.")
    with transaction.atomic():
        if conversation_id is None:
            conversation = Conversation.objects.create(bot=bot, user=user, title=text[:CONVERSATION_TITLE_MAX_CHARS])
        else:
            conversation = Conversation.objects.filter(bot=bot, user=user, pk=conversation_id).first()
            if conversation is None:
                raise Http404("No such conversation.")
        return Message.objects.create(conversation=conversation, role=Message.Role.USER, text=text)


def unanswered_question(user, bot: Bot, message_id: int) -> Message:
    """A question of `user` to `bot`; Http404 for anyone else's."""
    question = (
        Message.objects.filter(pk=message_id, role=Message.Role.USER, conversation__bot=bot, conversation__user=user)
        .select_related("conversation")
        .first()
    )
    if question is None:
        raise Http404("No such question.")
    return question


def answer_stream(question: Message):
    """Answer a stored question as ChatEvents: tokens as they come, then the stored reply.

    A question gets exactly one answer and one trace, however many readers ask for it at
    once (a reloaded page, a second tab, a retrying client): the first takes the question's
    lock and produces the answer; the others wait for it and get just the stored reply.
    """
    reply = Message.objects.filter(in_reply_to=question).first()
    if reply is None:
        with _answering(question.pk):
            # Whoever held the lock before us may have answered while we waited.
            reply = Message.objects.filter(in_reply_to=question).first()
            if reply is None:
                reply = yield from _produce_answer(question)
    # Released before the last event: a caller that stops reading at "done" holds no lock.
    if reply is not None:
        yield ChatEvent("done", message=reply)


# Namespace of the Postgres advisory locks taken on questions being answered (any fixed int4).
_ANSWER_LOCK_CLASS = 0x646F63
# How long a second reader waits for the first one's answer; LLM calls time out well before.
ANSWER_WAIT_SECONDS = 600


class AnswerBusy(RuntimeError):
    """The question is still being answered by another request after ANSWER_WAIT_SECONDS."""


@contextmanager
def _answering(question_id: int, wait_seconds: float = ANSWER_WAIT_SECONDS):
    """Hold the advisory lock of one question while answering it.

    A session-level lock rather than a row lock: producing an answer takes seconds and
    streams, and must not hold a transaction open. Postgres drops the lock with the
    connection, so a killed request never leaves a question locked.
    """
    key = [_ANSWER_LOCK_CLASS, question_id % 2**31]
    deadline = time.monotonic() + wait_seconds
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
            if cursor.fetchone()[0]:
                break
            if time.monotonic() > deadline:
                raise AnswerBusy("This question is still being answered; reload the page in a moment.")
            time.sleep(0.1)
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        except DatabaseError:
            connection.close()  # closing the session releases its locks too


NO_DOCUMENTS_ANSWER = "This bot has no documents yet, so I have nothing to answer from. Ask again once they are added."


def has_searchable_documents(bot: Bot) -> bool:
    """Whether any of `bot`'s documents has an indexed version answering questions."""
    return documents.documents_of_bots([bot]).filter(active_version__isnull=False).exists()


def _produce_answer(question: Message):
    """Yield the answer's "token" events; return the stored reply (None if the pipeline gave none)."""
    conversation = question.conversation
    if not documents.documents_of_bots([conversation.bot]).exists():
        # Not "the documents don't cover it": there are none. Nothing was searched, so no trace.
        yield ChatEvent("token", NO_DOCUMENTS_ANSWER)
        metrics.ANSWERS.labels("no_documents").inc()  # no trace to count it by (config.metrics.count_answer)
        with transaction.atomic():
            reply = Message.objects.create(
                conversation=conversation, role=Message.Role.ASSISTANT, text=NO_DOCUMENTS_ANSWER, in_reply_to=question
            )
            conversation.save(update_fields=["updated_at"])
        return reply
    history = [
        (message.role, message.text)
        for message in conversation.messages.filter(created_at__lte=question.created_at)
        .exclude(pk=question.pk)
        .order_by("created_at", "id")
    ]
    for event in retrieval.answer_stream(conversation.bot, question.text, history, asked_by=conversation.user):
        if event.kind == "token":
            yield ChatEvent("token", event.text)
            continue
        with transaction.atomic():
            reply = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                text=event.answer.text,
                citations=[citation_json(citation) for citation in event.answer.citations],
                trace=event.trace,
                in_reply_to=question,
            )
            conversation.save(update_fields=["updated_at"])
        return reply
    return None


def ask_stream(bot: Bot, user, text: str, conversation_id: int | None = None):
    """post_question() then answer_stream(): the API's chat, streamed or not."""
    yield from answer_stream(post_question(bot, user, text, conversation_id))


def citation_json(citation) -> dict:
    return {
        "n": citation.n,
        "chunk_id": citation.chunk.chunk_id,
        "document_id": citation.chunk.document_id,
        "document_name": citation.chunk.document_name,
        "page": citation.chunk.page,
        "heading_path": citation.chunk.heading_path,
        "location": citation.chunk.location,
        "snippet": citation.snippet,
        "sentences": list(citation.sentences),
        "passage": citation.chunk.text,
    }
