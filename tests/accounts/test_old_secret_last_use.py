"""While a rotated key's old secret is in its grace window, the keys page (and the key API) show when the old
secret was last used and from which address, so a customer knows when it is safe to revoke early."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.utils import timezone

from accounts import auth
from accounts.keys import KeyActor, mint_key, rotate_key
from accounts.models import ApiKey
from tests.asgi import request
from tests.dashboard.conftest import client_for

pytestmark = pytest.mark.django_db


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def clock(monkeypatch, settings) -> FakeMonotonic:
    settings.DB_THREAD_SENSITIVE = True
    auth.clear_cache()
    fake = FakeMonotonic()
    monkeypatch.setattr(auth, "monotonic", fake)
    yield fake
    auth.clear_cache()


def call(secret: str, ip: str) -> int:
    """GET /v1/models through the production ASGI app, from `ip`."""
    response = async_to_sync(request)(
        "GET", "/v1/models", headers={"Authorization": f"Bearer {secret}"}, client=(ip, 40000)
    )
    return response.status_code


def next_minute(clock: FakeMonotonic) -> None:
    """Past the once-a-minute throttle, in this process (the clock) and across processes (the cache marker)."""
    clock.t += 61
    cache.clear()
    auth.clear_cache()


@pytest.fixture
def rotated(team, owner):
    minted = mint_key(team=team, name="billing-service", created_by=owner)
    new = rotate_key(minted.key, actor=KeyActor.for_user(owner, team), grace_seconds=3600)
    return minted.plaintext, new.plaintext, new.key


def test_a_request_with_the_old_secret_records_when_and_from_where(rotated):
    old, _new, key = rotated
    assert call(old, "203.0.113.7") == 200
    key.refresh_from_db()
    assert key.previous_last_used_ip == "203.0.113.7"
    assert key.previous_last_used_at is not None
    assert key.last_used_at == key.previous_last_used_at  # the key was used, whichever secret it was


def test_the_new_secret_being_busy_does_not_hide_that_the_old_one_is_still_used(rotated, clock):
    old, new, key = rotated
    for _ in range(5):
        assert call(new, "198.51.100.1") == 200
        clock.t += 1
    key.refresh_from_db()
    assert key.last_used_at is not None and key.previous_last_used_at is None  # only the new secret so far
    assert call(old, "203.0.113.50") == 200  # same minute as the new secret's uses
    key.refresh_from_db()
    assert key.previous_last_used_ip == "203.0.113.50"


def test_the_old_secrets_use_is_written_at_most_once_a_minute_and_then_moves_on(rotated, clock):
    old, _new, key = rotated
    assert call(old, "203.0.113.7") == 200
    key.refresh_from_db()
    first = key.previous_last_used_at
    clock.t += 30
    assert call(old, "203.0.113.8") == 200
    key.refresh_from_db()
    assert (key.previous_last_used_at, key.previous_last_used_ip) == (first, "203.0.113.7")

    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        next_minute(clock)
        assert call(old, "2001:db8::5") == 200
    key.refresh_from_db()
    assert key.previous_last_used_ip == "2001:db8::5" and key.previous_last_used_at > first


def test_the_async_inference_path_records_it_too(funded_team_for_test_key):
    old_test_key, key = funded_team_for_test_key
    response = async_to_sync(request)(
        "POST",
        "/v1/chat/completions",
        body=b'{"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}',
        headers={"Authorization": f"Bearer {old_test_key}"},
        client=("192.0.2.44", 40000),
    )
    assert response.status_code == 200, response.content
    key.refresh_from_db()
    assert key.previous_last_used_ip == "192.0.2.44"


@pytest.fixture
def funded_team_for_test_key(team, owner):
    from django.core.management import call_command

    call_command("seed_catalog", quiet=True)
    minted = mint_key(team=team, name="sandbox", mode="test", created_by=owner)
    new = rotate_key(minted.key, actor=KeyActor.for_user(owner, team), grace_seconds=600)
    return minted.plaintext, new.key


def test_rotating_again_starts_from_not_used(rotated, owner, team):
    old, _new, key = rotated
    call(old, "203.0.113.7")
    again = rotate_key(ApiKey.objects.get(pk=key.pk), actor=KeyActor.for_user(owner, team), grace_seconds=60)
    assert (again.key.previous_last_used_at, again.key.previous_last_used_ip) == (None, None)


def test_the_keys_page_shows_the_old_secrets_last_use_while_the_grace_window_is_open(rotated, owner, team, outsider):
    old, _new, key = rotated
    page = client_for(owner).get(f"/t/{team.public_id}/keys/").content.decode()
    assert "old secret not used since the rotation" in page

    call(old, "203.0.113.7")
    page = client_for(owner).get(f"/t/{team.public_id}/keys/").content.decode()
    assert "old secret last used" in page and "just now" in page and "203.0.113.7" in page

    assert client_for(outsider).get(f"/t/{team.public_id}/keys/").status_code == 404

    with time_machine.travel(timezone.now() + timedelta(hours=2)):  # the grace window has closed
        page = client_for(owner).get(f"/t/{team.public_id}/keys/").content.decode()
    assert 'data-testid="old-secret-use"' not in page and "203.0.113.7" not in page


def test_the_key_api_reports_it_during_the_grace_window_only(rotated, owner, team):
    old, _new, key = rotated
    call(old, "203.0.113.7")
    body = client_for(owner).get(f"/api/v1/keys/{key.public_id}/").json()
    assert body["old_secret_last_used_ip"] == "203.0.113.7"
    assert body["old_secret_last_used_at"] is not None
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        body = client_for(owner).get(f"/api/v1/keys/{key.public_id}/").json()
    assert (body["old_secret_last_used_at"], body["old_secret_last_used_ip"]) == (None, None)
