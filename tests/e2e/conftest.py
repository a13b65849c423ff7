"""End-to-end fixtures: a funded team with a key on the shared live ASGI server (`live`, tests/live_server.py)
and the official `openai` SDK pointed at it; `upstream` (tests/gateway/misbehaving_upstream.py) misbehaves."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from accounts.keys import mint_key
from billing.pricing import NUSD_PER_USD
from billing.services import grant_credit
from billing.settlement import unsettled
from gateway import catalog
from gateway.models import Provider, Route
from gateway.price_book import create_model
from tests.gateway.conftest import reset_gateway_state
from tests.gateway.misbehaving_upstream import MisbehavingUpstream

USD = NUSD_PER_USD


@pytest.fixture(autouse=True)
def _fresh_state(settings):
    settings.GATEWAY_RETRY_BACKOFF_SECONDS = 0
    reset_gateway_state()
    yield
    reset_gateway_state()


@pytest.fixture
def acme(live, team):
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=10 * USD, reason="e2e credit")
    return team


@pytest.fixture
def live_key(acme, owner) -> str:
    return mint_key(team=acme, name="e2e", created_by=owner).plaintext


@pytest.fixture
def base_url(live) -> str:
    return f"{live.url}/v1"


@pytest.fixture
def sdk(base_url, live_key):
    import openai

    with openai.OpenAI(base_url=base_url, api_key=live_key, max_retries=0, timeout=20) as client:
        yield client


def settled() -> None:
    """Wait until the live server (this process) has written the settlements it records after replying."""
    assert unsettled.wait(timeout=10), "settlements still pending after 10 s"


def flaky_model(
    upstream: MisbehavingUpstream,
    mode: str,
    *,
    backup: bool = True,
    timeout: float = 2.0,
    read_timeout: float = 1.0,
    base_url: str | None = None,
) -> str:
    """A catalog model whose primary route is the misbehaving upstream (in `mode`), backed by the simulator."""
    provider, _ = Provider.objects.get_or_create(
        slug="flaky",
        defaults={
            "kind": "openai",
            "base_url": base_url or upstream.base_url,
            "timeout_seconds": timeout,
            "connect_timeout_seconds": 1.0,
            "options": {"read_timeout_seconds": read_timeout},
        },
    )
    provider.api_key = "sk-upstream-test"
    provider.save()
    public_id = f"flaky-{mode}"
    model = create_model(
        public_id, input_price_nusd=1_000, output_price_nusd=2_000, supports_tools=True, supports_json=True
    )
    Route.objects.create(model=model, provider=provider, upstream_model=mode, priority="primary")
    if backup:
        Route.objects.create(
            model=model, provider=Provider.objects.get(slug="simulator"), upstream_model="sim", priority="backup"
        )
    catalog.invalidate()
    return public_id


@pytest.fixture
def claude(live, live_key):
    """The official `anthropic` SDK pointed at Tollgate: only the base URL and the key change."""
    import anthropic

    with anthropic.Anthropic(base_url=live.url, api_key=live_key, max_retries=0, timeout=20) as client:
        yield client


def anthropic_model(upstream: MisbehavingUpstream, public_id: str = "claude-native") -> str:
    """A catalog model routed to an Anthropic provider whose upstream is the scripted test server."""
    provider = Provider.objects.create(slug="anthropic-test", kind="anthropic", base_url=upstream.root_url)
    provider.api_key = "sk-ant-upstream"
    provider.save()
    model = create_model(
        public_id,
        input_price_nusd=3_000,
        cached_price_nusd=300,
        output_price_nusd=15_000,
        supports_tools=True,
    )
    Route.objects.create(model=model, provider=provider, upstream_model="claude-sonnet-4-5", priority="primary")
    catalog.invalidate()
    return public_id
