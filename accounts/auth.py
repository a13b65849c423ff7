"""API-key authentication shared by every /v1 transport (ninja views, DRF, Channels consumers).

Hot path: a checksum check (no I/O), one HMAC, then a per-process snapshot cache keyed by the
lookup hash. Snapshots live at most `CACHE_TTL` seconds, so a revocation or rotation committed in
any process is honoured by every other process within one second; expiry and grace ends are
compared with the clock on every request, never cached. `last_used_at` is written at most about
once a minute per key and secret (an in-process timer, then `cache.add` to dedupe across processes); a use
of a rotated key's previous secret also records when and from which address, for the keys page.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache
from django.utils import timezone

from accounts import keyformat
from accounts.models import PLAN_LIMITS, ApiKey
from config.db import run_db
from config.errors import ApiError
from config.net import IPNetwork, client_ip_from_request, normalise, parse_networks

log = logging.getLogger(__name__)

CACHE_TTL = 0.9  # seconds; < 1 s so revocation/rotation reaches every process within one second
CACHE_MAX_ENTRIES = 20_000
TOUCH_INTERVAL = 60.0  # seconds between last_used_at writes per key
GRACE_HEADER = "X-Tollgate-Key-Grace-Ends-At"
PLAYGROUND_PREFIX = "tg_play_"  # accounts/playground.py: the dashboard Playground's session-bound credential

# Injectable clocks: tests freeze the wall clock with time_machine and drive the cache clock here.
monotonic: Callable[[], float] = time.monotonic
now: Callable[[], datetime] = timezone.now


@dataclass(frozen=True, slots=True)
class KeyContext:
    key_id: int | None  # None for a dashboard Playground credential (accounts/playground.py)
    public_id: str
    name: str
    masked: str
    team_id: int
    team_public_id: str
    team_plan: str
    mode: str
    scopes: frozenset[str]
    allowed_models: tuple[str, ...]
    rpm_limit: int | None
    tpm_limit: int | None
    monthly_spend_cap_nusd: int | None
    grace_ends_at: datetime | None
    max_cost_per_request_nusd: int | None = None  # the default cost cap of a request that sends none
    project_id: int | None = None
    project_budget_nusd: int | None = None  # the project's monthly budget (None: none)

    @property
    def is_test(self) -> bool:
        return self.mode == "test"


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one lookup hash resolves to; the per-request checks run against this."""

    ctx: KeyContext  # grace_ends_at is set when this hash is the key's previous secret
    revoked: bool
    expires_at: datetime | None
    previous_expires_at: datetime | None  # only for the previous secret
    is_previous: bool
    networks: tuple[IPNetwork, ...]


# hash -> (entry or None for "no such key", loaded at monotonic time)
_cache: dict[str, tuple[_Entry | None, float]] = {}
_last_touch: dict[tuple[int, bool], float] = {}


def clear_cache() -> None:
    _cache.clear()
    _last_touch.clear()


def forget(*hashes: str | None) -> None:
    """Drop snapshots in this process at once (other processes follow within CACHE_TTL)."""
    for h in hashes:
        if h:
            _cache.pop(h, None)


# --- limits ------------------------------------------------------------------------------


def effective_limit(override: int | None, plan_limit: int | None) -> int | None:
    """The stricter of the key's override and the plan's limit; None means unlimited."""
    if override is None:
        return plan_limit
    if plan_limit is None:
        return override
    return min(override, plan_limit)


# --- headers and client address ------------------------------------------------------------


def extract_key(headers) -> str | None:
    """The key from `Authorization: Bearer …` or `X-Api-Key: …`; header names in any case."""
    if isinstance(headers, list | tuple):  # raw ASGI headers: [(b"name", b"value"), …]
        headers = dict(headers)
    if isinstance(headers, dict):
        lowered = {(k.decode("latin-1") if isinstance(k, bytes) else str(k)).lower(): v for k, v in headers.items()}
        auth, api_key = lowered.get("authorization"), lowered.get("x-api-key")
    else:
        auth, api_key = headers.get("Authorization"), headers.get("X-Api-Key")
    if isinstance(auth, bytes):
        auth = auth.decode("latin-1")
    if isinstance(api_key, bytes):
        api_key = api_key.decode("latin-1")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if api_key and api_key.strip():
        return api_key.strip()
    return None


# --- lookup --------------------------------------------------------------------------------


def _invalid(message: str) -> ApiError:
    return ApiError(401, "invalid_api_key", message, kind="invalid_request_error")


