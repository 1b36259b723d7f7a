"""Request and response shapes of the public API (see ARCHITECTURE.md: keep them stable)."""

from datetime import datetime
from typing import Literal

from ninja import Field, Schema
from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

from bots.services import (
    BOT_NAME_MAX_CHARS,
    CONVERSATION_TITLE_MAX_CHARS,
    FEEDBACK_COMMENT_MAX_CHARS,
    GRANTEE_NAME_MAX_CHARS,
    INSTRUCTIONS_MAX_CHARS,
    LLM_MODEL_MAX_CHARS,
    PROMPT_TEMPLATE_MAX_CHARS,
    QUESTION_MAX_CHARS,
)


class Input(Schema):
    """Base of every request body: no text anywhere in it may contain a NUL character.

    Postgres text cannot hold NUL, so without this a NUL in any field was a 500 from the
    database; here it is a 422 naming the field, for every schema at once.

    Nor may the body be anything but a JSON object: ninja's Schema reads fields as
    attributes of whatever it is given, so the string "quarterly report" renamed a
    conversation to "Quarterly Report" (str.title()) and a list was a PATCH changing nothing.
    """

    @model_validator(mode="wrap")
    @classmethod
    def _run_root_validator(cls, values, handler, info):
        # Replaces ninja's validator of the same name (a validator of our own would only see
        # its wrapper around the body), checks the body, then hands it on to ninja's.
        if not isinstance(values, dict):
            raise PydanticCustomError("object_type", "Send a JSON object with the fields by name.")
        return super()._run_root_validator(values, handler, info)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value):
        if _has_nul(value):
            raise PydanticCustomError("nul_character", "Text must not contain NUL (\\x00) characters.")
        return value


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    return False


class ErrorOut(Schema):
    """Every refusal's body: a 4xx (or 503) with one sentence saying what was wrong."""

    detail: str


class FieldErrorOut(Schema):
    type: str = Field(description='What kind of problem: "missing", "int_parsing", "string_too_long", ...')
    loc: list[str | int] = Field(description='Where: the part of the request, then the field ("body", "payload").')
    msg: str


class InvalidRequestOut(Schema):
    """A request whose parameters or body don't fit the schema (a 422): each problem with its place."""

    detail: list[FieldErrorOut]


class BotIn(Input):
    name: str = Field(min_length=1, max_length=BOT_NAME_MAX_CHARS)
    instructions: str = Field("", max_length=INSTRUCTIONS_MAX_CHARS)


class BotOut(Schema):
    id: int
    slug: str
    name: str
    instructions: str
    owner: str
    top_k: int
    refusal_threshold: float
    chunking_strategy: str
    chunk_size_tokens: int
    chunk_overlap_tokens: int
    embedding_model: str | None
    provider: str | None
    llm_model: str
    temperature: float
    max_tokens: int
    rrf_k: int
    vector_weight: float
    keyword_weight: float
    reranker: str = Field(description="The registered reranker's name; empty when the bot doesn't rerank.")
    judge_provider: str | None = Field(description="The LLM provider whose model grades answers in evaluation runs.")
    judge_model: str
    evaluate_on_change: bool = Field(description="Whether every settings change runs the default test set.")
    config_version: int
    index_version: int
    created_at: datetime

    @staticmethod
    def resolve_owner(bot) -> str:
        return bot.owner.get_username()

    @staticmethod
    def resolve_provider(bot) -> str | None:
        return bot.provider.name if bot.provider_id else None

    @staticmethod
    def resolve_embedding_model(bot) -> str | None:
        return bot.embedding_model.name if bot.embedding_model_id else None

    @staticmethod
    def resolve_reranker(bot) -> str:
        return bot.reranker.name if bot.reranker_id else ""

    @staticmethod
    def resolve_judge_provider(bot) -> str | None:
        return bot.judge_provider.name if bot.judge_provider_id else None


class BotPatch(Input):
    """Any subset of the bot's settings; each PATCH that changes something is a new config_version.

    Only the model choices take null (for none, or the default); a null anywhere else was a
    500 from the database or a comparison with None, so those fields default to None only
    when left out and refuse an explicit null with a 422.
    """

    name: str = Field(None, min_length=1, max_length=BOT_NAME_MAX_CHARS)
    instructions: str = Field(None, max_length=INSTRUCTIONS_MAX_CHARS)
    top_k: int = None
    refusal_threshold: float = None
    chunking_strategy: str = None
    chunk_size_tokens: int = None
    chunk_overlap_tokens: int = None
    embedding_model: str | None = Field(None, description="An embedding model's name, as listed by admins.")
    provider: str | None = Field(None, description="An LLM provider's name; empty string for the built-in answerer.")
    llm_model: str = Field(None, max_length=LLM_MODEL_MAX_CHARS)
    temperature: float = None
    max_tokens: int = None
    prompt_template: str = Field(None, max_length=PROMPT_TEMPLATE_MAX_CHARS)
    rrf_k: int = None
    vector_weight: float = None
    keyword_weight: float = None
    reranker: str | None = Field(
        None,
        max_length=100,
        description="The name of a reranker an admin registered in the Console (not an id, never a path); "
        "empty string or null for none. Any other value is refused with 422.",
    )
    judge_provider: str | None = Field(
        None, description="An LLM provider's name to grade answers in evaluation runs; empty string for none."
    )
    judge_model: str = Field(None, max_length=LLM_MODEL_MAX_CHARS)
    evaluate_on_change: bool = Field(
        None, description="Run the default test set (Quality tab) after every settings change."
    )


