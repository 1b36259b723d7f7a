"""Usage: questions per bot per day, with each bot's documents, chunks and storage."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from documents.models import Chunk, Document, DocumentVersion
from retrieval.models import Trace


@dataclass(frozen=True)
class BotUsage:
    """One bot's activity and size; `questions_per_day` lines up with Usage.days."""

    name: str
    slug: str
    questions_per_day: list[int]
    documents: int
    chunks: int
    storage_bytes: int

    @property
    def questions(self) -> int:
        return sum(self.questions_per_day)


@dataclass(frozen=True)
class Usage:
    days: list[dt.date]
    bots: list[BotUsage]
    totals: BotUsage


def usage(bots, days: int = 14) -> Usage:
    """Questions per bot per local day over the last `days` days (today included), with sizes.

    A question is one answer's Trace. Documents counts every document of the bot,
    chunks only the active ones (what search reads), and storage the uploaded
    files of every kept version, in bytes. `totals` sums all bots.
    """
    today = timezone.localdate()
    day_list = [today - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    since = dt.datetime.combine(day_list[0], dt.time.min, tzinfo=timezone.get_current_timezone())
    bots = list(bots)
    bot_ids = [bot.pk for bot in bots]

    questions: dict[tuple[int, dt.date], int] = {
        (row["bot_id"], row["day"]): row["count"]
        for row in Trace.objects.filter(bot_id__in=bot_ids, created_at__gte=since)
        .exclude(origin=Trace.Origin.EVALUATION)
        .annotate(day=TruncDate("created_at"))
        .values("bot_id", "day")
        .annotate(count=Count("id"))
    }
    documents = _total_by_bot(Document.objects.filter(bot_id__in=bot_ids), "bot_id", Count("id"))
    chunks = _total_by_bot(Chunk.objects.filter(bot_id__in=bot_ids, is_active=True), "bot_id", Count("id"))
    storage = _total_by_bot(
        DocumentVersion.objects.filter(document__bot_id__in=bot_ids), "document__bot_id", Sum("size_bytes")
    )
    rows = [
        BotUsage(
            name=bot.name,
            slug=bot.slug,
            questions_per_day=[questions.get((bot.pk, day), 0) for day in day_list],
            documents=documents.get(bot.pk, 0),
            chunks=chunks.get(bot.pk, 0),
            storage_bytes=storage.get(bot.pk, 0),
        )
        for bot in bots
    ]
    totals = BotUsage(
        name="All bots",
        slug="",
        questions_per_day=[sum(row.questions_per_day[index] for row in rows) for index in range(len(day_list))],
        documents=sum(row.documents for row in rows),
        chunks=sum(row.chunks for row in rows),
        storage_bytes=sum(row.storage_bytes for row in rows),
    )
    return Usage(days=day_list, bots=rows, totals=totals)


def _total_by_bot(queryset, bot_field: str, aggregate) -> dict[int, int]:
    return {
        row[bot_field]: row["value"] or 0 for row in queryset.values(bot_field).annotate(value=aggregate).order_by()
    }
