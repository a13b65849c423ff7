"""Routing and circuit breakers without a database or a network: gateway.fallback.call with fake upstreams.

What a client notices: a failing route is retried once and then skipped for the next; a request the
upstream rejects is not retried anywhere; a route that keeps failing stops being tried until its cooldown
ends, then gets exactly one trial; the error a client receives names what happened last.
"""

from __future__ import annotations

import pytest

from gateway import fallback
from gateway.catalog import RouteEntry
from gateway.fallback import Breakers, RoutingFailed
from gateway.providers.base import ProviderConfig, ProviderError


def route(route_id: int, name: str = "") -> RouteEntry:
    name = name or f"sim-{route_id}"
    return RouteEntry(
        route_id=route_id,
        provider=name,
        upstream_model="m",
        priority="primary",
        order=route_id,
        weight=1,
        enabled=True,
        config=ProviderConfig(kind="simulator", name=name),
    )


class Upstreams:
    """Per-route scripted outcomes: each call pops the next one ("ok" or a ProviderError)."""

    def __init__(self, **scripts: list) -> None:
        self.scripts = {int(k.removeprefix("r")): list(v) for k, v in scripts.items()}
        self.calls: list[int] = []

    async def __call__(self, provider, entry: RouteEntry) -> str:
        self.calls.append(entry.route_id)
        outcome = self.scripts[entry.route_id].pop(0) if self.scripts.get(entry.route_id) else "ok"
        if isinstance(outcome, ProviderError):
            raise outcome
        return f"answer from {entry.route_id}"


def down() -> ProviderError:
    return ProviderError("connect", "connection refused")


def timeout() -> ProviderError:
    return ProviderError("timeout", "read timed out")


def status(code: int) -> ProviderError:
    return ProviderError("http", f"upstream said {code}: nope", status=code)


@pytest.fixture(autouse=True)
def fast(settings, monkeypatch):
    settings.GATEWAY_ROUTE_RETRIES = 1
    settings.GATEWAY_RETRY_BACKOFF_SECONDS = 0.0
    settings.GATEWAY_BREAKER_FAILURES = 3
    settings.GATEWAY_BREAKER_COOLDOWN_SECONDS = 30.0
    clock = [1000.0]
    monkeypatch.setattr(fallback, "breakers", Breakers(clock=lambda: clock[0]))
    return clock


async def test_first_healthy_route_answers_in_one_attempt():
    upstream = Upstreams()
    routed = await fallback.call([route(1), route(2)], upstream)
    assert (routed.value, routed.route.route_id, routed.attempts) == ("answer from 1", 1, 1)
    assert upstream.calls == [1]


async def test_a_failure_is_retried_once_on_the_same_route():
    upstream = Upstreams(r1=[down()])
    routed = await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1, 1]
    assert (routed.route.route_id, routed.attempts) == (1, 2)


async def test_a_route_that_keeps_failing_falls_back_to_the_next():
    upstream = Upstreams(r1=[status(503), status(429)])
    routed = await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1, 1, 2]
    assert (routed.value, routed.attempts) == ("answer from 2", 3)


async def test_a_timeout_moves_on_without_retrying_the_same_route():
    upstream = Upstreams(r1=[timeout()])
    routed = await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1, 2]
    assert routed.route.route_id == 2


@pytest.mark.parametrize("code,client_status", [(400, 400), (404, 400), (413, 413), (422, 422)])
async def test_the_requests_own_error_is_returned_not_retried(code, client_status):
    upstream = Upstreams(r1=[status(code)])
    with pytest.raises(RoutingFailed) as caught:
        await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1]
    assert (caught.value.status, caught.value.code) == (client_status, "invalid_request_error")
    assert caught.value.message == "The upstream provider rejected the request: nope"


@pytest.mark.parametrize("code", [401, 403])
async def test_refused_gateway_credentials_are_the_gateways_problem(code):
    upstream = Upstreams(r1=[status(code)])
    with pytest.raises(RoutingFailed) as caught:
        await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1]
    assert (caught.value.status, caught.value.code) == (502, "upstream_error")
    assert "credentials" in caught.value.message