class VersionOut(Schema):
    number: int
    content_hash: str
    size_bytes: int
    created_at: datetime


class DocumentOut(Schema):
    id: int
    bot_id: int
    filename: str
    status: str
    progress: float
    chunk_count: int
    error: str
    error_kind: str
    notes: str
    version: int
    active_version: int | None
    versions: list[VersionOut]
    content_hash: str
    pages_total: int
    pages_done: int
    chunks_total: int
    chunks_done: int
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_version(document) -> int:
        return document.current_version.number if document.current_version else 0

    @staticmethod
    def resolve_active_version(document) -> int | None:
        return document.active_version.number if document.active_version else None

    @staticmethod
    def resolve_versions(document) -> list:
        return list(document.versions.order_by("-number"))

    @staticmethod
    def resolve_content_hash(document) -> str:
        return document.current_version.content_hash if document.current_version else ""


class LeftOutOut(Schema):
    filename: str = Field(description="The file's path inside the archive.")
    reason: str


class UploadOut(Schema):
    """One file of an upload, in the order sent.

    A stored file has its document's id, status (`queued`, or the current status when
    `unchanged`) and version. A file that was not stored while others were (a kind of file
    Docent can't read, or one the server could not write) has `"status": "refused"`, a null
    id and version, and the reason in `error`; no document is created for it. When no file
    can be stored the answer is a 415 (no file Docent can read) or 422 `{"detail": ...}`
    naming each file instead.

    A ZIP archive has an entry with `"status": "unpacked"`, a null id, a summary in
    `message` and the files left out (with their reasons) in `left_out`; the documents
    made from it follow it, named with their folders and with the archive's name in `archive`.
    """

    id: int | None = Field(description="The document's id; null for a refused file or an unpacked archive.")
    filename: str
    status: str = Field(
        description='The document\'s status; "refused" for a file that was not stored; "unpacked" for a ZIP archive.'
    )
    version: int | None = None
    unchanged: bool = False
    error: str = Field("", description="Why a refused file was not stored; empty otherwise.")
    archive: str | None = Field(None, description="For a document unpacked from a ZIP archive: the archive's name.")
    message: str = Field("", description="For an unpacked archive: what was added and what was left out, and why.")
    left_out: list[LeftOutOut] = Field([], description="For an unpacked archive: the files in it not added.")


class UploadErrorOut(Schema):
    detail: str = Field(
        description="Why nothing was stored: 409 the bot is full, 413 a file or the number of files is over "
        "the limit, 415 no file is of a kind Docent can read (each named with its reason), 422 no file could "
        "be stored (each named with its reason), 507 the server has no room to receive the files."
    )


class RollbackIn(Input):
    version: int


class SearchIn(Input):
    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(8, ge=1, le=50)
    document_ids: list[int] | None = None


class SearchHit(Schema):
    chunk_id: int
    document_id: int
    document_name: str
    page: int | None
    heading_path: str
    location: str = Field("", description='Where the passage is: "page 3", "rows 18–24", "Benefits › Dental".')
    score: float
    vector_score: float | None
    keyword_score: float | None
    text: str


class SearchOut(Schema):
    results: list[SearchHit]
    timings_ms: dict[str, float]


class ChatIn(Input):
    message: str = Field(min_length=1, max_length=QUESTION_MAX_CHARS)
    conversation_id: int | None = None
    stream: bool = False


class CitationOut(Schema):
    n: int
    document_id: int
    document_name: str
    page: int | None
    location: str = Field(
        "",
        description='Where the passage is, in its format\'s terms: "page 3" (PDF), "rows 18–24" (CSV), '
        '"Benefits › Dental" (the headings of a web page, Markdown or Word document); empty when nothing '
        "more precise than the document can be said.",
    )
    chunk_id: int
    snippet: str
    passage: str = Field("", description="The whole passage the answer quotes from.")


class ChatOut(Schema):
    conversation_id: int
    message_id: int
    answer: str
    citations: list[CitationOut]
    trace_id: int | None = Field(description="The answer's trace, for the bot's editors; null for chat-only users.")


class TraceOut(Schema):
    id: int
    question: str
    rewritten_question: str
    answer: str
    chunks: list[dict]
    prompt: str
    provider: str
    model: str
    timings_ms: dict
    tokens: dict
    config_version: int
    refused: bool
    created_at: datetime


class ShareIn(Input):
    user: str = Field("", max_length=GRANTEE_NAME_MAX_CHARS)
    group: str = Field("", max_length=GRANTEE_NAME_MAX_CHARS)
    role: Literal["user", "editor"] = "user"


class ShareOut(Schema):
    id: int
    user: str | None
    group: str | None
    role: str
    created_at: datetime

    @staticmethod
    def resolve_user(share) -> str | None:
        return share.user.get_username() if share.user_id else None

    @staticmethod
    def resolve_group(share) -> str | None:
        return share.group.name if share.group_id else None


class ConversationOut(Schema):
    id: int
    bot_id: int
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationPatch(Input):
    title: str = Field(min_length=1, max_length=CONVERSATION_TITLE_MAX_CHARS)


class FeedbackIn(Input):
    rating: Literal[1, -1] = Field(description="1 helpful, -1 not helpful")
    comment: str = Field("", max_length=FEEDBACK_COMMENT_MAX_CHARS)


class FeedbackOut(Schema):
    message_id: int
    rating: int
    comment: str
