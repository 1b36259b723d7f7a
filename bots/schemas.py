"""Request and response shapes of the public API (see ARCHITECTURE.md: keep them stable)."""

from datetime import datetime

from ninja import Field, Schema


class BotIn(Schema):
    name: str = Field(min_length=1, max_length=120)
    instructions: str = ""


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


class BotPatch(Schema):
    """Any subset of the bot's settings; each PATCH that changes something is a new config_version."""

    name: str | None = Field(None, min_length=1, max_length=120)
    instructions: str | None = None
    top_k: int | None = None
    refusal_threshold: float | None = None
    chunking_strategy: str | None = None
    chunk_size_tokens: int | None = None
    chunk_overlap_tokens: int | None = None
    embedding_model: str | None = Field(None, description="An embedding model's name, as listed by admins.")
    provider: str | None = Field(None, description="An LLM provider's name; empty string for the built-in answerer.")
    llm_model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    prompt_template: str | None = None
    rrf_k: int | None = None
    vector_weight: float | None = None
    keyword_weight: float | None = None
    reranker: str | None = Field(
        None,
        max_length=100,
        description="The name of a reranker an admin registered in the Console (not an id, never a path); "
        "empty string or null for none. Any other value is refused with 422.",
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


class UploadOut(Schema):
    """One file of an upload, in the order sent.

    A stored file has its document's id, status (`queued`, or the current status when
    `unchanged`) and version. A file that could not be stored while others were has
    `"status": "refused"`, a null id and version, and the reason in `error`; when no
    file can be stored the answer is a 422 `{"detail": ...}` naming each file instead.
    """

    id: int | None = Field(description="The document's id; null for a refused file.")
    filename: str
    status: str = Field(description='The document\'s status, or "refused" for a file that was not stored.')
    version: int | None = None
    unchanged: bool = False
    error: str = Field("", description="Why a refused file was not stored; empty otherwise.")


class UploadErrorOut(Schema):
    detail: str = Field(
        description="Why nothing was stored: 409 the bot is full, 413 a file or the number of files is over "
        "the limit, 422 no file could be stored (each named with its reason), 507 the server has no room "
        "to receive the files."
    )


class RollbackIn(Schema):
    version: int


class SearchIn(Schema):
    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(8, ge=1, le=50)
    document_ids: list[int] | None = None


class SearchHit(Schema):
    chunk_id: int
    document_id: int
    document_name: str
    page: int | None
    heading_path: str
    score: float
    vector_score: float | None
    keyword_score: float | None
    text: str


class SearchOut(Schema):
    results: list[SearchHit]
    timings_ms: dict[str, float]


class ChatIn(Schema):
    message: str = Field(min_length=1, max_length=4000)
    conversation_id: int | None = None
    stream: bool = False


class CitationOut(Schema):
    n: int
    document_id: int
    document_name: str
    page: int | None
    chunk_id: int
    snippet: str


class ChatOut(Schema):
    conversation_id: int
    message_id: int
    answer: str
    citations: list[CitationOut]
    trace_id: int | None


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


class ShareIn(Schema):
    user: str = ""
    group: str = ""
    role: str = "user"


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


class ConversationPatch(Schema):
    title: str = Field(min_length=1, max_length=200)


class FeedbackIn(Schema):
    rating: int = Field(description="1 helpful, -1 not helpful")
    comment: str = ""


class FeedbackOut(Schema):
    message_id: int
    rating: int
    comment: str
