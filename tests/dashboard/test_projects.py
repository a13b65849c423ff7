"""Projects in the dashboard and the management API: owners and admins create them and set budgets, every member
sees their usage, keys join them (and get a default max cost) from the key forms or the API; an outsider sees
nothing; a request over a project's budget or a key's cap is a 402 naming the limit."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from accounts import auth
from accounts.keys import mint_key
from accounts.models import ApiKey, AuditLog, Project
from accounts.projects import create_project
from billing.money import usd
from billing.services import grant_credit
from tests.asgi import V1
from tests.dashboard.conftest import ROLES, client_for, expect

USD = 10**9
MANAGERS = {"owner", "admin_user"}
READERS = {"owner", "admin_user", "developer", "viewer", "billing_user"}


@pytest.fixture
def project(team):
    return create_project(actor=None, team=team, name="mobile app", monthly_budget_nusd=2 * USD)


@pytest.mark.parametrize("who", ROLES)
def test_every_member_reads_projects_and_only_owners_and_admins_create_them(who, people, team, project):
    client = client_for(people[who])
    base = f"/t/{team.public_id}/projects/"
    assert client.get(base).status_code == expect(who, READERS)
    assert client.get(f"{base}{project.public_id}/").status_code == expect(who, READERS)
    created = client.post(base, {"name": f"by {who}", "monthly_budget_usd": "5"})
    assert created.status_code == expect(who, MANAGERS, ok=302)
    assert Project.objects.filter(name=f"by {who}").exists() == (who in MANAGERS)


def test_a_project_page_shows_its_budget_what_was_used_and_its_usage(owner, team, project, settings):
    from tests.gateway.conftest import reset_gateway_state

    settings.DB_THREAD_SENSITIVE = True
    reset_gateway_state()
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=10 * USD, reason="credit")
    key = mint_key(team=team, name="app", created_by=owner, project=project)
    response = V1(key.plaintext).post(
        "/chat/completions", {"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    )
    cost = response.json()["usage"]["receipt_id"]
    from billing.models import Receipt

    receipt = Receipt.objects.get(public_id=cost)
    assert receipt.project_id == project.pk
    page = client_for(owner).get(f"/t/{team.public_id}/projects/{project.public_id}/").content.decode()
    assert f'data-testid="project-used">{usd(receipt.total_cost_nusd)}<' in page
    assert f'data-testid="project-budget">{usd(2 * USD)}<' in page
    assert f'data-testid="project-total">{usd(receipt.total_cost_nusd)}<' in page and "app" in page
    listing = client_for(owner).get(f"/t/{team.public_id}/projects/").content.decode()
    assert "mobile app" in listing and usd(receipt.total_cost_nusd) in listing
    reset_gateway_state()


def test_an_owner_changes_a_budget_and_bad_input_changes_nothing(owner, team, project):
    client = client_for(owner)
    url = f"/t/{team.public_id}/projects/{project.public_id}/"
    assert client.post(url, {"name": "mobile app", "monthly_budget_usd": "3.5"}).status_code == 302
    project.refresh_from_db()
    assert project.monthly_budget_nusd == 3_500_000_000
    for bad in ({"name": "", "monthly_budget_usd": "1"}, {"name": "x", "monthly_budget_usd": "-1"}):
        response = client.post(url, bad)
        assert response.status_code == 400
    create_project(actor=None, team=team, name="web", monthly_budget_nusd=None)
    assert "already has a project" in client.post(url, {"name": "WEB"}).content.decode()
    project.refresh_from_db()
    assert (project.name, project.monthly_budget_nusd) == ("mobile app", 3_500_000_000)
    assert AuditLog.objects.filter(action="project.updated", target="mobile app").count() == 1


def test_a_project_with_working_keys_cannot_be_deleted(owner, team, project):
    key = mint_key(team=team, name="app", created_by=owner, project=project).key
    client = client_for(owner)
    url = f"/t/{team.public_id}/projects/{project.public_id}/delete/"
    response = client.post(url, follow=True)
    assert (
        "move them to another project" in response.content.decode() and Project.objects.filter(pk=project.pk).exists()
    )
    key.revoked_at = key.created_at
    key.save(update_fields=["revoked_at"])
    assert client.post(url).status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()
    assert ApiKey.objects.get(pk=key.pk).project is None


def test_the_key_forms_set_a_project_and_a_default_max_cost(owner, team, project):
    client = client_for(owner)
    response = client.post(
        f"/t/{team.public_id}/keys/new/",
        {
            "name": "app",
            "mode": "live",
            "scopes": ["inference"],
            "project": project.public_id,
            "max_cost_per_request_usd": "0.05",
        },
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    key = ApiKey.objects.get(name="app")
    assert (key.project, key.max_cost_per_request_nusd) == (project, 50_000_000)
    page = client.get(f"/t/{team.public_id}/keys/").content.decode()
    assert 'data-testid="key-project">mobile app<' in page and "max $0.05/request" in page
    limits = f"/t/{team.public_id}/keys/{key.public_id}/limits/"
    assert client.post(limits, {"project": "", "max_cost_per_request_usd": ""}).status_code == 302
    key.refresh_from_db()
    assert (key.project, key.max_cost_per_request_nusd) == (None, None)
    refused = client.post(limits, {"max_cost_per_request_usd": "0"})
    assert refused.status_code == 400


def test_a_key_cannot_join_another_teams_project(owner, team, other_team):
    theirs = create_project(actor=None, team=other_team, name="theirs")
    response = client_for(owner).post(
        f"/t/{team.public_id}/keys/new/",
        {"name": "x", "mode": "live", "scopes": ["inference"], "project": theirs.public_id},
    )
    assert response.status_code == 400 and not ApiKey.objects.filter(name="x").exists()


def test_an_outsider_gets_404_for_a_project_of_another_team(outsider, team, project):
    client = client_for(outsider)
    assert client.get(f"/t/{team.public_id}/projects/{project.public_id}/").status_code == 404
    theirs = create_project(actor=None, team=outsider.memberships.get().team, name="theirs")
    assert (
        client_for(team.memberships.first().user).get(f"/t/{team.public_id}/projects/{theirs.public_id}/").status_code
        == 404
    )


# --- the management API -------------------------------------------------------------------------------------


def api(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_api_creates_a_key_in_a_project_with_a_default_cap(owner, team, project):
    response = api(owner).post(
        f"/api/v1/teams/{team.public_id}/keys/",
        {"name": "ci", "project": project.public_id, "max_cost_per_request_nusd": 7_000},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["project"] == project.public_id and body["limits"]["max_cost_per_request_nusd"] == 7_000
    patched = api(owner).patch(
        f"/api/v1/keys/{body['id']}/",
        {"project": None, "max_cost_per_request_nusd": 0},
        content_type="application/json",
    )
    assert patched.status_code == 400 and patched.json()["error"]["param"] == "max_cost_per_request_nusd"
    moved = api(owner).patch(f"/api/v1/keys/{body['id']}/", {"project": None}, content_type="application/json")
    assert moved.status_code == 200 and moved.json()["project"] is None
    bad = api(owner).patch(f"/api/v1/keys/{body['id']}/", {"project": "proj_nope"}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_project"


def test_the_api_manages_projects_for_owners_and_shows_them_to_members(owner, developer, outsider, team, project):
    url = f"/api/v1/teams/{team.public_id}/projects/"
    created = api(owner).post(url, {"name": "research", "monthly_budget_nusd": 10**9}, content_type="application/json")
    assert created.status_code == 201 and created.json()["monthly_budget_nusd"] == 10**9
    assert {p["name"] for p in api(developer).get(url).json()} == {"mobile app", "research"}
    assert api(developer).post(url, {"name": "mine"}, content_type="application/json").status_code == 403
    detail = f"/api/v1/projects/{project.public_id}/"
    assert api(outsider).get(detail).status_code == 404 and api(outsider).get(url).status_code == 404
    assert (
        api(owner)
        .patch(detail, {"monthly_budget_nusd": 5}, content_type="application/json")
        .json()["monthly_budget_nusd"]
        == 5
    )
    assert api(owner).delete(detail).status_code == 204


def test_a_key_in_a_project_can_only_mint_keys_in_it(owner, team, project):
    scopes = ["inference", "models:read", "billing:read", "keys:write"]
    writer = mint_key(team=team, name="writer", created_by=owner, scopes=scopes, project=project).plaintext
    client = Client(HTTP_AUTHORIZATION=f"Bearer {writer}")
    url = f"/api/v1/teams/{team.public_id}/keys/"
    outside = client.post(url, {"name": "escape"}, content_type="application/json")
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "limit_exceeds_own"
    inside = client.post(url, {"name": "inside", "project": project.public_id}, content_type="application/json")
    assert inside.status_code == 201


# --- the limit that refused a request -----------------------------------------------------------------------


@pytest.fixture
def gateway(settings, db):
    from tests.gateway.conftest import reset_gateway_state

    settings.DB_THREAD_SENSITIVE = True
    reset_gateway_state()
    call_command("seed_catalog", quiet=True)
    yield
    reset_gateway_state()
    auth.clear_cache()


@pytest.mark.parametrize(
    ("limit", "path", "body"),
    [
        (
            "project",
            "/chat/completions",
            {"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100},
        ),
        (
            "key",
            "/chat/completions",
            {"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100},
        ),
        (
            "project",
            "/messages",
            {"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100},
        ),
    ],
)
def test_a_request_over_a_limit_is_402_naming_it(gateway, owner, team, limit, path, body):
    grant_credit(team, amount_nusd=10 * USD, reason="credit")
    tiny = create_project(actor=None, team=team, name="tiny", monthly_budget_nusd=1_000 if limit == "project" else None)
    key = mint_key(
        team=team, name="k", created_by=owner, project=tiny, monthly_spend_cap_nusd=1_000 if limit == "key" else None
    )
    response = V1(key.plaintext).post(path, body)
    assert response.status_code == 402
    if path == "/messages":  # Anthropic's envelope, the limit named all the same
        assert response.json()["error"]["type"] == "billing_error" and response.json()["error"]["limit"] == limit
    else:
        error = response.json()["error"]
        assert (error["code"], error["limit"], error["type"]) == ("spend_cap_exceeded", limit, "insufficient_balance")


def test_a_key_reads_its_project_and_default_cap_from_v1_key(owner, team, project):
    key = mint_key(team=team, name="app", created_by=owner, project=project, max_cost_per_request_nusd=5_000).plaintext
    limits = Client().get("/v1/key", HTTP_AUTHORIZATION=f"Bearer {key}").json()["data"]["limits"]
    assert (limits["project"], limits["project_monthly_budget_nusd"], limits["max_cost_per_request_nusd"]) == (
        project.public_id,
        2 * USD,
        5_000,
    )
