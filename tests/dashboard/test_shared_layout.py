"""Pages outside dashboard/ (billing's top-up results, allauth's account and two-factor pages) wear the dashboard's
layout with the team's sidebar, and never show a team the visitor is not in."""

from __future__ import annotations

import pytest

from billing.models import TopUp
from billing.money import NUSD_PER_CENT
from tests.dashboard.conftest import client_for

pytestmark = pytest.mark.django_db


def sidebar_of(html: str, team) -> bool:
    return f'href="/t/{team.public_id}/settings/"' in html


def test_the_top_up_success_page_has_the_teams_sidebar_and_polls_while_pending(owner, team):
    TopUp.objects.create(team=team, amount_nusd=2500 * NUSD_PER_CENT, stripe_session_id="cs_layout")
    html = client_for(owner).get("/billing/topup/success/", {"session_id": "cs_layout"}).content.decode()
    assert sidebar_of(html, team) and 'data-poll="2000"' in html and f'data-team="{team.public_id}"' in html


def test_the_cancel_page_links_back_to_the_teams_billing(owner, team):
    topup = TopUp.objects.create(team=team, amount_nusd=2500 * NUSD_PER_CENT, stripe_session_id="cs_cancel")
    html = client_for(owner).get("/billing/topup/cancel/", {"topup": topup.public_id}).content.decode()
    assert sidebar_of(html, team) and f'href="/t/{team.public_id}/billing/"' in html


def test_the_cancel_page_of_a_strangers_top_up_shows_no_team(outsider, team):
    topup = TopUp.objects.create(team=team, amount_nusd=2500 * NUSD_PER_CENT, stripe_session_id="cs_stranger")
    response = client_for(outsider).get("/billing/topup/cancel/", {"topup": topup.public_id})
    assert response.status_code == 200 and team.public_id not in response.content.decode()


def test_the_two_factor_page_keeps_the_last_teams_sidebar(owner, team):
    client = client_for(owner)
    client.get(f"/t/{team.public_id}/")  # remembers the team
    html = client.get("/2fa/").content.decode()
    assert "Two-Factor Authentication" in html and sidebar_of(html, team)
    assert 'class="card"' in html  # allauth's panels drawn as the dashboard's cards


def test_a_team_left_since_is_not_shown_on_account_pages(owner, team, developer):
    client = client_for(developer)
    client.get(f"/t/{team.public_id}/")
    client.post(f"/t/{team.public_id}/settings/leave/")
    assert not sidebar_of(client.get("/2fa/").content.decode(), team)
