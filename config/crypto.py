"""Secrets encrypted at rest: Fernet with a key derived (HKDF-SHA256) from FIELD_ENCRYPTION_KEY, one derived key
per purpose, so a ciphertext of one kind never decrypts as another.

For secrets Tollgate must read back (a webhook endpoint's signing secret signs every delivery), unlike API keys,
which are only ever compared and so stored as an HMAC. gateway/crypto.py does the same for provider credentials
(purpose "provider-api-key"); it predates this module and can become a thin wrapper of it.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@lru_cache(maxsize=8)
def _fernet(secret: str, purpose: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tollgate-field-encryption", info=purpose.encode())
    return Fernet(base64.urlsafe_b64encode(key.derive(secret.encode())))


def encrypt(plaintext: str, *, purpose: str) -> str:
    if not plaintext:
        return ""
    return _fernet(settings.FIELD_ENCRYPTION_KEY, purpose).encrypt(plaintext.encode()).decode()


def decrypt(token: str, *, purpose: str) -> str:
    """The plaintext, or "" when there is none or it was encrypted under another key."""
    if not token:
        return ""
    try:
        return _fernet(settings.FIELD_ENCRYPTION_KEY, purpose).decrypt(token.encode()).decode()
    except InvalidToken:
        return ""