def _lookup_hash(raw_key: str | None) -> str:
    """Refuse a missing or malformed key without any I/O; otherwise the key's lookup hash."""
    if not raw_key:
        raise _invalid("Missing API key. Send it as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'.")
    if raw_key.startswith(PLAYGROUND_PREFIX):
        raise _invalid("A Playground credential works only for the inference requests of the dashboard's Playground.")
    if keyformat.parse_mode(raw_key) is None:
        raise _invalid("Malformed API key: expected tg_live_… or tg_test_… with a valid checksum.")
    return keyformat.lookup_hash(raw_key)


_MISS = object()


def _cached(h: str):
    hit = _cache.get(h)
    if hit is None or monotonic() - hit[1] >= CACHE_TTL:
        return _MISS
    return hit[0]


def _store(h: str, entry: _Entry | None) -> None:
    if len(_cache) >= CACHE_MAX_ENTRIES:
        _cache.clear()  # bounded memory; refilled from the database within a second
    _cache[h] = (entry, monotonic())


_FIELDS = (
    "id",
    "public_id",
    "name",
    "mode",
    "display_prefix",
    "last4",
    "secret_hash",
    "previous_secret_hash",
    "previous_display_prefix",
    "previous_last4",
    "previous_expires_at",
    "scopes",
    "expires_at",
    "revoked_at",
    "allowed_models",
    "rpm_limit",
    "tpm_limit",
    "monthly_spend_cap_nusd",
    "max_cost_per_request_nusd",
    "ip_allowlist",
    "project_id",
    "project__monthly_budget_nusd",
    "team_id",
    "team__public_id",
    "team__plan",
)


def _load(h: str) -> _Entry | None:
    """One query: the key whose current or previous secret has this hash, with its team's plan and its project's
    budget."""
    from django.db.models import Q

    row = ApiKey.objects.filter(Q(secret_hash=h) | Q(previous_secret_hash=h)).values(*_FIELDS).first()
    if row is None:
        return None
    is_previous = row["secret_hash"] != h
    plan_rpm, plan_tpm = PLAN_LIMITS.get(row["team__plan"], (None, None))
    if is_previous:
        masked = f"{row['previous_display_prefix']}…{row['previous_last4']}"
    else:
        masked = f"{row['display_prefix']}…{row['last4']}"
    try:
        networks = parse_networks(row["ip_allowlist"] or ())
    except ValueError:
        log.error("API key %s has an unparsable IP allow-list; refusing every address", row["public_id"])
        networks = (ipaddress.ip_network("0.0.0.0/32"),)
    ctx = KeyContext(
        key_id=row["id"],
        public_id=row["public_id"],
        name=row["name"],
        masked=masked,
        team_id=row["team_id"],
        team_public_id=row["team__public_id"],
        team_plan=row["team__plan"],
        mode=row["mode"],
        scopes=frozenset(row["scopes"] or ()),
        allowed_models=tuple(row["allowed_models"] or ()),
        rpm_limit=effective_limit(row["rpm_limit"], plan_rpm),
        tpm_limit=effective_limit(row["tpm_limit"], plan_tpm),
        monthly_spend_cap_nusd=row["monthly_spend_cap_nusd"],
        grace_ends_at=row["previous_expires_at"] if is_previous else None,
        max_cost_per_request_nusd=row["max_cost_per_request_nusd"],
        project_id=row["project_id"],
        project_budget_nusd=row["project__monthly_budget_nusd"],
    )
    return _Entry(
        ctx=ctx,
        revoked=row["revoked_at"] is not None,
        expires_at=row["expires_at"],
        previous_expires_at=row["previous_expires_at"] if is_previous else None,
        is_previous=is_previous,
        networks=networks,
    )


def _check(entry: _Entry | None, *, client_ip: str | None, scope: str) -> KeyContext:
    if entry is None:
        raise _invalid("Unknown API key.")
    if entry.revoked:
        raise _invalid("This API key has been revoked.")
    current = now()
    if entry.is_previous and (entry.previous_expires_at is None or entry.previous_expires_at <= current):
        raise _invalid("This API key was rotated and its old secret's grace period has ended; use the new secret.")
    if entry.expires_at is not None and entry.expires_at <= current:
        raise ApiError(401, "key_expired", "This API key has expired.", kind="invalid_request_error")
    if entry.networks:
        try:
            address = normalise(ipaddress.ip_address(client_ip or ""))
        except ValueError:
            address = None
        if address is None or not any(address in net for net in entry.networks):
            raise ApiError(
                403,
                "ip_not_allowed",
                f"Requests from {client_ip or 'an unknown address'} are not allowed for this API key.",
            )
    if scope and scope not in entry.ctx.scopes:
        raise ApiError(403, "insufficient_scope", f"This API key lacks the '{scope}' scope.", param=None)
    return entry.ctx


