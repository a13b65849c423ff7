"""Dashboard fixtures: logged-in clients per role, a key, a receipt."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.keys import mint_key
from billing.models import Receipt
from billing.services import ensure_wallet, grant_credit

ROLES = ["owner", "admin_user", "developer", "viewer", "billing_user", "outsider"]


@pytest.fixture
def people(owner, admin_user, developer, viewer, billing_user, outsider):
    """Everyone of the permission matrix by fixture name, plus an outsider who owns another team."""
    return {
        "owner": owner,
        "admin_user": admin_user,
        "developer": developer,
        "viewer": viewer,
        "billing_user": billing_user,
        "outsider": outsider,
    }


def expect(who: str, allowed: set[str], ok: int = 200) -> int:
    """The status `who` should get: `ok` when allowed, 403 for a member without the right, 404 for an outsider."""
    if who == "outsider":
        return 404
    return ok if who in allowed else 403


def client_for(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


@pytest.fixture
def owner_client(owner, team):
    return client_for(owner)


@pytest.fixture
def funded(team):
    grant_credit(team, amount_nusd=5_000_000_000, reason="test credit")
    return ensure_wallet(team)


def make_receipt(team, key=None, **fields) -> Receipt:
    values = {
        "request_id": "req_test",
        "team": team,
        "api_key": key,
        "key_label": key.name if key else "",
        "model_requested": "demo-chat",
        "model_routed": "demo-chat",
        "provider": "simulator",
        "prompt_tokens": 12,
        "cached_tokens": 0,
        "completion_tokens": 30,
        "input_price_nusd": 150,
        "output_price_nusd": 600,
    }
    values.update(fields)
    values.setdefault(
        "input_cost_nusd",
        values["prompt_tokens"] * values["input_price_nusd"]
        + values["cached_tokens"] * values.get("cached_price_nusd", 0),
    )
    values.setdefault("output_cost_nusd", values["completion_tokens"] * values["output_price_nusd"])
    values.setdefault("total_cost_nusd", values["input_cost_nusd"] + values["output_cost_nusd"])
    return Receipt.objects.create(**values)


@pytest.fixture
def owner_key(team, owner):
    return mint_key(team=team, name="owner key", created_by=owner).key
