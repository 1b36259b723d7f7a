"""The application layer's tables: bots, API tokens, conversations and messages."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

# How often a token's last use is written (ApiToken.touch).
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


class BotQuerySet(models.QuerySet):
    def visible_to(self, user) -> BotQuerySet:
        """Bots `user` may see: own, shared with them or a group of theirs, or all for admins.

        Every lookup of a bot goes through here (or editable_by). Anything outside it is
        answered with 404, never 403, so an outsider cannot even learn that a bot exists.
        """
        return self._reachable_by(user, roles=[BotShare.Role.EDITOR, BotShare.Role.USER])

    def editable_by(self, user) -> BotQuerySet:
        """Bots whose settings, documents and sharing `user` may change (a subset of visible_to)."""
        return self._reachable_by(user, roles=[BotShare.Role.EDITOR])

    def _reachable_by(self, user, roles: list[str]) -> BotQuerySet:
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.all()
        shared = BotShare.objects.filter(role__in=roles).filter(Q(user=user) | Q(group__user=user))
        return self.filter(Q(owner=user) | Q(pk__in=shared.values("bot_id")))


class Bot(models.Model):
    """A chatbot over a set of documents.

    The chunking and retrieval settings live here because a bot owner tunes them;
    the ML layer reads them through documents.services / retrieval.services.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bots")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    instructions = models.TextField(blank=True, help_text="What the bot is for and how it should answer.")

    class Chunking(models.TextChoices):
        STRUCTURE = "structure", "By headings and paragraphs"
        FIXED = "fixed", "Fixed-size windows"
        SENTENCE = "sentence", "Sentence windows"

    chunking_strategy = models.CharField(max_length=20, choices=Chunking.choices, default=Chunking.STRUCTURE)
    chunk_size_tokens = models.PositiveIntegerField(default=200)
    chunk_overlap_tokens = models.PositiveIntegerField(default=40)
    embedding_model = models.ForeignKey(
        "retrieval.EmbeddingModel", null=True, blank=True, on_delete=models.PROTECT, related_name="bots"
    )
    index_version = models.PositiveIntegerField(
        default=1, help_text="Bumped when chunking or embedding settings change; documents are re-indexed to it."
    )
    top_k = models.PositiveIntegerField(default=5)
    rrf_k = models.PositiveIntegerField(default=60, help_text="Reciprocal-rank fusion constant.")
    vector_weight = models.FloatField(default=1.0)
    keyword_weight = models.FloatField(default=1.0)
    reranker = models.ForeignKey(
        "retrieval.Reranker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="bots",
        help_text="Optional: one of the rerankers an admin added; empty keeps the fused order.",
    )
    provider = models.ForeignKey(
        "retrieval.LLMProvider", null=True, blank=True, on_delete=models.SET_NULL, related_name="bots"
    )
    llm_model = models.CharField(max_length=200, blank=True)
    temperature = models.FloatField(default=0.2)
    max_tokens = models.PositiveIntegerField(default=512)
    prompt_template = models.TextField(blank=True, help_text="Empty means Docent's default template.")
    refusal_threshold = models.FloatField(
        default=0.25,
        help_text="If no sentence of the documents is at least this similar to the question, "
        "the bot says the documents don't cover it.",
    )
    evaluate_on_change = models.BooleanField(
        default=False, help_text="Run the default test set after every settings change."
    )
    judge_provider = models.ForeignKey(
        "retrieval.LLMProvider",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="judged_bots",
        help_text="Optional: the provider whose model grades answers for faithfulness and relevance in runs.",
    )
    judge_model = models.CharField(max_length=200, blank=True)
    config_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BotQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.slug:
            self.slug = self._unique_slug()
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("bots:detail", args=[self.slug])

    def _unique_slug(self) -> str:
        base = slugify(self.name)[:120] or "bot"
        slug, n = base, 2
        while Bot.objects.filter(slug=slug).exists():
            slug, n = f"{base}-{n}", n + 1
        return slug


class BotShare(models.Model):
    """A bot shared with one user or one group, as editor (settings, documents) or user (chat only)."""

    class Role(models.TextChoices):
        EDITOR = "editor", "Editor: can change settings and documents"
        USER = "user", "User: can chat"

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="shares")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="bot_shares"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="bot_shares")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.USER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["bot", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="share_with_user_or_group",
            ),
            models.UniqueConstraint(fields=["bot", "user"], name="one_share_per_user"),
            models.UniqueConstraint(fields=["bot", "group"], name="one_share_per_group"),
        ]

    def __str__(self) -> str:
        return f"{self.bot} → {self.user or self.group} ({self.role})"

    @property
    def grantee(self) -> str:
        return self.user.get_username() if self.user_id else f"group {self.group.name}"


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiToken(models.Model):
    """A bearer token for the REST and OpenAI-compatible APIs.

    Only a SHA-256 hash is stored; the plain token is shown once, when created.
    """

    PREFIX = "dct_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="API token")
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12, help_text="The first characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name: str = "API token") -> tuple[ApiToken, str]:
        """Create a token for `user`; returns the row and the plain key (never stored)."""
        key = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, key_hash=cls.hash_key(key), hint=key[:10])
        return token, key

    def touch(self) -> None:
        """Record a use. At most once a minute: the profile shows it to the minute, and a client
        asking many questions at once would otherwise queue on this row's lock, a write per request."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= TOKEN_TOUCH_INTERVAL:
            self.last_used_at = now
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)


class Conversation(models.Model):
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="conversations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    """One turn of a conversation. Assistant messages carry their citations and trace."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    # [{"n", "chunk_id", "document_id", "document_name", "page", "snippet"}, ...]
    citations = models.JSONField(default=list, blank=True)
    trace = models.ForeignKey("retrieval.Trace", null=True, blank=True, on_delete=models.SET_NULL)
    in_reply_to = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="reply",
        help_text="The question answered.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"

    @property
    def feedback_or_none(self):
        try:
            return self.feedback
        except Feedback.DoesNotExist:
            return None


class BotConfigVersion(models.Model):
    """One saved state of a bot's settings: who changed what, and when.

    Answers and evaluations record the config version that produced them, so a
    change in quality can be traced to the settings change behind it.
    """

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="config_versions")
    number = models.PositiveIntegerField()
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    changes = models.JSONField(default=dict, help_text='{"field": [old, new]}')
    snapshot = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["bot", "-number"]
        constraints = [models.UniqueConstraint(fields=["bot", "number"], name="unique_config_version")]

    def __str__(self) -> str:
        return f"{self.bot} v{self.number}"


class Feedback(models.Model):
    """A thumbs up (+1) or down (-1) on an answer, with an optional comment."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.SmallIntegerField(choices=[(1, "Helpful"), (-1, "Not helpful")])
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on message {self.message_id}"
