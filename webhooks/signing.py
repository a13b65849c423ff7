"""Signing secrets and the `Tollgate-Signature` header, the way Stripe signs its webhooks.

`Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the whole secret>`,
with one `v1=` per secret that is valid at the time (two during a rotation's grace window), so a receiver
verifies with whichever secret it has deployed. The README shows the receiving side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)  # 32 random bytes


def hint(secret: str) -> str:
    """What pages show to tell secrets apart: never more than the last four characters."""
    return f"{PREFIX}…{secret[-4:]}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(body: bytes, secrets_in_use: list[str], timestamp: int) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets_in_use)])
