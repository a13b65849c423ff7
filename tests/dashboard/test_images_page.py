"""The Images page: the team's jobs newest first, a job's outputs and receipt, the generate form (test mode or the
wallet), cancel, roles, the outsider, and the live status message."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from accounts.models import AuditLog
from billing.models import Hold, Receipt, Wallet
from billing.services import grant_credit
from gateway import image_files
from gateway.models import ImageJob
from tests.dashboard.conftest import client_for, expect

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def catalog(db):
    call_command("seed_catalog", quiet=True)


def url(team, *parts: str) -> str:
    return "/".join([f"/t/{team.public_id}/images", *parts]) + "/"


def generate(client, team, **fields):
    data = {"mode": "test", "model": "demo-image", "prompt": "a cat", "n": 1, "size": "256x256", **fields}
    return client.post(url(team), data)


def test_generating_in_test_mode_starts_a_job_and_lands_on_its_page(owner, team, django_capture_on_commit_callbacks):
    client = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = generate(client, team, prompt="a lighthouse at dusk", n=2)
    job = ImageJob.objects.get()
    assert response.status_code == 302 and response["Location"] == url(team, job.public_id)
    assert job.is_test and job.key_label.startswith("Dashboard")
    page = client.get(url(team, job.public_id))
    html = page.content.decode()
    assert page.status_code == 200
    assert "succeeded" in html
    assert html.count('data-testid="output"') == 2
    for output in job.outputs.all():
        assert image_files.path_for(output) in html
    assert job.receipt_id in html  # the receipt, linked
    assert AuditLog.objects.filter(action="image.generated", target=job.public_id, actor=owner).exists()
    assert not Hold.objects.exists()  # test mode moves no money


def test_generating_with_the_wallet_holds_then_charges_images_times_price(
    owner, team, django_capture_on_commit_callbacks
):
    grant_credit(team, amount_nusd=10**9, reason="t")
    client = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        generate(client, team, mode="live", n=3, size="512x512")
    job = ImageJob.objects.get()
    receipt = Receipt.objects.get(public_id=job.receipt_id)
    assert (receipt.images, receipt.image_price_nusd, receipt.total_cost_nusd) == (3, 18_000_000, 54_000_000)
    assert Wallet.objects.get(team=team).balance_nusd == 10**9 - 54_000_000
    receipt_page = client.get(f"/t/{team.public_id}/receipts/{receipt.public_id}/").content.decode()
    assert "Images 512x512" in receipt_page and "$0.018" in receipt_page and "$0.054" in receipt_page
    assert job.public_id in receipt_page  # the receipt links back to its job
    assert receipt.public_id in client.get(f"/t/{team.public_id}/receipts/").content.decode()
    usage_page = client.get(f"/t/{team.public_id}/usage/").content.decode()
    assert "demo-image" in usage_page and "$0.054" in usage_page


def test_a_wallet_that_cannot_pay_shows_the_error_and_queues_nothing(owner, team):
    response = generate(client_for(owner), team, mode="live")
    assert response.status_code == 400
    assert "available credit does not cover this request" in response.content.decode()
    assert not ImageJob.objects.exists()


def test_a_size_the_model_does_not_offer_is_a_form_error(owner, team):
    response = generate(client_for(owner), team, size="4096x4096")
    assert response.status_code == 400
    assert not ImageJob.objects.exists()


def test_the_list_shows_jobs_newest_first_with_status_cost_and_thumbnail(
    owner, team, django_capture_on_commit_callbacks
):
    client = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        generate(client, team, prompt="first prompt")
    generate(client, team, prompt="second prompt")  # not run: stays pending
    html = client.get(url(team)).content.decode()
    assert html.index("second prompt") < html.index("first prompt")
    first = ImageJob.objects.get(prompt="first prompt")
    assert image_files.path_for(first.outputs.get()) in html  # the thumbnail
    assert "pending" in html and "succeeded" in html
    only_pending = client.get(url(team) + "?status=pending").content.decode()
    assert "second prompt" in only_pending and "first prompt" not in only_pending


def test_a_job_can_be_cancelled_from_its_page(owner, team):
    grant_credit(team, amount_nusd=10**9, reason="t")
    client = client_for(owner)
    generate(client, team, mode="live")
    job = ImageJob.objects.get()
    assert Wallet.objects.get(team=team).held_nusd == 16_000_000
    page = client.get(url(team, job.public_id)).content.decode()
    assert 'data-testid="progress"' in page and 'data-testid="cancel"' in page
    response = client.post(url(team, job.public_id, "cancel"))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert Wallet.objects.get(team=team).held_nusd == 0
    assert AuditLog.objects.filter(action="image.cancelled", actor=owner).exists()


@pytest.mark.parametrize("who", ["owner", "admin_user", "developer", "viewer", "billing_user", "outsider"])
def test_who_sees_and_who_generates(people, who, team):
    client = client_for(people[who])
    assert client.get(url(team)).status_code == expect(
        who, {"owner", "admin_user", "developer", "viewer", "billing_user"}
    )
    response = generate(client, team)
    assert response.status_code == expect(who, {"owner", "admin_user", "developer"}, ok=302)
    if response.status_code != 302:
        assert not ImageJob.objects.exists()


def test_an_outsider_gets_404_for_a_job_of_another_team(owner, outsider, team):
    generate(client_for(owner), team)
    job = ImageJob.objects.get()
    theirs = client_for(outsider)
    from accounts.models import Team

    their_team = Team.objects.get(slug="evil")
    assert theirs.get(url(team, job.public_id)).status_code == 404
    assert theirs.get(url(their_team, job.public_id)).status_code == 404  # their own team's door, not this job
    assert theirs.post(url(their_team, job.public_id, "cancel")).status_code == 404
    job.refresh_from_db()
    assert job.status == "pending"


def test_the_models_page_shows_prices_per_image(owner, team):
    html = client_for(owner).get(f"/t/{team.public_id}/models/").content.decode()
    assert "demo-image" in html
    assert "1024x1024/hd: $0.08 / image" in html
