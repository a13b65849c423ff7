"""Upstream cost and margin on every receipt: the serving route's cost prices at the hold's moment times the same
usage, plus failed attempts an upstream billed anyway; test receipts record none."""

from __future__ import annotations

import orjson
import pytest
from django.core.management import call_command

from accounts.keys import mint_key
from billing import pricing, settlement
from billing.models import Receipt
from billing.services import grant_credit
from billing.settlement import UpstreamBill, UpstreamPrices
from gateway import catalog, price_book
from gateway.models import Provider, Route
from gateway.price_book import create_model
from tests.asgi import V1
from tests.billing.calls import place_hold
from tests.billing.conftest import META, PRICES, USD, usage

COST = UpstreamPrices(pricing.Prices(input_nusd=400, output_nusd=1_200, cached_nusd=100), version="cv_test")


def test_a_receipt_records_the_upstream_cost_of_the_same_usage(funded_team, live_key):
    hold = place_hold(team_id=funded_team.id, key_id=live_key.key.id, request_id="r1", amount_nusd=USD, is_test=False)
    priced = settlement.price(
        hold, usage=usage(prompt=100, completion=50, cached=20), prices=PRICES, meta=META, upstream=COST
    )
    receipt = settlement.record_sync(priced)
    receipt.refresh_from_db()
    assert receipt.total_cost_nusd == 100 * 1_000 + 20 * 250 + 50 * 3_000
    assert receipt.upstream_cost_nusd == 100 * 400 + 20 * 100 + 50 * 1_200
    assert receipt.cost_version == "cv_test"
    assert receipt.margin_nusd == receipt.total_cost_nusd - receipt.upstream_cost_nusd == 153_000


def test_what_upstream_billed_is_not_clamped_with_the_charge(funded_team):
    hold = place_hold(team_id=funded_team.id, key_id=None, request_id="r2", amount_nusd=10_000, is_test=False)
    receipt = settlement.record_sync(
        settlement.price(hold, usage=usage(prompt=100, completion=100), prices=PRICES, meta=META, upstream=COST)
    )
    assert receipt.total_cost_nusd == 10_000  # the customer pays at most the hold
    assert receipt.upstream_cost_nusd == 100 * 400 + 100 * 1_200  # upstream billed what it served: a loss
    assert receipt.margin_nusd < 0


def test_failed_attempts_upstream_billed_are_on_the_receipt(funded_team):
    hold = place_hold(team_id=funded_team.id, key_id=None, request_id="r3", amount_nusd=USD, is_test=False)
    billed = [UpstreamBill(pricing.Usage(prompt_tokens=30, completion_tokens=10), COST)]
    served = settlement.record_sync(
        settlement.price(
            hold, usage=usage(prompt=10, completion=10), prices=PRICES, meta=META, upstream=COST, billed=billed
        )
    )
    assert served.upstream_cost_nusd == (10 * 400 + 10 * 1_200) + (30 * 400 + 10 * 1_200)
    other = place_hold(team_id=funded_team.id, key_id=None, request_id="r4", amount_nusd=USD, is_test=False)
    failed = settlement.release_sync(other, meta=META, error_code="upstream_error", billed=billed)
    assert (failed.status, failed.total_cost_nusd, failed.upstream_cost_nusd) == ("failed", 0, 24_000)


def test_a_test_receipt_records_no_upstream_cost(funded_team, test_key):
    hold = place_hold(team_id=funded_team.id, key_id=test_key.key.id, request_id="r5", amount_nusd=USD, is_test=True)
    receipt = settlement.record_sync(
        settlement.price(
            hold, usage=usage(), prices=PRICES, meta=META, upstream=COST, billed=[UpstreamBill(usage(), COST)]
        )
    )
    assert receipt.is_test and receipt.upstream_cost_nusd == 0 and receipt.cost_version == ""


# --- through the gateway ------------------------------------------------------------------------------------


@pytest.fixture
def gateway_key(funded_team, owner, settings):
    from tests.gateway.conftest import reset_gateway_state

    settings.DB_THREAD_SENSITIVE = True
    settings.GATEWAY_RETRY_BACKOFF_SECONDS = 0
    reset_gateway_state()
    call_command("seed_catalog", quiet=True)
    yield mint_key(team=funded_team, name="ci", created_by=owner).plaintext
    reset_gateway_state()


CHAT = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 16}


def test_every_live_request_records_the_serving_routes_cost_and_its_version(gateway_key):
    for body in (CHAT, {**CHAT, "stream": True}):
        response = V1(gateway_key).post("/chat/completions", body)
        receipt = Receipt.objects.get(request_id=response["X-Request-Id"])
        cost = price_book.current_cost(Route.objects.get(model__public_id="demo-chat"))
        assert receipt.cost_version == cost.public_id
        assert receipt.upstream_cost_nusd == receipt.prompt_tokens * 300 + receipt.completion_tokens * 900 > 0
        assert receipt.margin_nusd == receipt.total_cost_nusd - receipt.upstream_cost_nusd > 0
    image = V1(gateway_key).post("/images/generations", {"model": "demo-image", "prompt": "x", "quality": "hd"})
    receipt = Receipt.objects.get(request_id=image["X-Request-Id"])
    assert (receipt.total_cost_nusd, receipt.upstream_cost_nusd) == (80_000_000, 48_000_000)
    assert "upstream_cost" not in orjson.dumps(image.json()).decode()  # the operator's cost is never shown to teams


