"""The Images page in a real browser (Debian's chromium via Playwright) against the live server, with jobs run
by the embedded default's worker thread: generate from the form, watch the progress indicator give way to the
picture, open the receipt; a job submitted through the API appears on the open list and turns succeeded live."""

from __future__ import annotations

import re

import httpx
import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.keys import mint_key
from billing.services import grant_credit
from config import background
from gateway import providers
from gateway.models import ImageJob
from tests.browser.conftest import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def slow_worker(settings):
    settings.BACKGROUND_RUNNER = "thread"
    settings.SIMULATOR_IMAGE_LATENCY_MS = 1500
    providers.clear_cache()
    background.start()
    yield
    background.stop()
    providers.clear_cache()


def test_generate_from_the_images_page_watch_it_finish_and_follow_it_live(page, live, owner, team, slow_worker):
    call_command("seed_catalog", verbosity=0)
    grant_credit(team, amount_nusd=10**9, reason="t")
    log_in(page, owner.email)
    page.goto(f"/t/{team.public_id}/images/")
    expect(page.get_by_role("heading", name="Images")).to_be_visible()
    shot(page, "images-empty")

    page.get_by_label("Prompt").fill("a lighthouse on a cliff at dusk")
    page.get_by_label("Size").select_option("256x256")
    page.get_by_label("Pay with").select_option("live")
    page.get_by_test_id("generate").click()
    page.wait_for_url(re.compile(r"/images/img_[0-9A-Z]+/$"))
    expect(page.get_by_test_id("progress")).to_be_visible()  # while the job runs
    shot(page, "image-job-running", full_page=False)

    output = page.get_by_test_id("output")
    expect(output).to_be_visible(timeout=20_000)
    expect(page.get_by_test_id("progress")).to_have_count(0)
    expect(page.get_by_test_id("cancel")).to_have_count(0)  # a finished job cannot be cancelled
    loaded = page.wait_for_function(  # the <img> fetched its signed link: a real 256-pixel PNG
        "() => { const i = document.querySelector('[data-testid=output]'); return i && i.complete && i.naturalWidth }"
    )
    assert loaded.json_value() == 256
    expect(page.get_by_test_id("image-cost")).to_contain_text("$0.016")
    shot(page, "image-job-done")
    page.get_by_test_id("receipt-link").click()
    expect(page.get_by_test_id("receipt-line")).to_contain_text("Images 256x256")
    expect(page.get_by_test_id("receipt-total")).to_have_text("$0.016")

    # The list is open; a job submitted through the API shows up, then turns succeeded, without a reload.
    page.goto(f"/t/{team.public_id}/images/")
    expect(page.locator("body[data-live-ready]")).to_have_count(1)
    key = mint_key(team=team, name="api", created_by=owner).plaintext
    reply = httpx.post(
        f"{live.url}/v1/images",
        json={"model": "demo-image", "prompt": "a paper boat on a pond", "size": "256x256"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert reply.status_code == 202
    row = page.locator(f'[data-image-job="{reply.json()["id"]}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row.get_by_test_id("image-status")).to_have_text("succeeded", timeout=20_000)
    expect(row.locator("img.thumb")).to_be_visible()
    shot(page, "images-list")
    assert ImageJob.objects.filter(team=team, status="succeeded").count() == 2
