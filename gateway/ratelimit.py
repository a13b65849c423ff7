"""Requests and tokens per minute, per team (plan) and per key (override), in fixed one-minute windows.

With REDIS_URL: one round trip, a Lua script that checks every counter and only then increments them
all, so concurrent requests in several processes can never overshoot. Without it (the embedded,
single-process default) the same logic runs against Django's cache from the event loop thread.
Tokens are counted up front from the request's estimate (prompt + output budget), as OpenAI does.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from accounts.auth import KeyContext
from accounts.models import PLAN_LIMITS
from config import metrics, redis_client
from config.errors import ApiError

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60

_LUA = """
local n = #KEYS / 2
local ttl = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
for i = 1, n do
  local rl = tonumber(ARGV[1 + 2 * i])
  local tl = tonumber(ARGV[2 + 2 * i])
  local r = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local t = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if rl >= 0 and r + 1 > rl then return {0, i, 1, r, t} end
  if tl >= 0 and t + cost > tl then return {0, i, 2, r, t} end
end
local res = {1}
for i = 1, n do
  local r = redis.call('INCR', KEYS[2 * i - 1])
  if r == 1 then redis.call('EXPIRE', KEYS[2 * i - 1], ttl) end
  local t = redis.call('INCRBY', KEYS[2 * i], cost)
  if t == cost then redis.call('EXPIRE', KEYS[2 * i], ttl) end
  table.insert(res, r)
  table.insert(res, t)
end
return res
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0
    exceeded: str = ""  # "requests" | "tokens"


def buckets_for(ctx: KeyContext) -> list[Bucket]:
    """The team's plan bucket, plus the key's own when its override is stricter than the plan."""
    plan_rpm, plan_tpm = PLAN_LIMITS.get(ctx.team_plan, (None, None))
    out = []
    if plan_rpm is not None or plan_tpm is not None:
        out.append(Bucket(f"t{ctx.team_id}", plan_rpm, plan_tpm))

    def stricter(key_limit: int | None, plan_limit: int | None) -> bool:
        return key_limit is not None and (plan_limit is None or key_limit < plan_limit)

    if stricter(ctx.rpm_limit, plan_rpm) or stricter(ctx.tpm_limit, plan_tpm):
        out.append(Bucket(f"k{ctx.key_id}", ctx.rpm_limit, ctx.tpm_limit))
    return out


