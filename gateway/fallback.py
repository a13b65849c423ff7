"""Calling upstream: routes in priority order, a retry with jittered backoff, fallback to the next route
on retryable failures (connect errors, timeouts, 429, 5xx, malformed replies), and a per-route circuit
breaker. Errors caused by the request itself (upstream 4xx) are not retried anywhere: they are returned.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from config import metrics
from config.errors import ApiError
from gateway import conf
from gateway.catalog import RouteEntry
from gateway.providers import get_provider
from gateway.providers.base import Provider, ProviderError, UpstreamUsage

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class _BreakerState:
    failures: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False


@dataclass(slots=True)
class Breakers:
    """Per-route circuit breakers (per process). Closed → open after N consecutive failures; after the
    cooldown one trial request is let through (half-open); its success closes the breaker."""

    states: dict[int, _BreakerState] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def healthy(self, route: RouteEntry) -> bool:
        state = self.states.get(route.route_id)
        if state is None or state.failures < conf.get("GATEWAY_BREAKER_FAILURES"):
            return True
        return self.clock() >= state.open_until and not state.trial_in_flight

    def begin(self, route: RouteEntry) -> None:
        state = self.states.get(route.route_id)
        if state is not None and state.failures >= conf.get("GATEWAY_BREAKER_FAILURES"):
            state.trial_in_flight = True

    def success(self, route: RouteEntry) -> None:
        state = self.states.get(route.route_id)
        if state is not None:
            if state.failures >= conf.get("GATEWAY_BREAKER_FAILURES"):
                metrics.breaker_open.labels(str(route.route_id)).set(0)
            state.failures = 0
            state.trial_in_flight = False

    def failure(self, route: RouteEntry) -> None:
        state = self.states.setdefault(route.route_id, _BreakerState())
        state.failures += 1
        state.trial_in_flight = False
        if state.failures >= conf.get("GATEWAY_BREAKER_FAILURES"):
            state.open_until = self.clock() + conf.get("GATEWAY_BREAKER_COOLDOWN_SECONDS")
            if state.failures == conf.get("GATEWAY_BREAKER_FAILURES"):
                metrics.breaker_open.labels(str(route.route_id)).set(1)
                log.warning(
                    "circuit breaker opened for route %s (%s:%s)", route.route_id, route.provider, route.upstream_model
                )

    def reset(self) -> None:
        self.states.clear()


breakers = Breakers()


# Failed attempts an upstream billed anyway (it reported usage on the failure): the route and that usage.
Billed = list[tuple[RouteEntry, UpstreamUsage]]


@dataclass(slots=True)
class Routed(Generic[T]):
    value: T
    route: RouteEntry
    attempts: int
    billed: Billed = field(default_factory=list)


class RoutingFailed(ApiError):
    """Every route failed (or none could be tried); carries how many attempts were made, the last route and the
    failed attempts upstream billed."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        attempts: int,
        route: RouteEntry | None,
        billed: Billed | None = None,
    ) -> None:
        super().__init__(status, code, message)
        self.attempts = attempts
        self.route = route
        self.billed = billed or []


def _request_error(exc: ProviderError, attempts: int, route: RouteEntry) -> RoutingFailed:
    """An upstream 4xx caused by the request: the client's error, named as such."""
    status = exc.status or 400
    if status in (400, 404, 413, 422):
        message = f"The upstream provider rejected the request: {exc.message.split(': ', 2)[-1]}"
        return RoutingFailed(
            400 if status == 404 else status, "invalid_request_error", message, attempts=attempts, route=route
        )
    return RoutingFailed(
        502,
        "upstream_error",
        "The upstream provider refused the gateway's credentials.",
        attempts=attempts,
        route=route,
    )


def _backoff(attempt: int) -> float:
    base = conf.get("GATEWAY_RETRY_BACKOFF_SECONDS")
    return random.uniform(0, base * (2**attempt))  # full jitter


async def call(
    routes: list[RouteEntry], fn: Callable[[Provider, RouteEntry], Awaitable[T]], *, use_breakers: bool = True
) -> Routed[T]:
    """Try `fn` on each route in order until one succeeds. Raises RoutingFailed (an ApiError):
    503 model_unavailable when no route could be tried, 504 upstream_timeout when the last failure was a
    timeout, 502 upstream_error otherwise, or the request's own 4xx."""
    attempts = 0
    last: ProviderError | None = None
    last_route: RouteEntry | None = None
    billed: Billed = []
    retries = conf.get("GATEWAY_ROUTE_RETRIES")
    for route in routes:
        if use_breakers and not breakers.healthy(route):
            continue
        provider = get_provider(route.config)
        for attempt in range(retries + 1):
            attempts += 1
            last_route = route
            if use_breakers:
                breakers.begin(route)
            labels = (route.provider, str(route.route_id))
            try:
                value = await fn(provider, route)
            except ProviderError as exc:
                metrics.child(metrics.upstream_attempts, *labels, "error").inc()
                metrics.child(metrics.upstream_errors, *labels, exc.kind).inc()
                if exc.billed is not None:
                    billed.append((route, exc.billed))
                if not exc.retryable:
                    if use_breakers:
                        breakers.success(route)  # it answered; the request was at fault
                    failed = _request_error(exc, attempts, route)
                    failed.billed = billed
                    raise failed from None
                last = exc
                if use_breakers:
                    breakers.failure(route)
                log.info("route %s:%s failed (%s): %s", route.provider, route.upstream_model, exc.kind, exc.message)
                # A timeout already cost the full timeout; another try on the same route is not worth it.
                if exc.kind == "timeout" or attempt == retries or (use_breakers and not breakers.healthy(route)):
                    break
                await asyncio.sleep(_backoff(attempt))
                continue
            metrics.child(metrics.upstream_attempts, *labels, "ok").inc()
            if use_breakers:
                breakers.success(route)
            return Routed(value, route, attempts, billed)
    if last is None:
        raise RoutingFailed(
            503,
            "model_unavailable",
            "No upstream route is available for this model right now.",
            attempts=attempts,
            route=last_route,
        )
    if last.kind == "timeout":
        raise RoutingFailed(
            504,
            "upstream_timeout",
            "The upstream provider timed out.",
            attempts=attempts,
            route=last_route,
            billed=billed,
        )
    raise RoutingFailed(
        502,
        "upstream_error",
        "The upstream provider failed to answer.",
        attempts=attempts,
        route=last_route,
        billed=billed,
    )
