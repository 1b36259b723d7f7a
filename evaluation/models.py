"""Test sets of a bot, evaluation runs against one of its config versions, each case's result, and fine-tunes."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone


class TestSet(models.Model):
    """Questions a bot should answer (or refuse), with the documents that hold each answer."""

    __test__ = False  # not a pytest test class, despite the name

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="test_sets")
    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    is_default = models.BooleanField(default=False, help_text="The set run after every settings change.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["bot", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["bot", "name"], name="unique_test_set_name"),
            models.UniqueConstraint(
                fields=["bot"], condition=models.Q(is_default=True), name="one_default_test_set_per_bot"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TestCase(models.Model):
    """One question; answerable ones name the documents (optionally pages) that answer it."""

    __test__ = False

    class Generator(models.TextChoices):
        TYPED = "typed"
        CSV = "csv"
        JSONL = "jsonl"
        BEIR = "beir"
        FEEDBACK = "feedback"
        RULE_BASED = "rule-based"
        LLM = "llm"

    test_set = models.ForeignKey(TestSet, on_delete=models.CASCADE, related_name="cases")
    question = models.TextField()
    expected_documents = models.ManyToManyField("documents.Document", blank=True, related_name="+")
    # {document id (str): grade}; grades above 1 come from graded qrels (BEIR). Empty means grade 1 each.
    grades = models.JSONField(default=dict, blank=True)
    pages = models.JSONField(default=list, blank=True, help_text="Optional expected page numbers.")
    reference_answer = models.TextField(blank=True)
    answerable = models.BooleanField(default=True)
    generator = models.CharField(max_length=20, choices=Generator.choices, default=Generator.TYPED)
    external_id = models.CharField(max_length=200, blank=True, help_text="The query id of an imported set.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["test_set", "position", "id"]

    def __str__(self) -> str:
        return self.question[:80]


class EvaluationRun(models.Model):
    """A test set run against a bot at one config version.

    Status moves queued → running → done, or to failed from queued or running.
    The transitions are start(), advance(), finish() and fail(); each saves at once,
    so the page sees progress and a crash leaves the last state behind.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    FINAL_STATUSES = {Status.DONE, Status.FAILED}

    test_set = models.ForeignKey(TestSet, on_delete=models.CASCADE, related_name="runs")
    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="evaluation_runs")
    config_version = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    cases_total = models.PositiveIntegerField(default=0)
    cases_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # {"provider": name, "model": name} of the LLM judge the run used; empty without one.
    judge = models.JSONField(default=dict, blank=True)
    mlflow_run_id = models.CharField(max_length=64, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.test_set} on {self.bot} v{self.config_version} ({self.status})"

    @property
    def progress(self) -> float:
        if self.status == self.Status.DONE:
            return 1.0
        return round(self.cases_done / self.cases_total, 4) if self.cases_total else 0.0

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    def start(self, cases_total: int) -> None:
        self._require({self.Status.QUEUED}, "start")
        self.status, self.cases_total, self.cases_done = self.Status.RUNNING, cases_total, 0
        self.started_at = timezone.now()
        self.save(update_fields=["status", "cases_total", "cases_done", "started_at"])

    def advance(self) -> None:
        self._require({self.Status.RUNNING}, "record a case of")
        self.cases_done += 1
        self.save(update_fields=["cases_done"])

    def finish(self, metrics: dict) -> None:
        self._require({self.Status.RUNNING}, "finish")
        self.status, self.metrics, self.finished_at = self.Status.DONE, metrics, timezone.now()
        self.save(update_fields=["status", "metrics", "finished_at"])

    def fail(self, reason: str) -> None:
        self._require({self.Status.QUEUED, self.Status.RUNNING}, "fail")
        self.status, self.error, self.finished_at = self.Status.FAILED, reason, timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])

    def _require(self, allowed: set, action: str) -> None:
        if self.status not in allowed:
            raise ValueError(f"Cannot {action} an evaluation run that is {self.status}.")


