"""The /v1 inference API as ninja routes: the OpenAPI description of every endpoint, the GET endpoints and
the estimates, and the same POSTs the Channels consumers serve under a real ASGI server (the Django test
client reaches these). Each view parses, calls one service, serialises."""

from __future__ import annotations

import asyncio
import contextlib
import time

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Router
from ninja.security.base import AuthBase

from accounts.auth import KeyContext, client_ip_from_request, extract_key, key_headers
from config.db import run_db
from gateway import openapi, schemas, services, sse, streaming
from gateway.api_limits import counts_own_requests

router = Router(tags=["inference"])


class KeyAuth(AuthBase):
    """Bearer API key (or X-Api-Key) with the scope the operation needs; errors in OpenAI's envelope."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    async def authenticate(self, request: HttpRequest) -> KeyContext:
        return await services.authenticate(
            extract_key(request.headers), client_ip=client_ip_from_request(request), scope=self.scope
        )

    async def __call__(self, request: HttpRequest) -> KeyContext:
        return await self.authenticate(request)


INFERENCE = KeyAuth(services.INFERENCE)
MODELS_READ = KeyAuth(services.MODELS_READ)


def _ok(request: HttpRequest, body: bytes):
    """A 200 JSON reply carrying the key's headers (e.g. the rotation grace window)."""
    return _response(200, body, key_headers(request.auth))  # type: ignore[attr-defined]


def _response(status: int, body: bytes, headers: dict[str, str], content_type: str = "application/json"):
    response = HttpResponse(body, status=status, content_type=content_type)
    for name, value in headers.items():
        response[name] = value
    return response


async def _run(request: HttpRequest, endpoint: services.Endpoint):
    ctx: KeyContext = request.auth  # type: ignore[attr-defined]
    outcome = await services.admit(
        ctx,
        endpoint,
        request.body,
        request_id=request.request_id,  # type: ignore[attr-defined]
        started=time.perf_counter(),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    if isinstance(outcome, services.Reply):
        return _response(outcome.status, outcome.body, outcome.headers, outcome.content_type)
    if not outcome.plan.stream:
        reply = await services.complete(outcome)
        return _response(reply.status, reply.body, reply.headers)
    relay = await streaming.open_stream(outcome)
    response = StreamingHttpResponse(_frames(relay), content_type=sse.HEADERS["Content-Type"])
    for name, value in {**outcome.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}.items():
        response[name] = value
    return response


async def _frames(relay: streaming.StreamRelay):
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def write(data: bytes) -> None:
        queue.put_nowait(data)

    task = asyncio.ensure_future(relay.run(write))
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    try:
        while (item := await queue.get()) is not None:
            yield item
        await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@router.post(
    "/chat/completions",
    auth=INFERENCE,
    response={200: openapi.ChatCompletionOut, **openapi.INFERENCE_ERRORS},
    summary="Create a chat completion (with stream: true, server-sent chat.completion.chunk events)",
)
@counts_own_requests
async def chat_completions(request: HttpRequest, payload: schemas.ChatCompletionRequest):
    return await _run(request, services.CHAT)


@router.post(
    "/completions",
    auth=INFERENCE,
    response={200: openapi.CompletionOut, **openapi.INFERENCE_ERRORS},
    summary="Create a (legacy) text completion",
)
@counts_own_requests
async def completions(request: HttpRequest, payload: schemas.CompletionRequest):
    return await _run(request, services.COMPLETIONS)


@router.post(
    "/embeddings",
    auth=INFERENCE,
    response={200: openapi.EmbeddingsOut, **openapi.INFERENCE_ERRORS},
    summary="Create embeddings (float or base64)",
)
@counts_own_requests
async def embeddings(request: HttpRequest, payload: schemas.EmbeddingRequest):
    return await _run(request, services.EMBEDDINGS)


@router.post(
    "/chat/completions/estimate",
    auth=INFERENCE,
    response={200: openapi.EstimateOut, **openapi.ERRORS},
    summary="Estimate a chat completion's cost and hold (no upstream call, no charge)",
)
async def chat_estimate(request: HttpRequest, payload: schemas.ChatCompletionRequest):
    return _ok(request, await services.estimate(request.auth, services.CHAT, request.body))  # type: ignore[attr-defined]


@router.post(
    "/embeddings/estimate",
    auth=INFERENCE,
    response={200: openapi.EstimateOut, **openapi.ERRORS},
    summary="Estimate an embeddings request's cost and hold (no upstream call, no charge)",
)
async def embeddings_estimate(request: HttpRequest, payload: schemas.EmbeddingRequest):
    return _ok(
        request,
        await services.estimate(
            request.auth,
            services.EMBEDDINGS,  # type: ignore[attr-defined]
            request.body,
        ),
    )


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
    "/models",
    auth=MODELS_READ,
    response={200: openapi.ModelListOut, **openapi.ERRORS},
    summary="List models with pricing per million tokens",
)
async def list_models(request: HttpRequest):
    return _ok(request, await services.models_body())


@router.get(
    "/models/{path:model_id}",
    auth=MODELS_READ,
    response={200: openapi.ModelOut, **openapi.ERRORS},
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
async def list_providers(request: HttpRequest, model: str | None = None):
    return _ok(request, await services.providers_body(model))
