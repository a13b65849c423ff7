"""Billing fixtures: a funded Acme wallet, live and test keys, and a typical request's prices and metadata."""

from __future__ import annotations

import pytest

from accounts.auth import clear_cache
from accounts.keys import mint_key
from billing.pricing import NUSD_PER_USD, Prices, Usage
from billing.services import grant_credit
from billing.settlement import ReceiptMeta

USD = NUSD_PER_USD
PRICES = Prices(input_nusd=1_000, output_nusd=3_000, cached_nusd=250)  # $1 / $3 / $0.25 per million tokens
META = ReceiptMeta(
    endpoint="chat.completions",
    model_requested="demo-chat",
    model_routed="demo-chat",
    provider="simulator",
    upstream_model="sim-1",
    latency_ms=42,
    ttft_ms=7,
    key_label="ci …WXYZ",
)


def usage(prompt: int = 100, completion: int = 50, cached: int = 0) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


def fund(team, usd: int = 10):
    return grant_credit(team, amount_nusd=usd * USD, reason="test credit")


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def funded_team(team):
    fund(team, 10)
    return team


@pytest.fixture
def live_key(team, owner):
    return mint_key(team=team, name="ci", created_by=owner)


@pytest.fixture
def test_key(team, owner):
    return mint_key(team=team, name="sandbox", mode="test", created_by=owner)
