"""The pipeline's failure rules where something breaks after the hold: whatever fails (rendering, the settlement,
keeping a stored completion, queueing an image job), the hold ends exactly once, the team pays nothing it did not
get, and an Idempotency-Key is free again for a retry. Also the capability checks that refuse a request before
any hold."""

from __future__ import annotations

import pytest

from accounts.keys import mint_key
from billing import settlement
from billing.models import Hold, HoldStatus, Receipt, ReceiptStatus, Wallet
from billing.services import grant_credit
from gateway.models import CatalogModel, IdempotencyRecord, ImageJob, StoredCompletion
from gateway.operations.chat import ChatCompletions
from tests.asgi import V1
from tests.gateway.conftest import USD, chat

pytestmark = pytest.mark.django_db

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def _wallet(team) -> tuple[int, int]:
    wallet = Wallet.objects.get(team=team)
    return wallet.balance_nusd, wallet.held_nusd


def _no_open_holds(team) -> None:
    assert not Hold.objects.filter(wallet__team=team, status=HoldStatus.OPEN).exists()
    assert Wallet.objects.get(team=team).held_nusd == 0


def _broken(*args, **kwargs):
    raise RuntimeError("a bug after the upstream call")


async def _abroken(*args, **kwargs):
    _broken()


def _break_settlement(patch) -> None:
    """Writing the settlement fails with an unexpected (not a database-outage) error, both ways it is written."""
    patch.setattr(settlement, "record_sync", _broken)
    patch.setattr(settlement, "record", _abroken)


def test_a_render_failure_after_the_upstream_call_is_a_500_that_costs_nothing(v1, funded_team, monkeypatch):
    before = _wallet(funded_team)
    monkeypatch.setattr(ChatCompletions, "render", _broken)
    response = v1.post("/chat/completions", chat())
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "Traceback" not in response.content.decode()
    receipt = Receipt.objects.get(team=funded_team)
    assert (receipt.status, receipt.error_code, receipt.total_cost_nusd) == (ReceiptStatus.FAILED, "internal_error", 0)
    _no_open_holds(funded_team)
    assert _wallet(funded_team) == before


def test_a_settlement_that_fails_unexpectedly_still_ends_the_hold_and_frees_the_idempotency_key(
    v1, funded_team, monkeypatch
):
    before = _wallet(funded_team)
    with monkeypatch.context() as patch:
        _break_settlement(patch)
        response = v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "k1"})
    assert response.status_code == 500
    assert Receipt.objects.get(team=funded_team).status == ReceiptStatus.FAILED
    _no_open_holds(funded_team)
    assert _wallet(funded_team) == before
    retry = v1.post("/chat/completions", chat(), headers={"Idempotency-Key": "k1"})  # runs again, not a 409
    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry
    assert IdempotencyRecord.objects.get(key="k1").status == "done"


def test_a_stream_whose_settlement_fails_unexpectedly_ends_its_hold_with_a_failed_receipt(v1, funded_team, monkeypatch):
    before = _wallet(funded_team)
    _break_settlement(monkeypatch)
    response = v1.post("/chat/completions", chat(stream=True))
    assert response.status_code == 200  # the stream had started; the client saw its chunks
    assert b"data:" in response.content
    receipt = Receipt.objects.get(team=funded_team)
    assert (receipt.status, receipt.error_code) == (ReceiptStatus.FAILED, "internal_error")
    _no_open_holds(funded_team)
    assert _wallet(funded_team) == before


def test_a_completion_that_cannot_be_stored_is_still_served_and_paid_once(v1, funded_team, monkeypatch):
    monkeypatch.setattr(ChatCompletions, "persist", _broken)
    response = v1.post("/chat/completions", chat(store=True))
    assert response.status_code == 200
    receipt = Receipt.objects.get(team=funded_team)
    assert receipt.status == ReceiptStatus.SUCCEEDED and receipt.total_cost_nusd > 0
    assert response.json()["usage"]["receipt_id"] == receipt.public_id
    assert not StoredCompletion.objects.exists()
    _no_open_holds(funded_team)
    balance, _ = _wallet(funded_team)
    assert balance == 10 * USD - receipt.total_cost_nusd


def test_a_refused_hold_frees_its_idempotency_key_for_a_retry_after_a_top_up(team, owner, seeded):
    broke = V1(mint_key(team=team, name="empty wallet", created_by=owner).plaintext)  # the team has no credit
    refused = broke.post("/chat/completions", chat(), headers={"Idempotency-Key": "pay-later"})
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_balance"
    grant_credit(team, amount_nusd=USD, reason="top-up")
    retry = broke.post("/chat/completions", chat(), headers={"Idempotency-Key": "pay-later"})
    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry
    _no_open_holds(team)


def test_an_image_job_that_cannot_be_queued_costs_nothing(v1, funded_team, monkeypatch):
    before = _wallet(funded_team)
    from gateway import image_jobs

    monkeypatch.setattr(image_jobs, "create", _broken)
    response = v1.post("/images", {"model": "demo-image", "prompt": "a lighthouse"})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert not ImageJob.objects.exists()
    assert Receipt.objects.get(team=funded_team).status == ReceiptStatus.FAILED
    _no_open_holds(funded_team)
    assert _wallet(funded_team) == before


def test_a_model_without_vision_refuses_images_before_any_hold(v1, funded_team):
    body = chat(model="demo-chat-mini", messages=[{"role": "user", "content": [{"type": "text", "text": "?"}, IMAGE]}])
    response = v1.post("/chat/completions", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages"
    assert "does not accept images" in error["message"]
    assert not Hold.objects.exists() and not Receipt.objects.exists()


def test_auto_with_no_model_that_can_serve_the_request_is_503_model_unavailable(v1, funded_team):
    CatalogModel.objects.filter(public_id="demo-chat").update(supports_vision=False)
    from gateway import catalog

    catalog.invalidate()
    body = chat(model="auto", messages=[{"role": "user", "content": [{"type": "text", "text": "?"}, IMAGE]}])
    response = v1.post("/chat/completions", body)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert not Hold.objects.exists()