async def test_every_route_failing_is_a_502_naming_the_attempts():
    upstream = Upstreams(r1=[down(), down()], r2=[status(500), status(502)])
    with pytest.raises(RoutingFailed) as caught:
        await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1, 1, 2, 2]
    assert (caught.value.status, caught.value.code, caught.value.attempts) == (502, "upstream_error", 4)
    assert caught.value.route.route_id == 2


async def test_a_timeout_last_is_a_504():
    upstream = Upstreams(r1=[down(), down()], r2=[timeout()])
    with pytest.raises(RoutingFailed) as caught:
        await fallback.call([route(1), route(2)], upstream)
    assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")


async def test_no_routes_is_503_model_unavailable():
    with pytest.raises(RoutingFailed) as caught:
        await fallback.call([], Upstreams())
    assert (caught.value.status, caught.value.code, caught.value.attempts) == (503, "model_unavailable", 0)


async def test_the_breaker_opens_after_consecutive_failures_and_the_route_is_skipped(fast):
    upstream = Upstreams(r1=[down()] * 3)
    await fallback.call([route(1), route(2)], upstream)  # 2 failures, then route 2 answers
    await fallback.call([route(1), route(2)], upstream)  # 3rd failure opens it; the retry is not attempted
    assert upstream.calls == [1, 1, 2, 1, 2]
    assert not fallback.breakers.healthy(route(1))

    upstream.calls.clear()
    routed = await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [2]  # route 1 not even tried
    assert routed.attempts == 1


async def test_only_open_breakers_everywhere_is_503(fast):
    upstream = Upstreams(r1=[down()] * 3)
    for _ in range(2):
        await fallback.call([route(1), route(2)], upstream)
    with pytest.raises(RoutingFailed) as caught:
        await fallback.call([route(1)], upstream)
    assert caught.value.code == "model_unavailable"


async def test_after_the_cooldown_one_trial_is_let_through_and_success_closes_it(fast):
    clock = fast
    upstream = Upstreams(r1=[down()] * 3)
    for _ in range(2):
        await fallback.call([route(1), route(2)], upstream)
    breakers = fallback.breakers
    clock[0] += 29.0
    assert not breakers.healthy(route(1))
    clock[0] += 1.0
    assert breakers.healthy(route(1))

    breakers.begin(route(1))  # a trial is in flight: no second one in the meantime
    assert not breakers.healthy(route(1))
    breakers.success(route(1))
    assert breakers.healthy(route(1))

    upstream.calls.clear()
    await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1]


async def test_a_failed_trial_reopens_the_breaker_for_another_cooldown(fast):
    clock = fast
    upstream = Upstreams(r1=[down()] * 4)
    for _ in range(2):
        await fallback.call([route(1), route(2)], upstream)
    clock[0] += 30.0
    upstream.calls.clear()
    routed = await fallback.call([route(1), route(2)], upstream)
    assert upstream.calls == [1, 2]  # the one trial failed; no retry on an open breaker
    assert routed.route.route_id == 2
    clock[0] += 29.0
    assert not fallback.breakers.healthy(route(1))


async def test_a_rejected_request_does_not_count_against_the_route(fast):
    upstream = Upstreams(r1=[down(), down(), status(400), down(), down()])
    await fallback.call([route(1), route(2)], upstream)  # two failures
    with pytest.raises(RoutingFailed):
        await fallback.call([route(1), route(2)], upstream)  # the upstream answered: counter resets
    await fallback.call([route(1), route(2)], upstream)  # two more failures: still under three in a row
    assert fallback.breakers.healthy(route(1))


async def test_breakers_can_be_bypassed(fast):
    upstream = Upstreams(r1=[down()] * 6)
    for _ in range(2):
        await fallback.call([route(1), route(2)], upstream)
    upstream.calls.clear()
    await fallback.call([route(1), route(2)], upstream, use_breakers=False)
    assert upstream.calls == [1, 1, 2]
