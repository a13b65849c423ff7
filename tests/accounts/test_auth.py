"""Authenticating /v1 requests by API key: every refusal, the cache, grace windows, IP allow-lists."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import auth, keyformat
from accounts.keys import KeyActor, mint_key, revoke_key, rotate_key
from accounts.models import ApiKey
from config import net
from config.errors import ApiError


@pytest.fixture(autouse=True)
def _fresh_cache():
    auth.clear_cache()
    yield
    auth.clear_cache()


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(auth, "monotonic", fake)
    return fake


def refusal(raw, *, scope="inference", ip="203.0.113.9") -> ApiError:
    with pytest.raises(ApiError) as info:
        auth.authenticate(raw, client_ip=ip, scope=scope)
    return info.value


# --- refusals ----------------------------------------------------------------------------------


def test_it_refuses_a_request_without_a_key(db):
    err = refusal(None)
    assert (err.status, err.code) == (401, "invalid_api_key")
    assert "Missing API key" in err.message


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # wrong checksum
        lambda k: k.replace("tg_live_", "tg_prod_"),  # wrong prefix
        lambda k: k[:-3],  # truncated
        lambda k: "sk-" + k[8:],  # someone else's format
        lambda k: k + " ",
    ],
)
def test_it_refuses_a_malformed_key_without_any_database_query(team, django_assert_num_queries, mangle):
    good = mint_key(team=team, name="ci").plaintext
    with django_assert_num_queries(0):
        err = refusal(mangle(good))
    assert (err.status, err.code) == (401, "invalid_api_key")
    assert "Malformed" in err.message


def test_it_refuses_a_well_formed_key_that_does_not_exist(db):
    err = refusal(keyformat.generate("live"))
    assert (err.status, err.code) == (401, "invalid_api_key")
    assert err.message == "Unknown API key."


def test_it_refuses_a_revoked_key(team, owner):
    minted = mint_key(team=team, name="ci")
    revoke_key(minted.key, actor=KeyActor.for_user(owner, team))
    auth.clear_cache()
    err = refusal(minted.plaintext)
    assert (err.status, err.code) == (401, "invalid_api_key")
    assert "revoked" in err.message


def test_it_refuses_an_expired_key_with_key_expired(team):
    minted = mint_key(team=team, name="ci", expires_at=timezone.now() + timedelta(hours=1))
    assert auth.authenticate(minted.plaintext, client_ip=None, scope="inference").key_id == minted.key.pk
    with time_machine.travel(timezone.now() + timedelta(hours=1, seconds=1), tick=False):
        err = refusal(minted.plaintext)
    assert (err.status, err.code) == (401, "key_expired")


def test_it_refuses_a_key_without_the_needed_scope(team):
    minted = mint_key(team=team, name="reader", scopes=["models:read"])
    assert auth.authenticate(minted.plaintext, client_ip=None, scope="models:read").scopes == {"models:read"}
    err = refusal(minted.plaintext, scope="inference")
    assert (err.status, err.code) == (403, "insufficient_scope")
    assert "'inference'" in err.message


@pytest.mark.parametrize(
    ("allowlist", "ip", "allowed"),
    [
        (["203.0.113.0/24"], "203.0.113.77", True),
        (["203.0.113.0/24"], "198.51.100.1", False),
        (["10.1.2.3"], "10.1.2.3", True),
        (["2001:db8:abcd::/48"], "2001:db8:abcd:12::1", True),
        (["2001:db8:abcd::/48"], "2001:db8:ffff::1", False),
        (["203.0.113.0/24", "2001:db8::/32"], "::ffff:203.0.113.5", True),  # IPv4-mapped IPv6
        (["203.0.113.0/24"], None, False),
    ],
)
def test_it_enforces_the_ip_allow_list_for_ipv4_and_ipv6(team, allowlist, ip, allowed):
    minted = mint_key(team=team, name="ci", ip_allowlist=allowlist)
    if allowed:
        assert auth.authenticate(minted.plaintext, client_ip=ip, scope="inference").key_id == minted.key.pk
    else:
        err = refusal(minted.plaintext, ip=ip)
        assert (err.status, err.code) == (403, "ip_not_allowed")


def test_it_refuses_a_model_the_key_may_not_use(team):
    minted = mint_key(team=team, name="ci", allowed_models=["demo-chat"])
    ctx = auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
    auth.check_model_allowed(ctx, "demo-chat")
    with pytest.raises(ApiError) as info:
        auth.check_model_allowed(ctx, "gpt-4o")
    assert (info.value.status, info.value.code, info.value.param) == (403, "model_not_allowed", "model")


# --- rotation grace -----------------------------------------------------------------------------


def test_an_old_secret_works_with_a_header_during_grace_then_is_refused_one_second_after(team, owner, client):
    minted = mint_key(team=team, name="ci")
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False) as traveller:
        rotated = rotate_key(minted.key, actor=KeyActor.for_user(owner, team), grace_seconds=3600)
        grace_end = start + timedelta(hours=1)

        traveller.move_to(grace_end - timedelta(seconds=1))
        ctx = auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
        assert ctx.grace_ends_at == grace_end
        assert auth.key_headers(ctx) == {"X-Tollgate-Key-Grace-Ends-At": auth.rfc3339(grace_end)}
        response = client.get("/v1/key", HTTP_AUTHORIZATION=f"Bearer {minted.plaintext}")
        assert response.status_code == 200
        assert response["X-Tollgate-Key-Grace-Ends-At"] == grace_end.strftime("%Y-%m-%dT%H:%M:%SZ")

        new_ctx = auth.authenticate(rotated.plaintext, client_ip=None, scope="inference")
        assert new_ctx.key_id == ctx.key_id and new_ctx.grace_ends_at is None
        assert auth.key_headers(new_ctx) == {}

        traveller.move_to(grace_end + timedelta(seconds=1))
        err = refusal(minted.plaintext)  # same process, snapshot still cached: the clock decides
        assert (err.status, err.code) == (401, "invalid_api_key")
        assert "grace period has ended" in err.message
        assert auth.authenticate(rotated.plaintext, client_ip=None, scope="inference").key_id == ctx.key_id


def test_rotating_with_zero_grace_refuses_the_old_secret_at_once(team, owner):
    minted = mint_key(team=team, name="ci")
    rotated = rotate_key(minted.key, actor=KeyActor.for_user(owner, team), grace_seconds=0)
    auth.clear_cache()
    assert refusal(minted.plaintext).code == "invalid_api_key"
    assert auth.authenticate(rotated.plaintext, client_ip=None, scope="inference").grace_ends_at is None


# --- effective limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "override", "expected_rpm"),
    [
        ("starter", None, 60),
        ("starter", 10, 10),
        ("pro", 500, 500),
        ("enterprise", None, None),
        ("enterprise", 5000, 5000),
    ],
)
def test_effective_limits_are_the_stricter_of_key_and_plan(team, plan, override, expected_rpm):
    team.plan = plan
    team.save()
    minted = mint_key(team=team, name="ci", rpm_limit=override, monthly_spend_cap_nusd=7)
    ctx = auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
    assert ctx.rpm_limit == expected_rpm
    assert ctx.tpm_limit == team.tpm_limit
    assert ctx.monthly_spend_cap_nusd == 7
    assert (ctx.team_public_id, ctx.team_plan, ctx.mode, ctx.is_test) == (team.public_id, plan, "live", False)


def test_a_test_key_authenticates_as_test_mode(team):
    minted = mint_key(team=team, name="sandbox", mode="test")
    ctx = auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
    assert ctx.is_test and minted.plaintext.startswith("tg_test_")
    assert ctx.masked == minted.key.masked and minted.plaintext not in ctx.masked


# --- cache, speed, last_used ----------------------------------------------------------------------


def test_a_cached_key_authenticates_without_queries_and_fast(team):
    minted = mint_key(team=team, name="ci")
    auth.authenticate(minted.plaintext, client_ip="10.0.0.1", scope="inference")
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        for _ in range(2000):
            auth.authenticate(minted.plaintext, client_ip="10.0.0.1", scope="inference")
        per_call = (time.perf_counter() - start) / 2000
        auth.clear_cache()  # keep the loop above within one cache TTL regardless of machine speed
    assert len(queries) == 0
    assert per_call < 0.0003, f"{per_call * 1e6:.0f} µs per cached authentication"


def test_a_change_made_elsewhere_is_seen_within_one_second(team, clock):
    minted = mint_key(team=team, name="ci")
    auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
    # Another process revokes it: this process's cache is not told.
    ApiKey.objects.filter(pk=minted.key.pk).update(revoked_at=timezone.now())
    clock.t += 0.5
    auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
    clock.t += 0.45
    assert refusal(minted.plaintext).code == "invalid_api_key"


def test_last_used_is_written_at_most_once_a_minute(team, clock):
    from django.core.cache import cache

    minted = mint_key(team=team, name="ci")
    cache.delete(f"apikey:used:{minted.key.pk}")
    updates = []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(50):
            auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
            clock.t += 0.5
    updates = [q for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    minted.key.refresh_from_db()
    assert minted.key.last_used_at is not None

    clock.t += 61
    cache.delete(f"apikey:used:{minted.key.pk}")  # the shared 60 s marker has expired too
    with CaptureQueriesContext(connection) as queries:
        auth.authenticate(minted.plaintext, client_ip=None, scope="inference")
    assert len([q for q in queries if q["sql"].startswith("UPDATE")]) == 1


def test_it_authenticates_from_async_code(team):
    minted = mint_key(team=team, name="ci")
    auth.authenticate(minted.plaintext, client_ip=None, scope="inference")  # warm the cache: no ORM in the loop
    ctx = asyncio.run(auth.aauthenticate(minted.plaintext, client_ip=None, scope="inference"))
    assert ctx.key_id == minted.key.pk
    with pytest.raises(ApiError) as info:
        asyncio.run(auth.aauthenticate("tg_live_nope", client_ip=None, scope="inference"))
    assert info.value.code == "invalid_api_key"


# --- headers and client addresses -------------------------------------------------------------------


def test_it_reads_the_key_from_bearer_or_x_api_key_in_any_case():
    assert auth.extract_key({"authorization": "Bearer tg_live_x"}) == "tg_live_x"
    assert auth.extract_key({"AUTHORIZATION": "bearer  tg_live_x "}) == "tg_live_x"
    assert auth.extract_key({"x-API-key": "tg_test_y"}) == "tg_test_y"
    assert auth.extract_key([(b"x-api-key", b"tg_test_z")]) == "tg_test_z"
    assert auth.extract_key({"Authorization": "Basic abc"}) is None
    assert auth.extract_key({}) is None
    request = RequestFactory().get("/", HTTP_X_API_KEY="tg_live_q")
    assert auth.extract_key(request.headers) == "tg_live_q"


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(settings):
    factory = RequestFactory()
    spoofed = factory.get("/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert net.client_ip_from_request(spoofed) == "198.51.100.7"

    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::1"]
    proxied = factory.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.1, 10.0.0.9")
    assert net.client_ip_from_request(proxied) == "203.0.113.1"  # rightmost hop that is not ours
    v6 = factory.get("/", REMOTE_ADDR="fd00::1", HTTP_X_FORWARDED_FOR="2001:db8::5")
    assert net.client_ip_from_request(v6) == "2001:db8::5"
    assert (
        net.client_ip_from_scope({"client": ("10.0.0.3", 5555), "headers": [(b"x-forwarded-for", b"2001:db8::9")]})
        == "2001:db8::9"
    )
    assert (
        net.client_ip_from_scope({"client": ("192.0.2.1", 5555), "headers": [(b"x-forwarded-for", b"2001:db8::9")]})
        == "192.0.2.1"
    )
    assert net.client_ip_from_scope({"client": None, "headers": []}) is None
