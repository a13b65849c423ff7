"""The plaintext API-key format: `tg_live_` / `tg_test_`, 256 random bits, a checksum.

    tg_live_<43 base62 chars: 256 bits from secrets><6 base62 chars: CRC32 of everything before>

The checksum lets us refuse a mistyped or truncated key before any database read, and the fixed
pattern lets secret scanners recognise a leaked key. Only an HMAC of the key is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

from django.conf import settings

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LEN = 43  # ceil(256 / log2(62))
CHECK_LEN = 6
PREFIXES = {"live": "tg_live_", "test": "tg_test_"}
KEY_PATTERN = re.compile(rf"^tg_(live|test)_([0-9A-Za-z]{{{BODY_LEN}}})([0-9A-Za-z]{{{CHECK_LEN}}})$")
DISPLAY_BODY_CHARS = 4


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), CHECK_LEN)


def generate(mode: str) -> str:
    prefix = PREFIXES[mode]
    body = _base62(secrets.randbits(256), BODY_LEN)
    return f"{prefix}{body}{_checksum(prefix + body)}"


def parse_mode(plaintext: str) -> str | None:
    """'live' or 'test' for a well-formed key with a valid checksum, else None. No I/O."""
    match = KEY_PATTERN.match(plaintext)
    if match is None:
        return None
    mode, body, check = match.groups()
    expected = _checksum(PREFIXES[mode] + body)
    if not hmac.compare_digest(check, expected):
        return None
    return mode


def lookup_hash(plaintext: str) -> str:
    """Keyed hash used to find the key row; without the server secret it reveals nothing."""
    secret = settings.API_KEY_HASH_SECRET.encode()
    return hmac.new(secret, plaintext.encode(), hashlib.sha256).hexdigest()


def display_parts(plaintext: str) -> tuple[str, str]:
    """(prefix shown in lists, last four) — enough to recognise a key, never enough to use it."""
    mode = "live" if plaintext.startswith(PREFIXES["live"]) else "test"
    head = len(PREFIXES[mode]) + DISPLAY_BODY_CHARS
    return plaintext[:head], plaintext[-4:]
