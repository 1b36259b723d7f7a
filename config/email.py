"""Email settings from the environment, for password resets.

DOCENT_EMAIL_URL in dj-email-url's form (the password percent-encoded):
  submission://user:password@mail.example.com        STARTTLS on port 587
  smtp://user:password@mail.example.com:465?ssl=true  TLS from the start
  smtp://localhost                                    a local relay on port 25
  console://                                          print emails to the log, for trying it out
or Django's own EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD,
EMAIL_USE_TLS and EMAIL_USE_SSL. With neither, Docent sends no email.
"""

from __future__ import annotations

import os

import dj_email_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_str


def email_settings() -> dict:
    """Django's EMAIL_* settings for the configured mail server; empty when there is none."""
    if url := env_str("DOCENT_EMAIL_URL"):
        parsed = dj_email_url.parse(url)
        if "EMAIL_BACKEND" not in parsed:
            raise ImproperlyConfigured(
                f"DOCENT_EMAIL_URL has an unknown scheme {url.split(':', 1)[0]!r}; "
                "use submission://, smtp:// (add ?ssl=true for port 465) or console://."
            )
        parsed["EMAIL_TIMEOUT"] = parsed["EMAIL_TIMEOUT"] or 10
        return {name: value for name, value in parsed.items() if value is not None}
    if host := os.environ.get("EMAIL_HOST"):
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": host,
            "EMAIL_PORT": env_int("EMAIL_PORT", 25),
            "EMAIL_HOST_USER": env_str("EMAIL_HOST_USER"),
            "EMAIL_HOST_PASSWORD": env_str("EMAIL_HOST_PASSWORD"),
            "EMAIL_USE_TLS": env_bool("EMAIL_USE_TLS", False),
            "EMAIL_USE_SSL": env_bool("EMAIL_USE_SSL", False),
            "EMAIL_TIMEOUT": 10,
        }
    return {}
