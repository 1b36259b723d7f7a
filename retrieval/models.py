"""Per-answer traces: what was retrieved, how it scored, and how long each stage took."""

from django.db import models


class Trace(models.Model):
    """Everything needed to explain one answer after the fact.

    `chunks` holds [{"chunk_id", "document_id", "document_name", "page", "score",
    "vector_score", "keyword_score", "cited"}]; `timings_ms` maps stage → milliseconds.
    """

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="traces")
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