class CaseResult(models.Model):
    """What the bot did with one case in one run."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(TestCase, on_delete=models.CASCADE, related_name="results")
    retrieved_chunks = models.JSONField(default=list, help_text="Chunk ids, best first.")
    retrieved_documents = models.JSONField(default=list, help_text="The document id of each retrieved chunk.")
    first_relevant_rank = models.PositiveIntegerField(
        null=True, blank=True, help_text="Rank of the first expected document among the distinct retrieved ones."
    )
    answer = models.TextField(blank=True)
    # [{"n", "chunk_id", "document_id", "page"}, ...]
    citations = models.JSONField(default=list, blank=True)
    refused = models.BooleanField(default=False)
    trace = models.ForeignKey(
        "retrieval.Trace", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The answer's trace: what was retrieved and why.",
    )  # fmt: skip
    timings_ms = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="This case's retrieval metrics.")
    # The LLM judge's verdict: {"faithfulness", "relevance", "reasoning"}; empty without a judge.
    judgement = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "case__position", "case_id"]
        constraints = [models.UniqueConstraint(fields=["run", "case"], name="one_result_per_case_and_run")]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.case}"


class FineTune(models.Model):
    """A bot's embedding model fine-tuned on the bot's own text, and how it did on held-out cases.

    Status moves queued → running → done, or to failed from queued or running; a task
    delivered again after its worker died starts a running fine-tune over (start() counts
    the attempts). The transitions are start(), prepare(), advance(), finish() and fail();
    each saves at once, so the page sees progress and a crash leaves the last state behind.
    A done fine-tune that is promotable may be promoted once (mark_promoted()).

    The trained model lives in $DOCENT_DATA_DIR/models/<model_path>/ with a metrics.json.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Pairs(models.TextChoices):
        TEST_SET = "test-set"
        INVERSE_CLOZE = "inverse-cloze"

    FINAL_STATUSES = {Status.DONE, Status.FAILED}

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="fine_tunes")
    test_set = models.ForeignKey(TestSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="fine_tunes")
    pairs_source = models.CharField(max_length=20, choices=Pairs.choices)
    # The model it was trained from and compared with: promotion needs the bot to still embed with it.
    base_model = models.ForeignKey(
        "retrieval.EmbeddingModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The embedding model registered from it on promotion.
    embedding_model = models.ForeignKey(
        "retrieval.EmbeddingModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="fine_tunes"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    epochs = models.PositiveSmallIntegerField(default=1)
    progress = models.FloatField(default=0.0)
    steps_done = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=0)
    pair_count = models.PositiveIntegerField(default=0)
    held_out_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    baseline = models.JSONField(default=dict, blank=True, help_text="The current model's held-out metrics.")
    candidate = models.JSONField(default=dict, blank=True, help_text="The fine-tuned model's held-out metrics.")
    promotable = models.BooleanField(default=False)
    model_path = models.CharField(max_length=300, blank=True, help_text="Relative to $DOCENT_DATA_DIR/models/.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Fine-tune {self.pk} of {self.bot} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def folder(self) -> Path | None:
        """The trained model's folder, or None before it has one."""
        return models_root() / self.model_path if self.model_path else None

    def start(self) -> None:
        self._require({self.Status.QUEUED, self.Status.RUNNING}, "start")
        self.status, self.progress, self.steps_done = self.Status.RUNNING, 0.0, 0
        self.attempts += 1
        self.started_at = timezone.now()
        self.save(update_fields=["status", "progress", "steps_done", "attempts", "started_at"])

    def prepare(self, *, pair_count: int, held_out_count: int, steps_total: int, model_path: str) -> None:
        self._require({self.Status.RUNNING}, "prepare")
        self.pair_count, self.held_out_count, self.steps_total = pair_count, held_out_count, steps_total
        self.model_path = model_path
        self.save(update_fields=["pair_count", "held_out_count", "steps_total", "model_path"])

    def advance(self, progress: float, steps_done: int | None = None) -> None:
        self._require({self.Status.RUNNING}, "record progress of")
        self.progress = round(min(max(progress, 0.0), 1.0), 4)
        if steps_done is not None:
            self.steps_done = steps_done
        self.save(update_fields=["progress", "steps_done"])

    def finish(self, *, baseline: dict, candidate: dict, promotable: bool) -> None:
        self._require({self.Status.RUNNING}, "finish")
        self.status, self.progress, self.finished_at = self.Status.DONE, 1.0, timezone.now()
        self.baseline, self.candidate, self.promotable = baseline, candidate, promotable
        self.save(update_fields=["status", "progress", "finished_at", "baseline", "candidate", "promotable"])

    def fail(self, reason: str) -> None:
        self._require({self.Status.QUEUED, self.Status.RUNNING}, "fail")
        self.status, self.error, self.finished_at = self.Status.FAILED, reason, timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])

    def mark_promoted(self, embedding_model) -> None:
        if self.status != self.Status.DONE or not self.promotable or self.promoted_at is not None:
            raise ValueError("Only a done, promotable fine-tune that was not promoted yet can be promoted.")
        self.embedding_model, self.promoted_at = embedding_model, timezone.now()
        self.save(update_fields=["embedding_model", "promoted_at"])

    def _require(self, allowed: set, action: str) -> None:
        if self.status not in allowed:
            raise ValueError(f"Cannot {action} a fine-tune that is {self.status}.")


def models_root() -> Path:
    """Where fine-tuned models are kept: $DOCENT_DATA_DIR/models/."""
    return Path(settings.DATA_DIR) / "models"
