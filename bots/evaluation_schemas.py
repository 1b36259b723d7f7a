"""Request and response shapes of the evaluation API (see ARCHITECTURE.md: keep them stable)."""

from datetime import datetime

from ninja import Field, Schema

from bots.schemas import Input
from bots.services import QUESTION_MAX_CHARS


class CaseIn(Input):
    question: str = Field(max_length=QUESTION_MAX_CHARS)
    expected_documents: list[str] = Field(default_factory=list, max_length=100)
    pages: list[int] = Field(default_factory=list, max_length=100)
    reference_answer: str = Field("", max_length=20_000)
    answerable: bool = True


class TestSetIn(Input):
    __test__ = False

    name: str = Field(max_length=200)
    cases: list[CaseIn] = Field(max_length=10_000)
    is_default: bool = False


class TestSetOut(Schema):
    __test__ = False

    id: int
    name: str
    case_count: int
    is_default: bool
    created_at: datetime


class RunStarted(Schema):
    id: int
    status: str


class RunOut(Schema):
    id: int
    test_set: int
    status: str
    progress: float
    config_version: int
    metrics: dict
    error: str = Field(description="Why a failed run stopped; on a done run, a note (e.g. not logged to MLflow).")
    judge: dict = Field(description='{"provider", "model"} of the LLM judge the run used; {} without one.')
    mlflow_run_id: str = Field(description="The MLflow run this run was logged to; empty when not logged.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RetrievedDocument(Schema):
    id: int
    filename: str


class CaseResultOut(Schema):
    case_id: int
    question: str
    answerable: bool
    expected_documents: list[RetrievedDocument]
    first_relevant_rank: int | None
    retrieved_documents: list[RetrievedDocument]
    answer: str
    citations: list[dict]
    refused: bool
    trace_id: int | None = Field(None, description="The answer's trace (GET /api/v1/traces/{id}).")
    timings_ms: dict
    metrics: dict
    # The LLM judge's {"faithfulness", "relevance", "reasoning"} (or {"error"}); {} without a judge.
    judgement: dict = Field(default_factory=dict)


class ComparisonOut(Schema):
    a: int
    b: int
    metric_deltas: dict[str, float | None]
    config_diff: dict[str, list]
    improved: list[dict]
    regressed: list[dict]


class FineTuneIn(Input):
    test_set: int | None = Field(None, description="Learn from this test set's cases; without, from the documents.")
    epochs: int = Field(1, ge=1, le=10)


class FineTuneStarted(Schema):
    id: int
    status: str


class FineTuneOut(Schema):
    id: int
    bot: int
    test_set: int | None
    pairs_source: str
    status: str
    progress: float
    epochs: int
    steps_done: int
    steps_total: int
    pair_count: int
    held_out_count: int
    base_model: str | None
    baseline: dict
    candidate: dict
    promotable: bool
    promoted: bool
    embedding_model: str | None
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    promoted_at: datetime | None


class PromotedOut(Schema):
    fine_tune: int
    embedding_model: str
    dimensions: int
    config_version: int
    index_version: int
