"""Prefixed, sortable ULID identifiers (`req_…`, `key_…`, `chatcmpl-…`)."""

from __future__ import annotations

from ulid import ULID


def new_id(prefix: str, sep: str = "_") -> str:
    return f"{prefix}{sep}{ULID()}"


def request_id() -> str:
    return new_id("req")
