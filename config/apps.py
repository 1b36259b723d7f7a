from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """Registers config/ as an app so its management commands (serve) are found."""

    name = "config"
    verbose_name = "Docent platform"