def _touch_due(key_id: int, previous: bool = False) -> bool:
    """Per key and secret: a busy new secret must not hide that the old one is still in use."""
    slot = (key_id, previous)
    last = _last_touch.get(slot)
    t = monotonic()
    if last is not None and t - last < TOUCH_INTERVAL:
        return False
    if len(_last_touch) >= CACHE_MAX_ENTRIES:
        _last_touch.clear()
    _last_touch[slot] = t
    return True


def _valid_ip(value: str | None) -> str | None:
    try:
        return str(normalise(ipaddress.ip_address(value or "")))
    except ValueError:
        return None


def _touch(key_id: int, *, previous_hash: str | None = None, client_ip: str | None = None) -> None:
    """Record use at most once a minute per key and secret across processes (cache.add is atomic in Redis).
    A request with the previous secret (`previous_hash`) also records when and from where, for the keys page;
    the hash in the filter keeps a use from landing on a newer old secret if the key was rotated meanwhile.
    Best effort: a cache or database that is away must not refuse a request over a "last used" timestamp."""
    marker = f"apikey:used:{key_id}" + (":previous" if previous_hash else "")
    try:
        if cache.add(marker, 1, timeout=int(TOUCH_INTERVAL)):
            moment = now()
            ApiKey.objects.filter(pk=key_id).update(last_used_at=moment)
            if previous_hash:
                ApiKey.objects.filter(pk=key_id, previous_secret_hash=previous_hash).update(
                    previous_last_used_at=moment, previous_last_used_ip=_valid_ip(client_ip)
                )
    except Exception as exc:  # noqa: BLE001 - DatabaseError, RedisError, OSError: all only cost a timestamp
        log.warning("could not record last use of API key id=%s: %s", key_id, type(exc).__name__)


# --- public entry points ---------------------------------------------------------------------


def authenticate(raw_key: str | None, *, client_ip: str | None, scope: str) -> KeyContext:
    h = _lookup_hash(raw_key)
    entry = _cached(h)
    if entry is _MISS:
        entry = _load(h)
        _store(h, entry)
    ctx = _check(entry, client_ip=client_ip, scope=scope)
    previous = entry.is_previous
    if ctx.key_id is not None and _touch_due(ctx.key_id, previous):
        _touch(ctx.key_id, previous_hash=h if previous else None, client_ip=client_ip)
    return ctx


# One database load per key at a time per event loop: when a key's cache entry expires under load, the
# requests that arrive meanwhile wait for that load instead of each querying (measured: concurrent
# misses under 300 open streams cost ~5 % of the server's CPU).
_inflight: dict[tuple[int, str], asyncio.Future] = {}


async def _aload(h: str) -> _Entry | None:
    slot = (id(asyncio.get_running_loop()), h)
    pending = _inflight.get(slot)
    if pending is not None:
        return await asyncio.shield(pending)
    future = asyncio.ensure_future(run_db(_load, h))
    _inflight[slot] = future
    try:
        entry = await asyncio.shield(future)
    finally:
        _inflight.pop(slot, None)
    _store(h, entry)
    return entry


async def aauthenticate(
    raw_key: str | None, *, client_ip: str | None, scope: str, cookie_header: str | None = None
) -> KeyContext:
    """`cookie_header` (the request's Cookie) is passed by the inference pipeline only: a Playground credential
    works together with the session cookie it is bound to, and nowhere else."""
    if raw_key and raw_key.startswith(PLAYGROUND_PREFIX) and cookie_header is not None:
        from accounts import playground  # it builds on this module

        return await playground.aauthenticate(raw_key, cookie_header=cookie_header, scope=scope)
    h = _lookup_hash(raw_key)
    entry = _cached(h)
    if entry is _MISS:
        entry = await _aload(h)
    ctx = _check(entry, client_ip=client_ip, scope=scope)
    previous = entry.is_previous
    if ctx.key_id is not None and _touch_due(ctx.key_id, previous):
        await run_db(_touch, ctx.key_id, previous_hash=h if previous else None, client_ip=client_ip)
    return ctx


def authenticate_request(request, scope: str) -> KeyContext:
    """`authenticate` for a Django request (sync views that also accept a session)."""
    return authenticate(extract_key(request.headers), client_ip=client_ip_from_request(request), scope=scope)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_headers(ctx: KeyContext) -> dict[str, str]:
    """Headers for every response to this key: when an old secret in its grace window stops working."""
    if ctx.grace_ends_at is None:
        return {}
    return {GRACE_HEADER: rfc3339(ctx.grace_ends_at)}


def check_model_allowed(ctx: KeyContext, model: str) -> None:
    if ctx.allowed_models and model not in ctx.allowed_models:
        raise ApiError(403, "model_not_allowed", f"This API key may not use the model '{model}'.", param="model")