def test_a_route_without_cost_prices_records_zero_and_no_version(gateway_key, upstream):
    provider = Provider.objects.create(slug="nocost", kind="openai", base_url=upstream.base_url, timeout_seconds=5)
    model = create_model("nocost-model", input_price_nusd=1_000, output_price_nusd=2_000)
    Route.objects.create(model=model, provider=provider, upstream_model="ok")
    catalog.invalidate()
    receipt = Receipt.objects.get(
        request_id=V1(gateway_key).post("/chat/completions", {**CHAT, "model": "nocost-model"})["X-Request-Id"]
    )
    assert receipt.total_cost_nusd > 0 and (receipt.upstream_cost_nusd, receipt.cost_version) == (0, "")


def _flaky_with_billed_failure(upstream, *, backup: bool) -> str:
    """A primary route whose upstream answers 500 but reports usage it bills, backed (or not) by the simulator."""
    provider = Provider.objects.create(
        slug="billing-flaky", kind="openai", base_url=upstream.base_url, timeout_seconds=5
    )
    model = create_model("flaky-billed", input_price_nusd=1_000, output_price_nusd=2_000)
    primary = Route.objects.create(model=model, provider=provider, upstream_model="status-500", priority="primary")
    price_book.add_cost_version(primary, price_book.Prices(500, 0, 1_000))
    if backup:
        sim = Route.objects.create(
            model=model, provider=Provider.objects.get(slug="simulator"), upstream_model="sim", priority="backup"
        )
        price_book.add_cost_version(sim, price_book.Prices(100, 0, 100))
    catalog.invalidate()
    error = {
        "error": {"message": "overloaded after generating", "type": "server_error"},
        "usage": {"prompt_tokens": 40, "completion_tokens": 7},
    }
    upstream.script("/v1/chat/completions", orjson.dumps(error), status=500, times=None)
    return model.public_id


def test_a_failed_attempt_upstream_billed_is_added_to_the_receipt_of_the_route_that_answered(
    gateway_key, upstream, settings
):
    settings.GATEWAY_ROUTE_RETRIES = 0
    model = _flaky_with_billed_failure(upstream, backup=True)
    response = V1(gateway_key).post("/chat/completions", {**CHAT, "model": model})
    assert response.status_code == 200 and response.json()["routing"]["provider"] == "simulator"
    receipt = Receipt.objects.get(request_id=response["X-Request-Id"])
    served = receipt.prompt_tokens * 100 + receipt.completion_tokens * 100
    assert receipt.upstream_cost_nusd == served + (40 * 500 + 7 * 1_000)


def test_a_request_every_route_failed_records_what_upstream_billed_on_its_failed_receipt(
    gateway_key, upstream, settings
):
    settings.GATEWAY_ROUTE_RETRIES = 1  # two attempts on the one route, both billed
    model = _flaky_with_billed_failure(upstream, backup=False)
    response = V1(gateway_key).post("/chat/completions", {**CHAT, "model": model})
    assert response.status_code == 502
    receipt = Receipt.objects.get(request_id=response["X-Request-Id"])
    assert (receipt.status, receipt.total_cost_nusd) == ("failed", 0)
    assert receipt.upstream_cost_nusd == 2 * (40 * 500 + 7 * 1_000) and receipt.margin_nusd < 0


def test_credit_is_charged_as_before(funded_team):
    grant_credit(funded_team, amount_nusd=USD, reason="more")  # margins change nothing about what teams pay
    hold = place_hold(team_id=funded_team.id, key_id=None, request_id="r6", amount_nusd=USD, is_test=False)
    receipt = settlement.record_sync(settlement.price(hold, usage=usage(), prices=PRICES, meta=META, upstream=COST))
    from billing.models import Wallet

    assert Wallet.objects.get(team=funded_team).balance_nusd == 11 * USD - receipt.total_cost_nusd


def test_an_image_jobs_receipt_carries_its_cost_version_project_and_price_version(
    gateway_key, funded_team, owner, django_capture_on_commit_callbacks
):
    from accounts.projects import create_project
    from billing.models import SpendCounter
    from gateway.models import CatalogModel, ImageJob

    project = create_project(actor=None, team=funded_team, name="art", monthly_budget_nusd=USD)
    key = mint_key(team=funded_team, name="art", created_by=owner, project=project).plaintext
    with django_capture_on_commit_callbacks(execute=True):
        submitted = V1(key).post("/images", {"model": "demo-image", "prompt": "a lighthouse", "max_cost_usd": "0.05"})
    assert submitted.status_code == 202, submitted.content
    job = ImageJob.objects.get(public_id=submitted.json()["id"])
    assert job.status == "succeeded" and job.hold_counted
    receipt = Receipt.objects.get(public_id=job.receipt_id)
    version = price_book.current_price(CatalogModel.objects.get(public_id="demo-image"))
    assert (receipt.total_cost_nusd, receipt.upstream_cost_nusd) == (40_000_000, 24_000_000)
    assert receipt.price_version == version.public_id and receipt.cost_version.startswith("cv_")
    assert receipt.project_id == project.pk and receipt.max_cost_nusd == 50_000_000
    assert SpendCounter.objects.get(project=project).used_nusd == 40_000_000  # the hold became the cost
