"""Idempotency-Key on charging POSTs, kept 24 h per team.

The first request inserts an in-flight record (the unique (team, key) constraint decides races between
processes); its response is stored when it finishes. A replay gets the stored status and body with
`Idempotent-Replayed: true` and neither calls upstream nor charges. The same key with another body is 422
`idempotency_key_reused`; while the first is still running, 409 `idempotency_conflict`.

A request that ends in an error releases its key (the record is deleted), so the client may retry with the
same key. An in-flight record carries its process's lease (billing.leases): if that process dies, the next
request with the key takes it over, so a key is never stuck "in flight" for its 24 h. Streams store their
whole SSE transcript and a replay sends it back as one stream; a stream the client abandoned is not a finished
response, so its key is released too.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import HoldLease
from config.errors import ApiError
from gateway import conf
from gateway.models import IdempotencyRecord, IdempotencyStatus

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: bytes
    content_type: str


def fingerprint(endpoint: str, body: bytes) -> str:
    return hashlib.sha256(endpoint.encode() + b"\n" + body).hexdigest()


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            400,
            "invalid_request_error",
            "Idempotency-Key must be 1 to 255 printable characters.",
            param="Idempotency-Key",
        )
    return key


def _claim(
    *, team_id: int, key: str, endpoint: str, fingerprint: str, request_id: str, lease_id: int | None, now, expires
) -> bool:
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                team_id=team_id,
                key=key,
                endpoint=endpoint,
                fingerprint=fingerprint,
                request_id=request_id,
                lease_id=lease_id,
                created_at=now,
                expires_at=expires,
            )
        return True
    except IntegrityError:
        return False


def _abandoned(record: IdempotencyRecord, now) -> bool:
    """An in-flight record whose process died (its lease ran out), or any record past its 24 h."""
    if record.expires_at <= now:
        return True
    if record.status != IdempotencyStatus.IN_FLIGHT or record.lease_id is None:
        return False
    return HoldLease.objects.filter(pk=record.lease_id, expires_at__lte=now).exists()


def begin(
    *, team_id: int, key: str, endpoint: str, fingerprint: str, request_id: str, lease_id: int | None = None
) -> Replay | None:
    """Claim the key (None: go ahead) or return the stored response to replay. Raises 409/422."""
    now = timezone.now()
    expires = now + timedelta(seconds=conf.get("GATEWAY_IDEMPOTENCY_TTL_SECONDS"))
    claim = functools.partial(
        _claim,
        team_id=team_id,
        key=key,
        endpoint=endpoint,
        fingerprint=fingerprint,
        request_id=request_id,
        lease_id=lease_id,
        now=now,
        expires=expires,
    )
    if claim():
        return None
    record = IdempotencyRecord.objects.filter(team_id=team_id, key=key).first()
    if record is None or _abandoned(record, now):
        # expired, released meanwhile, or left in flight by a process that died: take the key over
        IdempotencyRecord.objects.filter(
            team_id=team_id, key=key, request_id=getattr(record, "request_id", "")
        ).delete()
        if claim():
            return None
        record = IdempotencyRecord.objects.filter(team_id=team_id, key=key).first()
        if record is None:
            raise ApiError(409, "idempotency_conflict", "A request with this Idempotency-Key is being processed.")
    if record.fingerprint != fingerprint or record.endpoint != endpoint:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request body or endpoint.",
            param="Idempotency-Key",
        )
    if record.status != IdempotencyStatus.DONE:
        raise ApiError(
            409, "idempotency_conflict", "A request with this Idempotency-Key is still being processed; retry later."
        )
    return Replay(
        status=record.response_status or 200,
        body=bytes(record.response_body or b""),
        content_type=record.response_content_type or "application/json",
    )


def complete(*, team_id: int, key: str, request_id: str, status: int, body: bytes, content_type: str) -> None:
    IdempotencyRecord.objects.filter(team_id=team_id, key=key, request_id=request_id).update(
        status=IdempotencyStatus.DONE,
        response_status=status,
        response_body=body,
        response_content_type=content_type,
    )


def abandon(*, team_id: int, key: str, request_id: str) -> None:
    IdempotencyRecord.objects.filter(team_id=team_id, key=key, request_id=request_id).delete()


def purge_expired(*, now=None) -> int:
    """Records past their 24 h, and in-flight ones whose process died."""
    now = now or timezone.now()
    dead = HoldLease.objects.filter(expires_at__lte=now).values("pk")
    deleted, _ = IdempotencyRecord.objects.filter(
        Q(expires_at__lte=now) | Q(status=IdempotencyStatus.IN_FLIGHT, lease__in=dead)
    ).delete()
    return deleted
