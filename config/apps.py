from django.apps import AppConfig
from django.db.models.signals import post_save


class ConfigConfig(AppConfig):
    """Registers config/ as an app: its management commands (serve), and the metrics' signal receivers."""

    name = "config"
    verbose_name = "Docent platform"

    def ready(self):
        from config import metrics
        from documents.signals import chunks_embedded

        post_save.connect(metrics.count_answer, sender="retrieval.Trace", dispatch_uid="docent-count-answer")
        chunks_embedded.connect(metrics.count_chunks_embedded, dispatch_uid="docent-count-chunks-embedded")
