"""The gateway's /v1 reads as ninja routes: models, the routes behind a model, stored chat completions, stored
responses (with DELETE) and image jobs.
(The charging operations are served by gateway/transport.py; config/api.py adds them to the OpenAPI
document from gateway/openapi.py.) Each view parses, calls one service, serialises."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router

from accounts.api import AsyncKeyAuth
from accounts.auth import key_headers
from config.db import run_db
from gateway import image_jobs, openapi, pipeline, services, stored_responses

router = Router(tags=["inference"])

INFERENCE = AsyncKeyAuth(pipeline.INFERENCE)
MODELS_READ = AsyncKeyAuth("models:read")


def _ok(request: HttpRequest, body: bytes) -> HttpResponse:
    """A 200 JSON reply carrying the key's headers (e.g. the rotation grace window)."""
    response = HttpResponse(body, content_type="application/json")
    for name, value in key_headers(request.auth).items():  # type: ignore[attr-defined]
        response[name] = value
    return response


@router.get(
    "/chat/completions/{completion_id}",
    auth=INFERENCE,
    response={200: openapi.StoredChatCompletionOut, **openapi.ERRORS},
    summary="Retrieve a chat completion (full when stored, otherwise its metadata)",
)
async def get_chat_completion(request: HttpRequest, completion_id: str):
    body = await run_db(services.stored_completion_body, request.auth, completion_id)  # type: ignore[attr-defined]
    return _ok(request, body)


@router.get(
    "/responses/{response_id}",
    auth=INFERENCE,
    response={200: openapi.ResponseOut, **openapi.ERRORS},
    summary="Retrieve a stored response (Responses API)",
)
async def get_response(request: HttpRequest, response_id: str):
    body = await run_db(stored_responses.response_body, request.auth, response_id)  # type: ignore[attr-defined]
    return _ok(request, body)


@router.delete(
    "/responses/{response_id}",
    auth=INFERENCE,
    response={200: openapi.ResponseDeletedOut, **openapi.ERRORS},
    summary="Delete a stored response (it can no longer be retrieved or continued)",
)
async def delete_response(request: HttpRequest, response_id: str):
    body = await run_db(stored_responses.delete_response, request.auth, response_id)  # type: ignore[attr-defined]
    return _ok(request, body)


@router.get(
    "/responses/{response_id}/input_items",
    auth=INFERENCE,
    response={200: openapi.ResponseItemListOut, **openapi.ERRORS},
    summary="List a stored response's input items (newest first unless order=asc; paged with after and limit)",
)
async def list_input_items(
    request: HttpRequest,
    response_id: str,
    after: str | None = Query(None, description="An item id: the page starts after it."),
    limit: int = Query(20, description="1 to 100."),
    order: str = Query("desc", description="asc | desc"),
):
    body = await run_db(
        stored_responses.input_items_body,
        request.auth,  # type: ignore[attr-defined]
        response_id,
        after=after,
        limit=limit,
        order=order,
    )
    return _ok(request, body)


@router.get(
    "/models",
    auth=MODELS_READ,
    response={200: openapi.ModelListOut, **openapi.ERRORS},
    by_alias=True,  # capabilities.json, as served
    summary="List models with pricing per million tokens",
)
async def list_models(request: HttpRequest):
    return _ok(request, await services.models_body())


@router.get(
    "/models/{path:model_id}",
    auth=MODELS_READ,
    response={200: openapi.ModelOut, **openapi.ERRORS},
    by_alias=True,
    summary="Retrieve a model with pricing and context length",
)
async def get_model(request: HttpRequest, model_id: str):
    return _ok(request, await services.model_body(model_id))


@router.get(
    "/providers",
    auth=MODELS_READ,
    response={200: openapi.ProviderListOut, **openapi.ERRORS},
    summary="The routes behind a model: {id, type: primary|backup, enabled}",
)
async def list_providers(request: HttpRequest, model: str | None = Query(None, description="A model id (required).")):
    return _ok(request, await services.providers_body(model))


# --- image jobs (POST /v1/images itself is a charging operation: gateway/operations/images.py) -------------


@router.get(
    "/images",
    auth=INFERENCE,
    response={200: openapi.ImageJobListOut, **openapi.ERRORS},
    summary="List the team's image jobs, newest first",
)
async def list_image_jobs(
    request: HttpRequest,
    limit: int = Query(20, ge=1, le=100, description="Page size, 1 to 100."),
    after: str | None = Query(None, description="An image job id: the jobs older than it (the previous last_id)."),
    status: str | None = Query(None, description="Only jobs in this status (pending, processing, succeeded, …)."),
):
    ctx = request.auth  # type: ignore[attr-defined]
    body = await run_db(image_jobs.list_body, ctx.team_id, limit=limit, after=after, status=status)
    return _ok(request, body)


@router.get(
    "/images/{image_id}",
    auth=INFERENCE,
    response={200: openapi.ImageJobOut, **openapi.ERRORS},
    summary="Retrieve an image job (poll until succeeded, failed, cancelled, expired or moderation_rejected)",
)
async def get_image_job(request: HttpRequest, image_id: str):
    ctx = request.auth  # type: ignore[attr-defined]
    return _ok(request, await run_db(image_jobs.get_body, ctx.team_id, image_id))


@router.post(
    "/images/{image_id}/cancel",
    auth=INFERENCE,
    response={200: openapi.ImageJobOut, **openapi.ERRORS, 409: openapi.ErrorOut},
    summary="Cancel an image job that has not ended (its hold is released; 409 once it ended)",
)
async def cancel_image_job(request: HttpRequest, image_id: str):
    ctx = request.auth  # type: ignore[attr-defined]
    return _ok(request, await run_db(image_jobs.cancel_body, ctx, image_id))