def _fmt_reset(seconds: float) -> str:
    seconds = max(0, math.ceil(seconds))
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def _headers(buckets: list[Bucket], counts: list[tuple[int, int]], cost: int, reset: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    reqs = [(b.rpm, b.rpm - r) for b, (r, _t) in zip(buckets, counts, strict=True) if b.rpm is not None]
    toks = [(b.tpm, b.tpm - t) for b, (_r, t) in zip(buckets, counts, strict=True) if b.tpm is not None]
    reset_text = _fmt_reset(reset)
    if reqs:
        limit, remaining = min(reqs, key=lambda pair: pair[1])
        headers["x-ratelimit-limit-requests"] = str(limit)
        headers["x-ratelimit-remaining-requests"] = str(max(remaining, 0))
        headers["x-ratelimit-reset-requests"] = reset_text
    if toks:
        limit, remaining = min(toks, key=lambda pair: pair[1])
        headers["x-ratelimit-limit-tokens"] = str(limit)
        headers["x-ratelimit-remaining-tokens"] = str(max(remaining, 0))
        headers["x-ratelimit-reset-tokens"] = reset_text
    return headers


_script = redis_client.Script(_LUA)


async def _hit_redis(buckets: list[Bucket], window: int, cost: int) -> tuple[bool, int, int, list[tuple[int, int]]]:
    keys: list[str] = []
    args: list[int] = [WINDOW_SECONDS + 5, cost]
    for b in buckets:
        keys += [f"tollgate:rl:{b.name}:{window}:r", f"tollgate:rl:{b.name}:{window}:t"]
        args += [-1 if b.rpm is None else b.rpm, -1 if b.tpm is None else b.tpm]
    try:
        res = await _script(redis_client.client(), keys, args)
    except RedisError as exc:
        log.warning("rate limiter unavailable: %s", exc)
        raise ApiError(
            503,
            "rate_limiter_unavailable",
            "The rate limiter is unavailable; retry shortly.",
            headers={"Retry-After": "1"},
        ) from None
    if int(res[0]) == 0:
        index, which, r, t = int(res[1]) - 1, int(res[2]), int(res[3]), int(res[4])
        counts = [(0, 0)] * len(buckets)
        counts[index] = (r, t)
        return False, index, which, counts
    flat = [int(x) for x in res[1:]]
    return True, -1, 0, [(flat[2 * i], flat[2 * i + 1]) for i in range(len(buckets))]


def _hit_cache(buckets: list[Bucket], window: int, cost: int) -> tuple[bool, int, int, list[tuple[int, int]]]:
    names = []
    for b in buckets:
        names += [f"rl:{b.name}:{window}:r", f"rl:{b.name}:{window}:t"]
    current = cache.get_many(names)
    counts = [(current.get(names[2 * i], 0), current.get(names[2 * i + 1], 0)) for i in range(len(buckets))]
    for i, b in enumerate(buckets):
        r, t = counts[i]
        if b.rpm is not None and r + 1 > b.rpm:
            return False, i, 1, counts
        if b.tpm is not None and t + cost > b.tpm:
            return False, i, 2, counts
    counts = [(r + 1, t + cost) for r, t in counts]
    cache.set_many(
        {names[2 * i + j]: counts[i][j] for i in range(len(buckets)) for j in (0, 1)}, timeout=WINDOW_SECONDS + 5
    )
    return True, -1, 0, counts


# What this process last learned of each key's counters: (window, requests left, tokens left; None where the
# key has no such limit) after its last request. A request that would leave room for many more of its size may
# place its hold while the limiter decides (gateway/pipeline.py); the limiter still decides. Bounded: forgotten
# wholesale when full.
_seen: dict[tuple[int, int | None], tuple[int, int | None, int | None]] = {}
_SEEN_MAX = 10_000
HEADROOM = 8  # "room for many more": this many more requests of this size in the window


def _remember(ctx: KeyContext, buckets: list[Bucket], window: int, counts: list[tuple[int, int]]) -> None:
    if len(_seen) >= _SEEN_MAX:
        _seen.clear()
    pairs = list(zip(buckets, counts, strict=True))
    requests = [b.rpm - r for b, (r, _t) in pairs if b.rpm is not None]
    tokens = [b.tpm - t for b, (_r, t) in pairs if b.tpm is not None]
    _seen[ctx.team_id, ctx.key_id] = (window, min(requests) if requests else None, min(tokens) if tokens else None)


def has_headroom(ctx: KeyContext, *, tokens: int, now: float | None = None) -> bool:
    """True when this process's last look at the key's counters, in the current minute, left room for HEADROOM
    more requests of `tokens`: a refusal is then unlikely (other processes may have used some room since, which
    is why the margin). False for the first request of a minute, and for a key without limits (nothing to wait
    for: its check asks no one)."""
    seen = _seen.get((ctx.team_id, ctx.key_id))
    if seen is None:
        return False
    window, requests_left, tokens_left = seen
    now = time.time() if now is None else now
    return (
        window == int(now // WINDOW_SECONDS)
        and (requests_left is None or requests_left >= HEADROOM)
        and (tokens_left is None or tokens_left >= HEADROOM * tokens)
    )


def forget() -> None:
    _seen.clear()


async def check(ctx: KeyContext, *, tokens: int, now: float | None = None) -> Decision:
    """Count one request of `tokens` estimated tokens; a Decision with OpenAI's x-ratelimit-* headers."""
    buckets = buckets_for(ctx)
    if not buckets:
        return Decision(True, {})
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    reset = (window + 1) * WINDOW_SECONDS - now
    if settings.REDIS_URL:
        allowed, index, which, counts = await _hit_redis(buckets, window, tokens)
    else:
        allowed, index, which, counts = _hit_cache(buckets, window, tokens)
    if allowed:
        _remember(ctx, buckets, window, counts)
        return Decision(True, _headers(buckets, counts, tokens, reset))
    _seen[ctx.team_id, ctx.key_id] = (window, 0, 0)
    bucket = buckets[index]
    headers = _headers([bucket], [counts[index]], tokens, reset)
    return Decision(
        False, headers, retry_after=max(1, math.ceil(reset)), exceeded="requests" if which == 1 else "tokens"
    )


def exhausted(ctx: KeyContext, *, tokens: int, now: float | None = None) -> Decision:
    """The Decision `check` returns when the key's requests-per-minute are used up, without counting anything
    (a refused request counts nothing): for the `rate_limited` test scenario (gateway/scenarios.py). An
    unlimited plan reports the Starter plan's limits, so the headers a client reads are always there."""
    buckets = buckets_for(ctx)
    if buckets:
        bucket = buckets[-1]  # the key's own bucket when it has one: the one a client would hit first
    else:
        rpm, tpm = PLAN_LIMITS["starter"]
        bucket = Bucket(f"k{ctx.key_id}", rpm, tpm)
    if bucket.rpm is None:
        bucket = Bucket(bucket.name, PLAN_LIMITS["starter"][0], bucket.tpm)
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    reset = (window + 1) * WINDOW_SECONDS - now
    headers = _headers([bucket], [(bucket.rpm or 0, 0)], tokens, reset)
    return Decision(False, headers, retry_after=max(1, math.ceil(reset)), exceeded="requests")


def raise_if_denied(decision: Decision) -> None:
    if decision.allowed:
        return
    metrics.rate_limited.labels(decision.exceeded or "requests").inc()
    if decision.exceeded == "requests":
        message = "Rate limit reached for requests per minute. Retry after the window resets."
    else:
        message = "Rate limit reached for tokens per minute (this request's estimate counts in full)."
    raise ApiError(
        429, "rate_limit_exceeded", message, headers={**decision.headers, "Retry-After": str(decision.retry_after)}
    )
