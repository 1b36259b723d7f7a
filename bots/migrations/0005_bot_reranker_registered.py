"""Bots choose a reranker from the ones admins registered, instead of typing a model path.

The old free-text values are dropped, not converted: any editor could type anything
there (a module name, a filesystem path) and it was loaded as given, so none of them
is trusted. There are no registered rerankers yet for them to match, either. Bots
that had one answer with the fused order until an editor picks a registered one.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bots", "0004_bot_shares"),
        ("retrieval", "0005_reranker"),
    ]

    operations = [
        # Removing the column is the data migration: every free-text value goes with it.
        migrations.RemoveField(model_name="bot", name="reranker"),
        migrations.AddField(
            model_name="bot",
            name="reranker",
            field=models.ForeignKey(
                blank=True,
                help_text="Optional: one of the rerankers an admin added; empty keeps the fused order.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="bots",
                to="retrieval.reranker",
            ),
        ),
    ]
