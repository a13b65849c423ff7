"""Operators see events, endpoints and the delivery log in the admin, read-only, never a signing secret."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from accounts.models import User
from tests.webhooks.conftest import add_endpoint
from webhooks.events import emit
from webhooks.models import Delivery, Endpoint, Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops@tollgate.test", "correct-horse-battery"))
    return client


def test_the_admin_lists_and_shows_events_endpoints_and_deliveries_without_secrets(team, owner, operator, receiver):
    endpoint, secret = add_endpoint(team, owner, receiver.url)
    with transaction.atomic():
        event = emit(team_id=team.pk, type="balance.low", data={"object": "balance"})
    row = Delivery.objects.get(event=event)
    pages = [
        "/admin/webhooks/event/",
        f"/admin/webhooks/event/{event.pk}/change/",
        "/admin/webhooks/endpoint/",
        f"/admin/webhooks/endpoint/{endpoint.pk}/change/",
        "/admin/webhooks/delivery/",
        f"/admin/webhooks/delivery/{row.pk}/change/",
    ]
    for page in pages:
        response = operator.get(page)
        assert response.status_code == 200, page
        assert secret not in response.content.decode()
    assert endpoint.secret_hint in operator.get(pages[3]).content.decode()
    assert "balance.low" in operator.get(pages[1]).content.decode()
    assert operator.post(pages[3], {"url": "https://x.test"}).status_code == 403  # read-only
    assert Endpoint.objects.get(pk=endpoint.pk).url == receiver.url
    assert operator.get("/admin/webhooks/event/add/").status_code == 403
    assert Event.objects.count() == 1
