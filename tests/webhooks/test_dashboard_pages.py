"""Settings → Webhooks in the dashboard (Django test client; the browser test drives the same pages): owners
and admins only, the secret shown once and never cached, test events and redelivery into the delivery log, the
low-balance threshold, bad input re-rendered with a 400 and nothing changed."""

from __future__ import annotations

import pytest

from accounts.models import AuditLog
from billing.models import Wallet
from billing.money import NUSD_PER_USD
from tests.dashboard.conftest import ROLES, client_for, expect
from tests.webhooks.conftest import add_endpoint
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db
MANAGERS = {"owner", "admin_user"}


def url(team, tail: str = "") -> str:
    return f"/t/{team.public_id}/settings/webhooks/{tail}"


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.mark.parametrize("who", ROLES)
def test_only_owners_and_admins_open_the_webhooks_page(request, team, who):
    client = client_for(request.getfixturevalue(who))
    assert client.get(url(team)).status_code == expect(who, MANAGERS)
    if who != "outsider":
        overview = client.get(f"/t/{team.public_id}/").content.decode()
        assert (f'href="{url(team)}"' in overview) is (who in MANAGERS)


@pytest.mark.parametrize("who", ["developer", "viewer", "billing_user", "outsider"])
def test_no_one_else_can_add_change_or_test_an_endpoint(request, team, owner, receiver, who):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    client = client_for(request.getfixturevalue(who))
    expected = 404 if who == "outsider" else 403
    assert client.post(url(team, "new/"), {"url": receiver.url, "all_events": "on"}).status_code == expected
    assert (
        client.post(url(team, f"{endpoint.public_id}/"), {"url": "http://x.test", "all_events": "on"}).status_code
        == expected
    )
    assert client.post(url(team, f"{endpoint.public_id}/test/")).status_code == expected
    assert client.post(url(team, f"{endpoint.public_id}/rotate/"), {"grace_seconds": "0"}).status_code == expected
    assert client.post(url(team, f"{endpoint.public_id}/delete/")).status_code == expected
    assert list(Endpoint.objects.values_list("url", flat=True)) == [receiver.url]
    assert not Delivery.objects.exists()


def test_adding_an_endpoint_shows_its_secret_once_and_never_caches_it(team, owner, receiver):
    client = client_for(owner)
    response = client.post(
        url(team, "new/"),
        {"url": receiver.url, "description": "orders", "events": ["topup.succeeded"], "enabled": "on"},
    )
    assert response.status_code == 200
    endpoint = Endpoint.objects.get()
    [secret] = endpoint.signing_secrets()
    page = response.content.decode()
    assert secret in page and response["Cache-Control"] == "no-store, max-age=0"
    assert (endpoint.events, endpoint.description, endpoint.enabled) == (["topup.succeeded"], "orders", True)

    again = client.get(url(team, f"{endpoint.public_id}/")).content.decode()
    listing = client.get(url(team)).content.decode()
    assert secret not in again and secret not in listing
    assert endpoint.secret_hint in again and receiver.url in listing


def test_a_bad_url_is_shown_back_with_a_400_and_nothing_is_created(team, owner, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    response = client_for(owner).post(url(team, "new/"), {"url": "http://10.0.0.1/hook", "all_events": "on"})
    assert response.status_code == 400
    assert "https://" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_choosing_no_event_type_is_refused(team, owner, receiver):
    response = client_for(owner).post(url(team, "new/"), {"url": receiver.url})
    assert response.status_code == 400 and "at least one event type" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_editing_disabling_and_enabling_again(team, owner, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="failing for 3 days")
    client = client_for(owner)
    response = client.post(
        url(team, f"{endpoint.public_id}/"), {"url": receiver.url, "events": ["key.created"], "enabled": "on"}
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.events, endpoint.enabled, endpoint.disabled_reason) == (["key.created"], True, "")


def test_sending_a_test_event_and_redelivering_it_fill_the_delivery_log(team, owner, receiver, committed):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    client = client_for(owner)
    with committed():
        response = client.post(url(team, f"{endpoint.public_id}/test/"))
    assert response.status_code == 302 and len(receiver.requests) == 1
    first = Delivery.objects.get()
    with committed():
        client.post(url(team, f"{endpoint.public_id}/deliveries/{first.public_id}/redeliver/"))
    assert [r.header("Tollgate-Delivery-Attempt") for r in receiver.requests] == ["1", "2"]

    log = client.get(url(team, f"{endpoint.public_id}/")).content.decode()
    assert log.count('data-event="' + first.event.public_id + '"') == 2
    assert "HTTP 200" in log and "#2" in log and "manual" in log and " ms" in log
    assert AuditLog.objects.filter(action="webhook.redelivered").exists()


def test_rotating_the_secret_shows_the_new_one_once(team, owner, receiver):
    endpoint, old = add_endpoint(team, owner, receiver.url)
    response = client_for(owner).post(url(team, f"{endpoint.public_id}/rotate/"), {"grace_seconds": "3600"})
    endpoint.refresh_from_db()
    new, previous = endpoint.signing_secrets()
    assert previous == old and new in response.content.decode() and old not in response.content.decode()
    assert response["Cache-Control"] == "no-store, max-age=0"


def test_deleting_an_endpoint(team, owner, receiver):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    response = client_for(owner).post(url(team, f"{endpoint.public_id}/delete/"))
    assert response.status_code == 302 and not Endpoint.objects.exists()


def test_the_low_balance_threshold_is_set_and_turned_off_from_the_page(team, owner):
    client = client_for(owner)
    assert client.post(url(team, "low-balance/"), {"threshold_usd": "5.50"}).status_code == 302
    assert Wallet.objects.get(team=team).low_balance_threshold_nusd == 55 * NUSD_PER_USD // 10
    assert "$5.50" in client.get(url(team)).content.decode()
    assert client.post(url(team, "low-balance/"), {"threshold_usd": ""}).status_code == 302
    assert Wallet.objects.get(team=team).low_balance_threshold_nusd is None


@pytest.mark.parametrize("value", ["-1", "abc", "5.555", "2000000"])
def test_a_bad_threshold_is_a_400_and_changes_nothing(team, owner, value):
    response = client_for(owner).post(url(team, "low-balance/"), {"threshold_usd": value})
    assert response.status_code == 400
    assert Wallet.objects.get(team=team).low_balance_threshold_nusd is None
