"""A `keys:write` key can only create or change keys whose limits are at least as strict as its own;
a signed-in member keeps the role rules alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.keys import mint_key
from accounts.models import ApiKey
from tests.accounts.test_rest_keys import as_key, as_user, assert_error, create

pytestmark = pytest.mark.django_db
WRITE = ["keys:write", "inference"]


@pytest.fixture
def strict(team, owner):
    """An automation key with every limit set (and an allow-list that admits the test client, 127.0.0.1)."""
    return mint_key(
        team=team,
        name="automation",
        scopes=WRITE,
        created_by=owner,
        allowed_models=["demo-chat", "demo-embed"],
        rpm_limit=10,
        tpm_limit=5_000,
        monthly_spend_cap_nusd=10**9,
        ip_allowlist=["127.0.0.0/8", "2001:db8::/32"],
        expires_at=timezone.now() + timedelta(days=30),
    )


def within(strict, **overrides) -> dict:
    """A new key's limits, each as strict as the automation key's own, with `overrides`."""
    own = strict.key
    return {
        "scopes": ["inference"],
        "allowed_models": ["demo-chat"],
        "rpm_limit": own.rpm_limit,
        "tpm_limit": own.tpm_limit,
        "monthly_spend_cap_nusd": own.monthly_spend_cap_nusd,
        "ip_allowlist": ["127.0.0.1/32"],
        "expires_at": own.expires_at.isoformat(),
        **overrides,
    }


def test_it_mints_a_key_as_strict_as_its_own(team, strict):
    response = create(as_key(strict.plaintext), team, **within(strict, rpm_limit=5))
    assert response.status_code == 201, response.content
    assert response.json()["limits"]["rpm_limit"] == 5


@pytest.mark.parametrize(
    ("field", "looser"),
    [
        ("allowed_models", ["demo-chat", "demo-chat-mini"]),
        ("allowed_models", []),
        ("rpm_limit", 11),
        ("rpm_limit", None),
        ("tpm_limit", 5_001),
        ("monthly_spend_cap_nusd", 10**9 + 1),
        ("monthly_spend_cap_nusd", None),
        ("ip_allowlist", ["10.0.0.0/8"]),
        ("ip_allowlist", ["127.0.0.0/7"]),
        ("ip_allowlist", []),
        ("expires_at", None),
    ],
)
def test_it_refuses_to_mint_a_key_looser_than_its_own(team, strict, field, looser):
    response = create(as_key(strict.plaintext), team, **within(strict, **{field: looser}))
    error = assert_error(response, 403, "limit_exceeds_own", param=field)
    assert error["message"]
    assert ApiKey.objects.filter(team=team).count() == 1


def test_it_refuses_an_expiry_later_than_its_own(team, strict):
    later = (strict.key.expires_at + timedelta(days=1)).isoformat()
    assert_error(
        create(as_key(strict.plaintext), team, **within(strict, expires_at=later)),
        403,
        "limit_exceeds_own",
        param="expires_at",
    )


def test_it_cannot_loosen_a_key_it_manages_nor_itself(team, owner, strict):
    child = mint_key(
        team=team,
        name="child",
        scopes=["inference"],
        created_by=owner,
        rpm_limit=5,
        ip_allowlist=["127.0.0.1"],
        allowed_models=["demo-chat"],
    ).key
    client = as_key(strict.plaintext)
    for target in (child, strict.key):
        url = f"/api/v1/keys/{target.public_id}/"
        for body, field in (
            ({"ip_allowlist": []}, "ip_allowlist"),
            ({"rpm_limit": 50}, "rpm_limit"),
            ({"allowed_models": []}, "allowed_models"),
        ):
            assert_error(
                client.patch(url, body, content_type="application/json"), 403, "limit_exceeds_own", param=field
            )
    child.refresh_from_db()
    assert (child.rpm_limit, child.ip_allowlist, child.allowed_models) == (5, ["127.0.0.1/32"], ["demo-chat"])
    # tightening, or changing what is not a limit, still works
    response = client.patch(
        f"/api/v1/keys/{child.public_id}/", {"rpm_limit": 3, "name": "renamed"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["limits"]["rpm_limit"] == 3


def test_a_key_without_limits_of_its_own_is_bound_only_by_the_plan(team, owner):
    free = mint_key(team=team, name="automation", scopes=WRITE, created_by=owner)
    response = create(
        as_key(free.plaintext),
        team,
        scopes=["inference"],
        allowed_models=["demo-chat-mini"],
        ip_allowlist=["10.0.0.0/8"],
    )
    assert response.status_code == 201, response.content
    over_plan = create(as_key(free.plaintext), team, scopes=["inference"], rpm_limit=61)
    assert_error(over_plan, 400, "limit_exceeds_plan", param="rpm_limit")


def test_a_signed_in_owner_may_loosen_limits(team, owner, strict):
    response = as_user(owner).patch(
        f"/api/v1/keys/{strict.key.public_id}/", {"ip_allowlist": [], "rpm_limit": 60}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    strict.key.refresh_from_db()
    assert (strict.key.ip_allowlist, strict.key.rpm_limit) == ([], 60)
