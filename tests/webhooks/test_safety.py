"""SSRF protection: in production an endpoint must be https and resolve only to public addresses, checked at
registration and again at every delivery (DNS can change); the delivery connects to the address it checked.
WEBHOOKS_ALLOW_PRIVATE lifts it for local development and tests."""

from __future__ import annotations

import pytest
from django.test import TestCase

from accounts.keys import mint_key
from tests.webhooks.conftest import add_endpoint
from webhooks import services
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    return settings


def register(team, owner, url):
    return services.create_endpoint(actor=services.Actor.for_user(owner, team.public_id), url=url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.8.9.10/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.0.0.5/hook", "private"),
        ("https://172.16.3.4/hook", "private"),
        ("https://192.168.1.10:8443/hook", "private"),
        ("https://[fc00::1]/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://[ff02::1]/hook", "multicast"),
        ("https://0.0.0.0/hook", "reserved"),
        ("https://100.64.0.1/hook", "reserved"),
        ("https://240.0.0.1/hook", "reserved"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[2002:7f00:1::1]/hook", "loopback"),  # 6to4 around 127.0.0.1
        ("https://localhost/hook", "loopback"),
    ],
)
def test_registration_refuses_addresses_webhooks_may_not_reach(team, owner, production, url, why):
    with pytest.raises(services.WebhookError) as refused:
        register(team, owner, url)
    assert refused.value.code == "forbidden_address" and refused.value.field == "url"
    assert why in refused.value.message
    assert not Endpoint.objects.exists()


def test_a_name_is_refused_if_any_of_its_addresses_is_private(team, owner, production, dns):
    dns["hooks.example.com"] = ["93.184.216.34", "10.1.2.3"]
    with pytest.raises(services.WebhookError, match="private address"):
        register(team, owner, "https://hooks.example.com/tollgate")
    dns["hooks.example.com"] = ["93.184.216.34", "2606:4700::1111"]
    assert (
        register(team, owner, "https://hooks.example.com/tollgate").endpoint.url == "https://hooks.example.com/tollgate"
    )


def test_a_name_that_does_not_resolve_is_refused(team, owner, production, dns):
    dns["gone.example.com"] = []
    with pytest.raises(services.WebhookError) as refused:
        register(team, owner, "https://gone.example.com/")
    assert refused.value.code == "unresolvable_host"


def test_plain_http_is_refused_in_production(team, owner, production, dns):
    dns["hooks.example.com"] = ["93.184.216.34"]
    with pytest.raises(services.WebhookError) as refused:
        register(team, owner, "http://hooks.example.com/")
    assert refused.value.code == "https_required"


def test_allow_private_lets_local_development_use_loopback_over_http(team, owner, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    assert register(team, owner, "http://127.0.0.1:9000/hook").endpoint.url == "http://127.0.0.1:9000/hook"


def test_the_address_is_checked_again_at_delivery_because_dns_can_change(team, owner, production, dns, receiver):
    dns["hooks.example.com"] = ["93.184.216.34"]
    endpoint = register(team, owner, "https://hooks.example.com/tollgate").endpoint
    dns["hooks.example.com"] = ["127.0.0.1"]  # rebinding to the machine itself
    with TestCase.captureOnCommitCallbacks(execute=True):
        mint_key(team=team, name="ci", created_by=owner)
    failed, retry = Delivery.objects.filter(endpoint=endpoint).order_by("id")
    assert failed.status == "failed" and failed.http_status is None
    assert failed.error.startswith("Not sent:") and "loopback" in failed.error
    assert retry.status == "pending"  # refused now, tried again later (DNS may be fixed by then)
    assert receiver.requests == []


def test_a_loopback_endpoint_registered_in_development_is_not_called_once_private_is_refused(
    team, owner, receiver, settings
):
    endpoint, _ = add_endpoint(team, owner, receiver.url)
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    with TestCase.captureOnCommitCallbacks(execute=True):
        mint_key(team=team, name="ci", created_by=owner)
    assert receiver.requests == []
    assert Delivery.objects.filter(endpoint=endpoint).order_by("id").first().error.startswith("Not sent:")


def test_the_delivery_connects_to_the_address_it_checked_and_keeps_the_host_name(team, owner, receiver, dns):
    # The first lookup (registration) and the check at delivery answer 127.0.0.1; any later lookup would answer
    # 127.0.0.2, where nothing listens: the request arrives only if the connection used the checked address.
    dns["receiver.test"] = lambda asked: ["127.0.0.1"] if asked < 2 else ["127.0.0.2"]
    endpoint, _ = add_endpoint(team, owner, f"http://receiver.test:{receiver.port}/hook")
    with TestCase.captureOnCommitCallbacks(execute=True):
        mint_key(team=team, name="ci", created_by=owner)
    [got] = receiver.requests
    assert got.header("Host") == f"receiver.test:{receiver.port}"
    assert Delivery.objects.get(endpoint=endpoint).status == "succeeded"
