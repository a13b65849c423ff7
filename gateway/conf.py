"""Gateway settings with their defaults; read at call time so tests can override them with `settings`."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # How long a process serves its catalog snapshot before reloading it.
    "GATEWAY_CATALOG_TTL_SECONDS": 5.0,
    # Cache of team preferences (store_completions) per process.
    "GATEWAY_TEAM_TTL_SECONDS": 5.0,
    # SSE comment sent while upstream is silent this long.
    "GATEWAY_KEEPALIVE_SECONDS": 15.0,
    # Largest request body accepted (images arrive base64-encoded).
    "GATEWAY_MAX_BODY_BYTES": 20 * 1024 * 1024,
    # Retries of the same route on a retryable error before moving to the next, and the jittered backoff base.
    "GATEWAY_ROUTE_RETRIES": 1,
    "GATEWAY_RETRY_BACKOFF_SECONDS": 0.05,
    # Circuit breaker per route: consecutive failures that open it, and how long it stays open.
    "GATEWAY_BREAKER_FAILURES": 5,
    "GATEWAY_BREAKER_COOLDOWN_SECONDS": 30.0,
    # The Channels consumer sends a plain completion's response before writing its settlement.
    "GATEWAY_SETTLE_AFTER_REPLY": True,
    # Idempotency keys are kept this long per team.
    "GATEWAY_IDEMPOTENCY_TTL_SECONDS": 24 * 3600,
}


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
