"""Integers out of range are a 400 naming the field, never a database error (reliability defect 7)."""

from __future__ import annotations

import pytest

from accounts.keys import mint_key
from accounts.models import ApiKey


@pytest.fixture
def api(client, owner):
    client.force_login(owner)
    return client


@pytest.mark.parametrize("param", ["limit", "offset"])
def test_a_huge_page_parameter_is_a_400_naming_it(api, team, param):
    response = api.get(f"/api/v1/teams/{team.public_id}/keys/", {param: "99999999999999999999"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_a_sane_page_still_pages(api, team, owner):
    for i in range(3):
        mint_key(team=team, name=f"k{i}", created_by=owner)
    body = api.get(f"/api/v1/teams/{team.public_id}/keys/", {"limit": 2, "offset": 1}).json()
    assert len(body["results"]) == 2 and body["count"] == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("rpm_limit", 2**31), ("tpm_limit", 10**10), ("monthly_spend_cap_nusd", 2**63)],
)
def test_limits_above_what_the_columns_hold_are_a_400_naming_the_field(api, team, field, value):
    response = api.post(
        f"/api/v1/teams/{team.public_id}/keys/", {"name": "big", field: value}, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == field
    assert not ApiKey.objects.filter(name="big").exists()


def test_the_dashboard_key_form_refuses_a_tpm_the_column_cannot_hold(team):
    from dashboard.forms import KeyLimitsForm

    form = KeyLimitsForm(data={"tpm_limit": 10**10})
    assert not form.is_valid() and "tpm_limit" in form.errors
