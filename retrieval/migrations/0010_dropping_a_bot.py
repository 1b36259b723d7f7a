"""Deleting a whole bot drops its term statistics instead of counting every chunk down.

The delete trigger of 0008 unnests the search vector of every deleted chunk to count the
bot's document frequencies down: about 32 of the 53 s it took to delete a million-chunk bot.
When the bot goes too, those counts are thrown away, so retrieval.keyword.drop_keyword_statistics
deletes the bot's rows at once and names the bot in the transaction-local setting
`docent.dropping_bot`, which this trigger now skips. Other bots' chunks deleted in the
same statement are still counted.
"""

from importlib import import_module

from django.db import migrations

statistics = import_module("retrieval.migrations.0008_keyword_statistics")

NOT_DROPPING = "bot_id IS DISTINCT FROM nullif(current_setting('docent.dropping_bot', true), '')::bigint"
NO_FIRST_ROWS = "SELECT NULL::bigint AS id, NULL::bigint AS bot_id, NULL::bigint AS bot_total WHERE false"


def delete_function(changed: str) -> str:
    return (
        statistics.STATISTICS_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        .replace("{operation}", "delete")
        .replace("{changed}", changed)
        .replace("{first}", NO_FIRST_ROWS)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0009_halfvec_hnsw"),
    ]

    operations = [
        migrations.RunSQL(
            delete_function(f"{statistics.REMOVED} AND {NOT_DROPPING}"),
            delete_function(statistics.REMOVED),
        ),
    ]
