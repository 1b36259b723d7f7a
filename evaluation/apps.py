from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        # Registers the clean-up of a deleted fine-tune's model folder, whichever process deletes it.
        from evaluation import fine_tunes  # noqa: F401
