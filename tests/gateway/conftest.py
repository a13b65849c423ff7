"""Gateway fixtures: the seeded demo catalog, a funded Acme wallet, live and test keys, clean caches."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command

from accounts.auth import clear_cache
from accounts.keys import mint_key
from billing.pricing import NUSD_PER_USD
from billing.services import grant_credit
from gateway import catalog, providers, teams
from gateway.fallback import breakers
from tests.asgi import V1

USD = NUSD_PER_USD


def reset_gateway_state() -> None:
    """Forget every per-process cache a request leaves behind: keys, catalog, breakers, team settings, counters."""
    for reset in (clear_cache, catalog.invalidate, breakers.reset, teams.clear, cache.clear, providers.clear_cache):
        reset()


@pytest.fixture(autouse=True)
def _fresh_gateway_state(settings):
    # DB units run on the test's own thread/connection (the test transaction), as with thread_sensitive.
    settings.DB_THREAD_SENSITIVE = True
    settings.GATEWAY_RETRY_BACKOFF_SECONDS = 0
    reset_gateway_state()
    yield
    reset_gateway_state()


@pytest.fixture
def seeded(db):
    call_command("seed_catalog", quiet=True)


@pytest.fixture
def funded_team(team):
    grant_credit(team, amount_nusd=10 * USD, reason="test credit")
    return team


@pytest.fixture
def live_key(funded_team, owner, seeded) -> str:
    return mint_key(team=funded_team, name="ci", created_by=owner).plaintext


@pytest.fixture
def test_key(funded_team, owner, seeded) -> str:
    return mint_key(team=funded_team, name="sandbox", mode="test", created_by=owner).plaintext


@pytest.fixture
def v1(live_key) -> V1:
    """/v1 through the production ASGI application (tests/asgi.py), with a live key."""
    return V1(live_key)


def chat(**extra) -> dict:
    return {
        "model": "demo-chat",
        "messages": [{"role": "user", "content": "Hello, how are you?"}],
        "max_tokens": 16,
        **extra,
    }
