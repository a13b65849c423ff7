"""The gateway's reads (the charging operations are gateway/pipeline.py): the model catalog, the routes behind
a model, and stored chat completions."""

from __future__ import annotations

import orjson
from django.utils import timezone

from accounts.auth import KeyContext
from billing.models import Receipt
from config.errors import ApiError
from gateway import fallback, render
from gateway.catalog import asnapshot
from gateway.models import StoredCompletion

CHAT_ENDPOINT = "chat.completions"


async def models_body() -> bytes:
    """Every model with the prices in force now and, when a change is scheduled, the next prices."""
    snap, now = await asnapshot(), timezone.now()
    return orjson.dumps(
        {"object": "list", "data": [m.public(now) for m in sorted(snap.models.values(), key=lambda m: m.id)]}
    )


async def model_body(model_id: str) -> bytes:
    snap = await asnapshot()
    model = snap.models.get(model_id)
    if model is None:
        raise ApiError(404, "model_not_found", f"The model '{model_id}' does not exist.", param="model")
    return orjson.dumps(model.public(timezone.now()))


async def providers_body(model_id: str | None) -> bytes:
    snap = await asnapshot()
    if not model_id:
        raise ApiError(400, "invalid_request_error", "Pass ?model=<model id>.", param="model")
    model = snap.models.get(model_id)
    if model is None:
        raise ApiError(404, "model_not_found", f"The model '{model_id}' does not exist.", param="model")
    data = [
        {
            "id": r.provider,
            "type": r.priority,
            "enabled": r.enabled and fallback.breakers.healthy(r),
            "upstream_model": r.upstream_model,
        }
        for r in model.routes
    ]
    return orjson.dumps({"object": "list", "model": model.id, "data": data})


def stored_completion_body(ctx: KeyContext, completion_id: str) -> bytes:
    """The stored completion, or the metadata its receipt holds. 404 for missing and for other teams'."""
    row = (
        StoredCompletion.objects.filter(completion_id=completion_id, team_id=ctx.team_id)
        .values_list("response", flat=True)
        .first()
    )
    if row is not None:
        body = orjson.loads(row)
        body["stored"] = True
        return orjson.dumps(body)
    if completion_id.startswith("chatcmpl-"):
        receipt = Receipt.objects.filter(
            request_id="req_" + completion_id.removeprefix("chatcmpl-"), team_id=ctx.team_id, endpoint=CHAT_ENDPOINT
        ).first()
        if receipt is not None:
            return render.metadata_body(receipt, completion_id)
    raise ApiError(404, "not_found", f"No chat completion '{completion_id}' for this team.", param="completion_id")
