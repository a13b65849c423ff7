"""Log-in rate limits (reliability defect 6): wrong passwords lock out the account tried, never another
account on the same address; the client address is the one behind TRUSTED_PROXIES."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import make_user


@pytest.fixture(autouse=True)
def _limits_on(settings):
    settings.ACCOUNT_RATE_LIMITS = settings.LOGIN_RATE_LIMITS  # what production runs with


def log_in(client: Client, email: str, password: str, **extra):
    return client.post("/login/", {"login": email, "password": password}, **extra)


def test_wrong_passwords_for_one_account_never_lock_out_another_on_the_same_address(db):
    make_user("alice@acme.test", "alice-password-1")
    make_user("bob@acme.test", "bob-password-1")
    office = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(12):  # more than allauth's default of 10 failures a minute per address
        log_in(office, "alice@acme.test", "wrong")
    refused = log_in(office, "alice@acme.test", "alice-password-1")
    assert refused.status_code in (200, 429) and "_auth_user_id" not in office.session  # alice is locked out
    bob = Client(REMOTE_ADDR="203.0.113.7")
    response = log_in(bob, "bob@acme.test", "bob-password-1")
    assert response.status_code == 302 and "_auth_user_id" in bob.session


def test_behind_a_trusted_proxy_the_address_limit_counts_each_client_apart(db, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    settings.ACCOUNT_RATE_LIMITS = {"login": "3/m/ip"}
    users = [make_user(f"user{i}@acme.test", f"password-{i}-long") for i in range(5)]
    for i, user in enumerate(users):  # five people through one load balancer, each from their own address
        client = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        response = log_in(client, user.email, f"password-{i}-long")
        assert response.status_code == 302, (i, response.status_code)
    same = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.200")
    codes = [log_in(same, users[0].email, "password-0-long").status_code for _ in range(4)]
    assert codes[-1] == 429  # one address over its limit is still refused
