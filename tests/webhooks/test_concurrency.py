"""On PostgreSQL: concurrent workers never break the webhook rules. balance.low goes out once per crossing however
many checks race; a delivery claimed by several workers is sent once; the 16-endpoint limit and the attempt
numbers of concurrent redeliveries hold."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import transaction

from billing import events as billing_events
from billing.models import Wallet
from billing.money import NUSD_PER_USD
from tests.billing.conftest import fund
from tests.billing.test_concurrency import run_threads
from tests.conftest import requires_postgres
from tests.webhooks.conftest import add_endpoint
from webhooks import delivery, services
from webhooks.events import emit
from webhooks.models import Delivery, Endpoint, Event

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def test_twenty_racing_low_balance_checks_send_one_event(team, owner, receiver):
    add_endpoint(team, owner, receiver.url, events=["balance.low"])
    fund(team, 2)
    wallet = Wallet.objects.get(team=team)
    Wallet.objects.filter(pk=wallet.pk).update(low_balance_threshold_nusd=5 * NUSD_PER_USD)

    results = run_threads(20, lambda i: billing_events.check_low_balance(wallet.pk))

    assert Counter(results) == {"low": 1, "unchanged": 19}
    assert Event.objects.filter(type="balance.low").count() == 1
    assert [r.header("Tollgate-Event-Type") for r in receiver.requests] == ["balance.low"]


def test_a_delivery_claimed_by_ten_workers_at_once_is_sent_once(team, owner, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False)  # store the event without sending it yet
    with transaction.atomic():
        event = emit(team_id=team.pk, type="balance.low", data={})
    row = Delivery.objects.create(endpoint=endpoint, event=event, manual=True)

    results = run_threads(10, lambda i: delivery.attempt(row.pk))

    assert Counter(results) == {"delivered": 1, "skipped": 9}
    assert len(receiver.requests) == 1


def test_concurrent_creations_cannot_pass_the_endpoint_limit(team, owner, receiver):
    for n in range(services.MAX_ENDPOINTS - 1):
        add_endpoint(team, owner, f"{receiver.url}/{n}")

    def create(i: int):
        return services.create_endpoint(
            actor=services.Actor.for_user(owner, team.public_id), url=f"{receiver.url}/c{i}"
        )

    results = run_threads(6, create)

    outcomes = Counter("ok" if isinstance(r, services.WithSecret) else r.code for r in results)
    assert outcomes == {"ok": 1, "too_many_endpoints": 5}
    assert Endpoint.objects.filter(team=team).count() == services.MAX_ENDPOINTS


def test_concurrent_redeliveries_get_distinct_attempt_numbers(team, owner, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    with transaction.atomic():
        emit(team_id=team.pk, type="balance.low", data={})
    first = Delivery.objects.get(endpoint=endpoint)
    actor = services.Actor.for_user(owner, team.public_id)

    results = run_threads(5, lambda i: services.redeliver(endpoint, first.public_id, actor=actor).attempt)

    assert sorted(results) == [2, 3, 4, 5, 6]
    assert sorted(r.header("Tollgate-Delivery-Attempt") for r in receiver.requests) == ["1", "2", "3", "4", "5", "6"]
