"""Test scenarios, like Stripe's test cards: with a TEST key, a request asks to meet a failing world, so a customer
can exercise their retry and billing code without spending.

    Tollgate-Test-Scenario: timeout          (a header), or
    "model": "demo-chat@scenario=timeout"    (a model suffix, for clients that cannot set headers)

Nothing here answers a request itself. Each scenario is handed to the stage whose real failure it imitates, so
the status, envelope, headers and receipt are the ones a real failure produces:

- insufficient_balance: the hold stage refuses as a short wallet does (billing's InsufficientBalance → 402);
- rate_limited: the rate-limit stage refuses with a denied Decision of the key's own buckets (429, Retry-After,
  x-ratelimit-*), counting nothing, as a real refusal counts nothing;
- upstream_error, timeout, stream_cut, slow: a provider option of the simulator (the only upstream a test key
  reaches), which then fails the way an upstream does: a 5xx ProviderError (retried, then 502 and a failed
  receipt), a timeout ProviderError after a short delay (504), a stream that breaks after a few chunks (a
  `partial` receipt and an in-band error), or paced tokens.

Live keys never read the header (and a suffixed model name is just an unknown model to them).
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

from config.errors import ApiError
from gateway.providers.base import ProviderConfig

HEADER = "Tollgate-Test-Scenario"
SUFFIX = "@scenario="


class Scenario(StrEnum):
    INSUFFICIENT_BALANCE = "insufficient_balance"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_ERROR = "upstream_error"
    TIMEOUT = "timeout"
    STREAM_CUT = "stream_cut"
    SLOW = "slow"


# The ones the simulator plays (gateway/providers/simulator.py reads its `scenario` option).
SIMULATED = frozenset({Scenario.UPSTREAM_ERROR, Scenario.TIMEOUT, Scenario.STREAM_CUT, Scenario.SLOW})


def _parse(value: str, *, param: str) -> Scenario:
    try:
        return Scenario(value.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in Scenario)
        where = HEADER if param == HEADER else "the model suffix @scenario="
        raise ApiError(
            400,
            "invalid_test_scenario",
            f"Unknown test scenario '{value.strip()[:60]}' in {where}. Use one of: {names}.",
            param=param,
        ) from None


def read(headers: dict[str, str], request, payload: dict) -> Scenario | None:
    """The scenario a test key's request asks for, or None. A model suffix is removed from the request (and
    its payload), so the rest of the pipeline sees the plain model id. Only called for test keys."""
    from_header = None
    raw = headers.get(HEADER.lower(), "")
    if raw.strip():
        from_header = _parse(raw, param=HEADER)
    from_model = None
    model = request.model
    if isinstance(model, str) and SUFFIX in model:
        base, _, name = model.partition(SUFFIX)
        from_model = _parse(name, param="model")
        request.model = payload["model"] = base
    if from_header and from_model and from_header != from_model:
        raise ApiError(
            400,
            "invalid_test_scenario",
            f"The {HEADER} header asks for '{from_header}' but the model suffix for '{from_model}'; send one.",
            param=HEADER,
        )
    return from_header or from_model


def simulator_config(config: ProviderConfig, scenario: Scenario | None) -> ProviderConfig:
    """The simulator's configuration for this request: with the scenario as an option when it plays it."""
    if scenario not in SIMULATED:
        return config
    return dataclasses.replace(config, options={**(config.options or {}), "scenario": str(scenario)})
