"""Encryption at rest for secrets Docent must use again (LLM provider API keys).

Fernet (AES-128-CBC + HMAC) from `cryptography`, keyed by DOCENT_ENCRYPTION_KEY, or
by a key derived from SECRET_KEY when that is unset. Rotating the key makes stored
secrets unreadable; admins then re-enter them.
"""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@functools.cache
def _fernet() -> Fernet:
    secret = settings.DOCENT_ENCRYPTION_KEY or settings.SECRET_KEY
    key = base64.urlsafe_b64encode(hashlib.sha256(("docent-secrets:" + secret).encode()).digest())
    return Fernet(key)


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("This secret was stored under another encryption key; enter it again.") from None
