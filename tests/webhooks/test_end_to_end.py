"""End to end on the live server with the official openai SDK: paid requests that take the balance below the
team's threshold send balance.low once (not once per request), from the settlement hot path, to a real receiver."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest
from django.core.management import call_command

from accounts.keys import mint_key
from billing.events import set_low_balance_threshold
from billing.models import Wallet
from billing.money import NUSD_PER_USD
from billing.services import grant_credit
from billing.settlement import unsettled
from tests.webhooks.conftest import add_endpoint, verifies
from webhooks.models import Event

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60), pytest.mark.django_db(transaction=True)]


def test_requests_crossing_the_threshold_send_balance_low_once(live, team, owner, receiver):
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=5 * NUSD_PER_USD, reason="e2e credit")
    _, secret = add_endpoint(team, owner, receiver.url, events=["balance.low"])
    set_low_balance_threshold(team, actor=owner, threshold_cents=500)  # exactly the balance: not below yet
    key = mint_key(team=team, name="e2e", created_by=owner).plaintext
    assert receiver.requests == []

    with openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0, timeout=20) as sdk:
        for n in range(5):
            sdk.chat.completions.create(
                model="demo-chat", messages=[{"role": "user", "content": f"hello {n}"}], max_tokens=8
            )
            if n == 0:
                assert receiver.wait_for(1, timeout=10)  # pushed, not polled
    assert unsettled.wait(timeout=10)

    [low] = receiver.requests
    assert verifies(low, secret)
    event = json.loads(low.body, parse_float=Decimal)
    assert event["type"] == "balance.low" and event["data"]["object"]["credits"] < 5
    assert Event.objects.filter(type="balance.low").count() == 1
    wallet = Wallet.objects.get(team=team)
    assert wallet.low_balance and wallet.balance_nusd < 5 * NUSD_PER_USD


@pytest.mark.parametrize(
    ("prompt", "status"), [("a red kite", "succeeded"), ("something forbidden", "moderation_rejected")]
)
def test_an_image_jobs_terminal_status_arrives_as_a_signed_event_without_polling(
    live, team, owner, receiver, settings, prompt, status
):
    """Issue 13: the customer submits a job and is told when it ends; nothing polls GET /v1/images/{id}."""
    import httpx

    settings.BACKGROUND_RUNNER = "thread"  # as in the embedded default: the job and the delivery run on the worker
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=5 * NUSD_PER_USD, reason="e2e credit")
    _, secret = add_endpoint(team, owner, receiver.url, events=[f"image.{status}"])
    key = mint_key(team=team, name="e2e", created_by=owner).plaintext
    try:
        submitted = httpx.post(
            f"{live.url}/v1/images",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "demo-image", "prompt": prompt, "size": "256x256"},
            timeout=10,
        )
        assert submitted.status_code == 202, submitted.text
        assert receiver.wait_for(1, timeout=20)
    finally:
        from config import background

        background.stop()
    [pushed] = receiver.requests
    assert verifies(pushed, secret)
    event = json.loads(pushed.body, parse_float=Decimal)
    assert event["type"] == f"image.{status}" and event["data"]["object"]["id"] == submitted.json()["id"]
    assert event["data"]["object"]["status"] == status
    if status == "succeeded":
        [url] = event["data"]["object"]["output_urls"]
        assert httpx.get(url, timeout=10).content.startswith(b"\x89PNG")  # anonymous-read link
    assert Event.objects.filter(type=f"image.{status}").count() == 1
