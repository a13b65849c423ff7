"""Provider credentials encrypted at rest: Fernet with a key derived (HKDF-SHA256) from FIELD_ENCRYPTION_KEY."""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tollgate-field-encryption", info=b"provider-api-key")
    return Fernet(base64.urlsafe_b64encode(key.derive(secret.encode())))


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet(settings.FIELD_ENCRYPTION_KEY).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext, or "" when there is none or it was encrypted under another key."""
    if not token:
        return ""
    try:
        return _fernet(settings.FIELD_ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        return ""
