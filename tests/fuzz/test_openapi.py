"""schemathesis over the served OpenAPI documents, on the live server: /v1/openapi.json with a live key and a test
key, /api/v1/schema/ with a key and with a dashboard session. A fixed budget of derandomized examples per
operation (the same requests on every run); no 5xx, every status, content type and body as documented, and the
wallet moved only by what was charged (by receipts), never by a refused request."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db.models import Sum

from accounts.keys import mint_key
from accounts.services import create_team
from billing.models import LedgerEntry, LedgerKind, Receipt, Wallet
from billing.money import NUSD_PER_USD
from billing.services import grant_credit
from tests.conftest import make_user
from tests.fuzz.conftest import csrf_token, fuzz, report
from tests.live_server import closed_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
# examples per operation (hypothesis, derandomized: the same ones every run); the second credential of each
# document gets fewer, since only what it may do differs
BUDGET = {"live": 6, "test": 4, "key": 6, "session": 4}
ALL_SCOPES = ["inference", "models:read", "billing:read", "keys:write", "events:read", "webhooks:write"]
CHAT = {"model": "demo-chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


@pytest.fixture
def fuzz_team(live):
    call_command("seed_catalog", quiet=True)
    owner = make_user("fuzz.owner@acme.test")
    team = create_team(name="Fuzz", slug="fuzz", owner=owner, plan="enterprise")
    grant_credit(team, amount_nusd=5 * NUSD_PER_USD, reason="fuzz credit")
    return team, owner


def _balance(team) -> int:
    return Wallet.objects.get(team=team).balance_nusd


def _v1_ids(url: str, key: str) -> dict[str, str]:
    """Real ids for the /v1 path parameters: a stored completion and its receipt, a stored response, an image job,
    an event, a model."""
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"{url}/v1", headers=auth, timeout=20) as client:
        completion = client.post("/chat/completions", json={**CHAT, "store": True}).json()
        response = client.post("/responses", json={"model": "demo-chat", "input": "hi", "max_output_tokens": 8}).json()
        image = client.post("/images", json={"model": "demo-image", "prompt": "a toll road"}).json()
        event = client.get("/events").json()["data"]
    ids = {
        "completion_id": completion["id"],
        "receipt_id": completion["usage"]["receipt_id"],
        "response_id": response["id"],
        "image_id": image["id"],
        "model_id": "demo-chat",
    }
    if event:
        ids["event_id"] = event[0]["id"]
    return ids


@pytest.mark.parametrize("mode", ["live", "test"])
def test_v1_matches_its_openapi_document(live, fuzz_team, mode):
    team, owner = fuzz_team
    key = mint_key(team=team, name="fuzz", mode=mode, scopes=ALL_SCOPES, created_by=owner).plaintext
    known = _v1_ids(live.url, key)
    before = _balance(team)
    charged_before = Receipt.objects.filter(team=team).aggregate(s=Sum("total_cost_nusd"))["s"] or 0
    budget = BUDGET[mode]
    run = fuzz(f"{live.url}/v1/openapi.json", live.url, {"Authorization": f"Bearer {key}"}, budget=budget, known=known)
    report(f"fuzz /v1 ({mode} key)", run)
    assert not run.failures, run.show()
    assert run.operations >= 28 and run.requests >= run.operations * budget // 2
    # money moved only through receipts: what was served and charged; a refused request moved nothing
    charged = (Receipt.objects.filter(team=team).aggregate(s=Sum("total_cost_nusd"))["s"] or 0) - charged_before
    assert before - _balance(team) == (charged if mode == "live" else 0)
    assert set(LedgerEntry.objects.filter(wallet__team=team).values_list("kind", flat=True)) <= {
        LedgerKind.GRANT,
        LedgerKind.CHARGE,
    }


def _session_headers(owner) -> dict[str, str]:
    session = SessionStore()
    session["_auth_user_id"] = str(owner.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = owner.get_session_auth_hash()
    session.create()
    token = csrf_token()
    return {"Cookie": f"sessionid={session.session_key}; csrftoken={token}", "X-CSRFToken": token}


def _management_ids(url: str, headers: dict[str, str], team, owner, settings) -> dict[str, str]:
    """A second key, a project and a webhook endpoint (on a closed loopback port, allowed only while it is made:
    deliveries to it are then refused before connecting) to aim the generated requests at."""
    victim = mint_key(team=team, name="victim", created_by=owner)
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=20) as client:
        project = client.post(f"/teams/{team.public_id}/projects/", json={"name": "fuzzed"}).json()
        hook = client.post(
            f"/teams/{team.public_id}/webhooks/", json={"url": f"http://127.0.0.1:{closed_port()}/hook"}
        ).json()
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    return {
        "team_public_id": team.public_id,
        "key_public_id": victim.key.public_id,
        "project_public_id": project["id"],
        "endpoint_public_id": hook["id"],
    }


@pytest.mark.parametrize("auth", ["key", "session"])
def test_the_management_api_matches_its_openapi_document(live, fuzz_team, auth, settings):
    team, owner = fuzz_team
    if auth == "key":
        key = mint_key(team=team, name="fuzz", scopes=ALL_SCOPES, created_by=owner).plaintext
        headers = {"Authorization": f"Bearer {key}"}
    else:
        headers = _session_headers(owner)
    known = _management_ids(live.url, headers, team, owner, settings)
    before = _balance(team)
    budget = BUDGET[auth]
    run = fuzz(f"{live.url}/api/v1/schema/", live.url, headers, budget=budget, known=known)
    report(f"fuzz /api/v1 ({auth})", run)
    assert not run.failures, run.show()
    assert run.operations >= 20 and run.requests >= run.operations * budget // 2
    assert _balance(team) == before  # nothing here spends; no credit code was guessed
