"""Images through the metered pipeline: POST /v1/images/generations (synchronous) and POST /v1/images (a job),
their estimates, GET/list/cancel of jobs, the signed output links, and the money of each path.

Jobs run inline here (config.background's test runner) once the submitting transaction commits, which
`django_capture_on_commit_callbacks(execute=True)` stands in for; without it a job stays pending."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from accounts.keys import mint_key
from billing.models import Hold, HoldStatus, Receipt, Wallet
from billing.services import grant_credit
from gateway import image_jobs
from gateway.models import CatalogModel, IdempotencyRecord, ImageJob, ImageOutput
from tests.asgi import V1
from tests.gateway.conftest import USD, chat

UNIT_1024 = 40_000_000  # demo-image 1024x1024: $0.04
UNIT_1024_HD = 80_000_000


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def wallet(team) -> Wallet:
    return Wallet.objects.get(team=team)


def path_of(url: str) -> str:
    return url.split("://", 1)[1].partition("/")[2].removeprefix("v1")


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks):
    """Submit with the job's on-commit work (enqueue → the inline runner) executed, as a committed request's is."""

    def submit(v1: V1, body: dict, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return v1.post("/images", body, **kwargs)

    return submit


def job_of(response) -> ImageJob:
    return ImageJob.objects.get(public_id=response.json()["id"])


# --- the synchronous endpoint ------------------------------------------------------------------------------


def test_b64_json_returns_a_png_of_the_requested_size_and_charges_one_image(v1, funded_team):
    before = wallet(funded_team).balance_nusd
    response = v1.post(
        "/images/generations",
        {"model": "demo-image", "prompt": "a cat in a hat", "size": "512x512", "response_format": "b64_json"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert png_size(base64.b64decode(body["data"][0]["b64_json"])) == (512, 512)
    assert body["usage"]["images"] == 1
    assert body["usage"]["total_cost_usd"] == 0.018
    receipt = Receipt.objects.get(public_id=body["usage"]["receipt_id"])
    assert (receipt.images, receipt.image_price_nusd, receipt.total_cost_nusd) == (1, 18_000_000, 18_000_000)
    assert receipt.endpoint == "images.generations"
    assert wallet(funded_team).balance_nusd == before - 18_000_000
    assert wallet(funded_team).held_nusd == 0
    assert not ImageOutput.objects.exists()  # b64_json is not stored


def test_url_results_are_anonymous_links_to_the_stored_png(v1, funded_team):
    response = v1.post("/images/generations", {"model": "demo-image", "prompt": "a lighthouse", "n": 2})
    assert response.status_code == 200, response.content
    urls = [d["url"] for d in response.json()["data"]]
    assert len(urls) == 2 and urls[0] != urls[1]
    anonymous = V1(None)
    for url in urls:
        served = anonymous.get(path_of(url))
        assert served.status_code == 200
        assert served["content-type"] == "image/png"
        assert png_size(served.content) == (1024, 1024)
    assert response.json()["usage"]["total_cost_usd"] == 0.08  # 2 × $0.04


def test_the_same_prompt_draws_the_same_picture(v1):
    first = v1.post("/images/generations", {"model": "demo-image", "prompt": "sunset", "response_format": "b64_json"})
    again = v1.post("/images/generations", {"model": "demo-image", "prompt": "sunset", "response_format": "b64_json"})
    other = v1.post("/images/generations", {"model": "demo-image", "prompt": "sunrise", "response_format": "b64_json"})
    assert first.json()["data"][0]["b64_json"] == again.json()["data"][0]["b64_json"]
    assert first.json()["data"][0]["b64_json"] != other.json()["data"][0]["b64_json"]


def test_a_link_with_a_forged_or_altered_token_is_404(v1):
    url = v1.post("/images/generations", {"model": "demo-image", "prompt": "x"}).json()["data"][0]["url"]
    token = path_of(url).rsplit("/", 1)[1]
    public_id, _, _signature = token.partition(".")
    for forged in (f"{public_id}.AAAA.png", f"{public_id}.png", "imgf_nothing.png"):
        response = V1(None).get(f"/files/images/{forged}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_outputs_expire_after_the_ttl_with_410_output_expired(v1, settings):
    settings.IMAGE_OUTPUT_TTL_DAYS = 7
    with time_machine.travel("2026-03-01 12:00:00", tick=False):
        url = v1.post("/images/generations", {"model": "demo-image", "prompt": "x"}).json()["data"][0]["url"]
    with time_machine.travel("2026-03-08 11:59:00", tick=False):
        assert V1(None).get(path_of(url)).status_code == 200
    with time_machine.travel("2026-03-08 12:00:01", tick=False):
        gone = V1(None).get(path_of(url))
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "output_expired"
    assert gone.json()["request_id"].startswith("req_")


def test_expired_files_are_deleted_by_the_purge_and_their_links_stay_410(v1):
    from gateway import image_files

    url = v1.post("/images/generations", {"model": "demo-image", "prompt": "x"}).json()["data"][0]["url"]
    output = ImageOutput.objects.get()
    from django.core.files.storage import default_storage

    assert default_storage.exists(output.storage_name)
    assert image_files.purge_expired(now=timezone.now() + timedelta(days=8, hours=1)) == 1
    assert not default_storage.exists(output.storage_name)
    with time_machine.travel(timezone.now() + timedelta(days=9), tick=False):
        assert V1(None).get(path_of(url)).json()["error"]["code"] == "output_expired"


def test_quality_is_priced_where_the_model_prices_it(v1):
    response = v1.post(
        "/images/generations",
        {"model": "demo-image", "prompt": "x", "quality": "hd", "response_format": "b64_json"},
    )
    assert response.json()["usage"]["unit_price_usd"] == 0.08
    standard = v1.post("/images/generations", {"model": "demo-image", "prompt": "x", "quality": "standard"})
    assert standard.json()["usage"]["unit_price_usd"] == 0.04


def test_the_sync_estimate_is_the_hold_and_charges_nothing(v1, funded_team):
    before = wallet(funded_team).balance_nusd
    response = v1.post("/images/generations/estimate", {"model": "demo-image", "prompt": "x", "n": 3, "quality": "hd"})
    assert response.status_code == 200
    assert response.json() == {
        "object": "estimate",
        "model": "demo-image",
        "n": 3,
        "size": "1024x1024",
        "quality": "hd",
        "unit_price_usd": 0.08,
        "max_total_cost_usd": 0.24,
        "hold_usd": 0.24,
        "is_test": False,
    }
    assert wallet(funded_team).balance_nusd == before
    assert not Receipt.objects.exists() and not Hold.objects.exists()


def test_a_blocked_word_is_400_content_policy_violation_at_no_cost(v1, funded_team, settings):
    settings.SIMULATOR_BLOCKED_WORDS = ["forbidden"]
    before = wallet(funded_team).balance_nusd
    response = v1.post("/images/generations", {"model": "demo-image", "prompt": "something Forbidden here"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert wallet(funded_team).balance_nusd == before and wallet(funded_team).held_nusd == 0
    assert Receipt.objects.get().error_code == "content_policy_violation"


def test_a_sync_replay_returns_the_same_body_without_a_second_charge(v1, funded_team):
    body = {"model": "demo-image", "prompt": "x", "response_format": "b64_json"}
    first = v1.post("/images/generations", body, headers={"Idempotency-Key": "img-1"})
    balance = wallet(funded_team).balance_nusd
    second = v1.post("/images/generations", body, headers={"Idempotency-Key": "img-1"})
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert wallet(funded_team).balance_nusd == balance
    assert Receipt.objects.count() == 1


# --- the asynchronous job ----------------------------------------------------------------------------------


def test_a_job_answers_202_pending_with_its_estimate_then_succeeds_with_links_and_a_receipt(v1, funded_team, run_jobs):
    before = wallet(funded_team).balance_nusd
    response = run_jobs(v1, {"model": "demo-image", "prompt": "a red fox", "n": 2, "size": "1792x1024"})
    assert response.status_code == 202, response.content
    submitted = response.json()
    assert submitted["id"].startswith("img_") and submitted["object"] == "image"
    assert submitted["status"] == "pending"
    assert (submitted["model"], submitted["prompt"], submitted["size"], submitted["n"]) == (
        "demo-image",
        "a red fox",
        "1792x1024",
        2,
    )
    assert submitted["cost"]["max_total_cost_usd"] == 0.16 and submitted["cost"]["hold_usd"] == 0.16
    assert isinstance(submitted["created_at"], int)

    job = v1.get(f"/images/{submitted['id']}").json()
    assert job["status"] == "succeeded"
    assert job["completed_at"] >= job["created_at"]
    assert len(job["output_urls"]) == 2
    for url in job["output_urls"]:
        assert png_size(V1(None).get(path_of(url)).content) == (1792, 1024)
    receipt = Receipt.objects.get(public_id=job["receipt_id"])
    assert (receipt.endpoint, receipt.images, receipt.image_price_nusd) == ("images", 2, 80_000_000)
    assert receipt.total_cost_nusd == 160_000_000 and job["usage"]["total_cost_usd"] == 0.16
    assert wallet(funded_team).balance_nusd == before - 160_000_000
    assert wallet(funded_team).held_nusd == 0
    assert Hold.objects.get().status == HoldStatus.SETTLED
    call_command("check_ledger")


def test_a_jobs_hold_has_no_process_lease_and_expires_after_the_job_could_have_run(v1, funded_team, settings):
    response = v1.post("/images", {"model": "demo-image", "prompt": "x"})  # not run: the job stays pending
    job, hold = job_of(response), Hold.objects.get()
    assert hold.lease_id is None
    assert hold.expires_at > job.start_by + timedelta(seconds=settings.IMAGE_JOB_RUN_SECONDS)
    assert wallet(funded_team).held_nusd == UNIT_1024
    assert job.status == "pending"


def test_the_job_estimate_equals_the_jobs_hold_and_queues_nothing(v1, funded_team):
    body = {"model": "demo-image", "prompt": "x", "n": 4, "size": "512x512"}
    estimate = v1.post("/images/estimate", body)
    assert estimate.status_code == 200
    assert not ImageJob.objects.exists() and wallet(funded_team).held_nusd == 0
    job = v1.post("/images", body).json()
    assert job["cost"] == estimate.json()
    assert wallet(funded_team).held_nusd == 4 * 18_000_000


def test_cancelling_a_pending_job_releases_its_hold_and_charges_nothing(v1, funded_team):
    before = wallet(funded_team).balance_nusd
    job_id = v1.post("/images", {"model": "demo-image", "prompt": "x", "n": 3}).json()["id"]
    assert wallet(funded_team).held_nusd == 3 * UNIT_1024
    response = v1.post(f"/images/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["usage"]["total_cost_usd"] == 0
    assert wallet(funded_team).held_nusd == 0 and wallet(funded_team).balance_nusd == before
    receipt = Receipt.objects.get(public_id=response.json()["receipt_id"])
    assert (receipt.status, receipt.error_code, receipt.total_cost_nusd) == ("failed", "cancelled", 0)
    # A worker arriving afterwards finds nothing to do.
    assert image_jobs.run(job_id) == "not_pending"
    again = v1.post(f"/images/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["param"] == "image_id"
    from accounts.models import AuditLog

    assert AuditLog.objects.filter(action="image.cancelled", target=job_id).exists()


def test_cancelling_a_job_while_it_runs_drops_its_result_and_charges_nothing(v1, funded_team):
    job_id = v1.post("/images", {"model": "demo-image", "prompt": "x"}).json()["id"]
    job = image_jobs._claim(job_id, timezone.now())  # a worker picked it up …
    assert v1.post(f"/images/{job_id}/cancel").json()["status"] == "cancelled"
    outcome = image_jobs.generate(job)  # … and finishes after the cancel
    assert image_jobs._succeed(job, outcome.images, timezone.now()) is None
    assert ImageJob.objects.get().status == "cancelled"
    assert not ImageOutput.objects.exists()
    assert wallet(funded_team).held_nusd == 0
    assert Receipt.objects.get().total_cost_nusd == 0


def test_a_succeeded_job_cannot_be_cancelled(v1, run_jobs):
    job_id = run_jobs(v1, {"model": "demo-image", "prompt": "x"}).json()["id"]
    response = v1.post(f"/images/{job_id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "image_job_finished"
    assert v1.get(f"/images/{job_id}").json()["status"] == "succeeded"


def test_a_blocked_prompt_ends_moderation_rejected_and_charges_nothing(v1, funded_team, run_jobs, settings):
    settings.SIMULATOR_BLOCKED_WORDS = ["forbidden", "dragons"]
    before = wallet(funded_team).balance_nusd
    job_id = run_jobs(v1, {"model": "demo-image", "prompt": "here be dragons", "n": 2}).json()["id"]
    job = v1.get(f"/images/{job_id}").json()
    assert job["status"] == "moderation_rejected"
    assert job["error"]["code"] == "content_policy_violation"
    assert "dragons" in job["error"]["message"]
    assert "output_urls" not in job
    assert wallet(funded_team).balance_nusd == before and wallet(funded_team).held_nusd == 0
    assert Receipt.objects.get().error_code == "moderation_rejected"


def test_an_upstream_that_fails_ends_the_job_failed_at_no_cost(v1, funded_team, run_jobs):
    from gateway.models import Provider, Route

    model = CatalogModel.objects.get(public_id="demo-image")
    broken = Provider.objects.create(slug="down", kind="openai", base_url="http://127.0.0.1:9/v1", timeout_seconds=2)
    Route.objects.filter(model=model).update(enabled=False)
    Route.objects.create(model=model, provider=broken, upstream_model="gpt-image-1")
    before = wallet(funded_team).balance_nusd
    job = v1.get(f"/images/{run_jobs(v1, {'model': 'demo-image', 'prompt': 'x'}).json()['id']}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_error"
    assert wallet(funded_team).balance_nusd == before and wallet(funded_team).held_nusd == 0


def test_a_job_not_picked_up_in_time_expires_and_releases_its_hold(v1, funded_team, settings):
    settings.IMAGE_JOB_TIMEOUT_SECONDS = 60
    with time_machine.travel("2026-03-01 12:00:00", tick=False):
        job_id = v1.post("/images", {"model": "demo-image", "prompt": "x"}).json()["id"]
    with time_machine.travel("2026-03-01 12:00:59", tick=False):
        assert image_jobs.sweep() == {"expired": 0, "retried": 0, "failed": 0}
    with time_machine.travel("2026-03-01 12:01:01", tick=False):
        assert image_jobs.sweep()["expired"] == 1
        job = v1.get(f"/images/{job_id}").json()
    assert job["status"] == "expired"
    assert job["error"]["code"] == "expired"
    assert wallet(funded_team).held_nusd == 0
    assert Receipt.objects.get().error_code == "expired"


def test_a_worker_that_arrives_after_the_deadline_expires_the_job_instead_of_running_it(v1, funded_team, settings):
    settings.IMAGE_JOB_TIMEOUT_SECONDS = 60
    with time_machine.travel("2026-03-01 12:00:00", tick=False):
        job_id = v1.post("/images", {"model": "demo-image", "prompt": "x"}).json()["id"]
    with time_machine.travel("2026-03-01 12:05:00", tick=False):
        assert image_jobs.run(job_id) == "expired"
    assert not ImageOutput.objects.exists() and wallet(funded_team).held_nusd == 0


def test_a_job_a_crashed_worker_left_processing_is_retried_then_failed(v1, funded_team, settings):
    settings.IMAGE_JOB_RUN_SECONDS, settings.IMAGE_JOB_GRACE_SECONDS = 60, 10
    with time_machine.travel("2026-03-01 12:00:00", tick=False):
        job_id = v1.post("/images", {"model": "demo-image", "prompt": "x"}).json()["id"]
        image_jobs._claim(job_id, timezone.now())  # picked up; then the worker dies
    with time_machine.travel("2026-03-01 12:01:11", tick=False):
        assert image_jobs.sweep()["retried"] == 1  # back to pending, enqueued again (and run inline)
        job = v1.get(f"/images/{job_id}").json()
    assert job["status"] == "succeeded"
    assert ImageJob.objects.get().attempts == 2
    assert wallet(funded_team).held_nusd == 0

    settings.IMAGE_JOB_MAX_ATTEMPTS = 1
    with time_machine.travel("2026-03-01 13:00:00", tick=False):
        second = v1.post("/images", {"model": "demo-image", "prompt": "y"}).json()["id"]
        image_jobs._claim(second, timezone.now())
    with time_machine.travel("2026-03-01 13:01:11", tick=False):
        assert image_jobs.sweep()["failed"] == 1
        failed = v1.get(f"/images/{second}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost"
    assert wallet(funded_team).held_nusd == 0
    call_command("check_ledger")


def test_a_job_replay_returns_the_same_job_without_a_second_hold_or_job(v1, funded_team, run_jobs):
    body = {"model": "demo-image", "prompt": "x", "n": 2}
    first = run_jobs(v1, body, headers={"Idempotency-Key": "job-7"})
    balance = wallet(funded_team).balance_nusd
    second = run_jobs(v1, body, headers={"Idempotency-Key": "job-7"})
    assert second.status_code == 202
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert ImageJob.objects.count() == 1 and Hold.objects.count() == 1
    assert wallet(funded_team).balance_nusd == balance
    other = v1.post("/images", {**body, "n": 3}, headers={"Idempotency-Key": "job-7"})
    assert other.status_code == 422


def test_402_before_anything_is_queued(team, owner, seeded):
    grant_credit(team, amount_nusd=UNIT_1024 * 2, reason="two images")
    v1 = V1(mint_key(team=team, name="k", created_by=owner).plaintext)
    response = v1.post("/images", {"model": "demo-image", "prompt": "x", "n": 3})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert not ImageJob.objects.exists() and not Hold.objects.exists()
    assert v1.post("/images/generations", {"model": "demo-image", "prompt": "x", "n": 3}).status_code == 402
    assert v1.post("/images", {"model": "demo-image", "prompt": "x", "n": 2}).status_code == 202


def test_a_test_key_job_runs_on_the_simulator_and_moves_no_money(test_key, funded_team, run_jobs):
    v1 = V1(test_key)
    before = wallet(funded_team)
    response = run_jobs(v1, {"model": "demo-image", "prompt": "x", "n": 2})
    assert response.json()["cost"]["hold_usd"] == 0 and response.json()["test"] is True
    job = v1.get(f"/images/{response.json()['id']}").json()
    assert job["status"] == "succeeded"
    receipt = Receipt.objects.get(public_id=job["receipt_id"])
    assert receipt.is_test and receipt.images == 2
    after = wallet(funded_team)
    assert (after.balance_nusd, after.held_nusd) == (before.balance_nusd, before.held_nusd)
    assert not Hold.objects.exists()


def test_one_request_per_call_counts_against_the_rate_limit(v1, funded_team, settings):
    from accounts.models import ApiKey

    ApiKey.objects.update(rpm_limit=2)
    from accounts.auth import clear_cache

    clear_cache()
    assert v1.post("/images", {"model": "demo-image", "prompt": "x", "n": 10}).status_code == 202
    second = v1.post("/images/generations", {"model": "demo-image", "prompt": "x", "response_format": "b64_json"})
    assert second.status_code == 200
    assert second["x-ratelimit-remaining-requests"] == "0"
    third = v1.post("/images", {"model": "demo-image", "prompt": "x"})
    assert third.status_code == 429
    assert ImageJob.objects.count() == 1


# --- reads: one team's jobs only --------------------------------------------------------------------------


def test_the_list_is_newest_first_paginated_and_filtered_by_status(v1):
    ids = [v1.post("/images", {"model": "demo-image", "prompt": f"p{i}"}).json()["id"] for i in range(3)]
    v1.post(f"/images/{ids[0]}/cancel")
    page = v1.get("/images", limit=2).json()
    assert [j["id"] for j in page["data"]] == [ids[2], ids[1]]
    assert page["has_more"] is True and page["last_id"] == ids[1]
    rest = v1.get("/images", limit=2, after=page["last_id"]).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert [j["id"] for j in v1.get("/images", status="cancelled").json()["data"]] == [ids[0]]
    bad = v1.get("/images", status="done")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"


def test_an_outsider_cannot_see_list_or_cancel_another_teams_job(v1, other_team, outsider, seeded):
    job_id = v1.post("/images", {"model": "demo-image", "prompt": "secret plans"}).json()["id"]
    grant_credit(other_team, amount_nusd=USD, reason="t")
    theirs = V1(mint_key(team=other_team, name="e", created_by=outsider).plaintext)
    for response in (theirs.get(f"/images/{job_id}"), theirs.post(f"/images/{job_id}/cancel")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert theirs.get("/images/img_01NOSUCHJOB").json()["error"]["code"] == "not_found"
    assert theirs.get("/images").json()["data"] == []
    assert ImageJob.objects.get().status == "pending"


def test_job_reads_need_the_inference_scope(funded_team, owner, seeded):
    reader = V1(mint_key(team=funded_team, name="r", scopes=["billing:read"], created_by=owner).plaintext)
    assert reader.get("/images").status_code == 403
    assert reader.post("/images", {"model": "demo-image", "prompt": "x"}).status_code == 403
    assert V1(None).get("/images").status_code == 401


def test_image_models_are_listed_with_prices_per_image(v1):
    model = v1.get("/models/demo-image")
    assert model.status_code == 200
    body = model.json()
    assert body["type"] == "image"
    assert body["pricing"]["unit"] == "per_image"
    assert body["pricing"]["per_image"] == body["pricing"]["images"]["1024x1024"] == "0.04"
    assert body["pricing"]["images"]["1024x1024/hd"] == "0.08"
    assert "1792x1024" in body["sizes"] and body["qualities"] == ["hd"]


# --- bad input: a 4xx naming the field, nothing held, nothing queued ------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "demo-image"}, 400, "prompt"),
        ({"model": "demo-image", "prompt": ""}, 400, "prompt"),
        ({"model": "demo-image", "prompt": "   "}, 400, "prompt"),
        ({"model": "demo-image", "prompt": 42}, 400, "prompt"),
        ({"model": "demo-image", "prompt": "x", "size": "333x333"}, 400, "size"),
        ({"model": "demo-image", "prompt": "x", "size": 1024}, 400, "size"),
        ({"model": "demo-image", "prompt": "x", "quality": "ultra"}, 400, "quality"),
        ({"model": "demo-image", "prompt": "x", "n": 0}, 400, "n"),
        ({"model": "demo-image", "prompt": "x", "n": 11}, 400, "n"),
        ({"model": "demo-image", "prompt": "x", "n": "2"}, 400, "n"),
        ({"model": "demo-image", "prompt": "x", "response_format": "png"}, 400, "response_format"),
        ({"model": "demo-chat", "prompt": "x"}, 404, "model"),
        ({"model": "no-such-model", "prompt": "x"}, 404, "model"),
        ({"prompt": "x"}, 400, "model"),
    ],
)
@pytest.mark.parametrize("path", ["/images", "/images/generations", "/images/estimate"])
def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(v1, funded_team, path, body, status, param):
    response = v1.post(path, body)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["param"] == param
    assert response.json()["request_id"].startswith("req_")
    assert not ImageJob.objects.exists() and not Hold.objects.exists() and not Receipt.objects.exists()
    assert wallet(funded_team).held_nusd == 0


def test_an_image_model_on_the_chat_endpoint_is_404_naming_the_model(v1):
    response = v1.post("/chat/completions", chat(model="demo-image"))
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"


def test_a_body_that_is_not_json_is_400(v1):
    response = v1.post("/images", b"{not json")
    assert response.status_code == 400
    assert not ImageJob.objects.exists()


def test_get_on_the_sync_endpoint_is_405_in_the_envelope(v1):
    response = v1.get("/images/generations")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_idempotency_keys_are_released_when_a_job_is_refused(v1):
    response = v1.post(
        "/images", {"model": "demo-image", "prompt": "x", "size": "9x9"}, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 400
    assert not IdempotencyRecord.objects.exists()
