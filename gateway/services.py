"""The one completion path both transports use (the Channels consumer and the ninja views).

    authenticate → validate → rate limit → idempotency → estimate → hold → route/call upstream
    → settle (or release) → response with the usage block

Round trips for a plain live request: the rate-limit script (one Redis call, none in the embedded
default), the hold (one short transaction), the settlement (one short transaction). Authentication and
the catalog come from per-process caches. A test key places no hold and writes only its test receipt.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from accounts.auth import KeyContext, aauthenticate, check_model_allowed, key_headers
from billing import pricing
from billing.models import Receipt
from billing.money import json_number
from billing.services import (
    HoldRef,
    ReceiptMeta,
    aplace_hold,
    arecord_after_reply,
    asettle,
    place_hold,
    price,
    release,
    settle,
    unsettled,
)
from config.db import run_db
from config.errors import ApiError
from gateway import conf, idempotency, ratelimit, render, router, schemas
from gateway.catalog import AUTO_MODEL, ModelEntry, Needs, RouteEntry, asnapshot, order_routes, resolve
from gateway.models import ModelKind, StoredCompletion
from gateway.tokens import count_prompt_tokens, estimate_prompt_tokens

log = logging.getLogger(__name__)
T = TypeVar("T")

INFERENCE = "inference"
MODELS_READ = "models:read"


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the receipt's endpoint
    schema: type
    kind: str  # catalog model kind
    id_prefix: str
    chunk_object: str


CHAT = Endpoint("chat.completions", schemas.ChatCompletionRequest, ModelKind.CHAT, "chatcmpl-", "chat.completion.chunk")
COMPLETIONS = Endpoint("completions", schemas.CompletionRequest, ModelKind.CHAT, "cmpl-", "text_completion")
EMBEDDINGS = Endpoint("embeddings", schemas.EmbeddingRequest, ModelKind.EMBEDDING, "", "")
ENDPOINTS = {e.name: e for e in (CHAT, COMPLETIONS, EMBEDDINGS)}

# Fields the gateway acts on itself and does not forward upstream.
_GATEWAY_ONLY = ("store", "metadata", "attachments")


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str = "application/json"
    # Work to run once the reply is sent: the settlement, when the caller asked to settle after replying.
    after: Callable[[], Awaitable[Any]] | None = None


@dataclass(slots=True)
class Plan:
    """A validated request: what to call, what it may cost."""

    endpoint: Endpoint
    request: Any  # the pydantic request
    payload: dict[str, Any]  # what goes upstream
    model: ModelEntry
    routes: list[RouteEntry]
    prompt_estimate: int
    output_budget: int
    hold_nusd: int
    stream: bool
    include_usage: bool
    use_breakers: bool


@dataclass(slots=True)
class Admission:
    ctx: KeyContext
    plan: Plan
    request_id: str
    started: float
    hold: HoldRef
    headers: dict[str, str]
    idempotency_key: str | None
    store: bool

    @property
    def completion_id(self) -> str:
        return self.plan.endpoint.id_prefix + self.request_id.removeprefix("req_")

    def meta(
        self,
        *,
        route: RouteEntry | None,
        attempts: int,
        latency_ms: int = 0,
        ttft_ms: int | None = None,
        streamed: bool = False,
    ) -> ReceiptMeta:
        return ReceiptMeta(
            endpoint=self.plan.endpoint.name,
            model_requested=self.plan.request.model,
            model_routed=self.plan.model.id,
            provider=route.provider if route else "",
            upstream_model=route.upstream_model if route else "",
            attempts=attempts,
            streamed=streamed,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            idempotency_key=self.idempotency_key or "",
            key_label=f"{self.ctx.name} ({self.ctx.masked})",
        )


async def uncancellable(coro: Awaitable[T]) -> T:
    """Run `coro` to the end even if the caller is cancelled (a client that leaves must not skip the money
    work); the cancellation is re-raised once it is done."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def authenticate(raw_key: str | None, *, client_ip: str | None, scope: str) -> KeyContext:
    return await aauthenticate(raw_key, client_ip=client_ip, scope=scope)


def parse_body(body: bytes | dict) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        raise ApiError(
            400, "invalid_request_error", "We could not parse the JSON body of your request. Send a JSON object."
        ) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request_error", "The request body must be a JSON object.")
    return payload


def _has_images(payload: dict[str, Any]) -> bool:
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            return True
    return False


def _needs(endpoint: Endpoint, request: Any, payload: dict[str, Any]) -> Needs:
    if endpoint is not CHAT:
        return Needs()
    fmt = request.response_format.type if request.response_format else "text"
    return Needs(tools=bool(request.tools), vision=_has_images(payload), json=fmt != "text")


async def plan(ctx: KeyContext, endpoint: Endpoint, body: bytes | dict) -> Plan:
    """Validate and price a request (no I/O beyond a stale catalog reload)."""
    payload = parse_body(body)
    request = schemas.parse(endpoint.schema, payload)
    if endpoint is CHAT:
        payload = schemas.apply_attachments(payload, request)
    check_model_allowed(ctx, request.model)
    snap = await asnapshot()
    needs = _needs(endpoint, request, payload)
    model = resolve(request.model, snap, kind=endpoint.kind, needs=needs, healthy=router.breakers.healthy)
    if model is None:
        if request.model == AUTO_MODEL:
            raise ApiError(
                503, "model_unavailable", "No available model supports what this request needs.", param="model"
            )
        raise ApiError(
            404,
            "model_not_found",
            f"The model '{request.model}' does not exist or is not available for {endpoint.name}.",
            param="model",
        )
    if request.model == AUTO_MODEL:
        check_model_allowed(ctx, model.id)
    if needs.tools and not model.supports_tools:
        raise ApiError(400, "invalid_request_error", f"The model '{model.id}' does not support tools.", param="tools")
    if needs.vision and not model.supports_vision:
        raise ApiError(
            400, "invalid_request_error", f"The model '{model.id}' does not accept images.", param="messages"
        )
    if needs.json and not model.supports_json:
        raise ApiError(
            400,
            "invalid_request_error",
            f"The model '{model.id}' does not support response_format.",
            param="response_format",
        )

    prompt_estimate = estimate_prompt_tokens(payload)
    if endpoint is EMBEDDINGS:
        output_budget = 0
        stream = include_usage = False
    else:
        cap = request.output_cap
        if cap is not None and cap > model.max_output_tokens:
            param = "max_completion_tokens" if getattr(request, "max_completion_tokens", None) else "max_tokens"
            raise ApiError(
                400,
                "invalid_request_error",
                f"{param} is too large: '{model.id}' produces at most {model.max_output_tokens} tokens.",
                param=param,
            )
        if count_prompt_tokens(payload) > model.context_window:
            raise ApiError(
                400,
                "context_length_exceeded",
                f"This model's context window is {model.context_window} tokens; your prompt is longer.",
                param="messages" if endpoint is CHAT else "prompt",
            )
        output_budget = (cap or model.max_output_tokens) * (request.n or 1)
        stream = bool(request.stream)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)

    if ctx.is_test:  # test keys always run on the simulator, whatever the catalog says
        routes = [
            RouteEntry(
                route_id=0,
                provider=snap.simulator.name,
                upstream_model=model.id,
                priority="primary",
                order=0,
                weight=1,
                enabled=True,
                config=snap.simulator,
            )
        ]
        use_breakers = False
    else:
        routes = order_routes(model.routes)
        if not routes or not any(router.breakers.healthy(r) for r in routes):
            raise ApiError(
                503, "model_unavailable", f"The model '{model.id}' has no available upstream right now.", param="model"
            )
        use_breakers = True
    upstream_payload = {k: v for k, v in payload.items() if k not in _GATEWAY_ONLY}
    if endpoint is EMBEDDINGS:
        upstream_payload["encoding_format"] = "float"
    hold_nusd = pricing.hold_amount(
        prompt_tokens_estimate=prompt_estimate, max_output_tokens=output_budget, prices=model.prices
    )
    return Plan(
        endpoint=endpoint,
        request=request,
        payload=upstream_payload,
        model=model,
        routes=routes,
        prompt_estimate=prompt_estimate,
        output_budget=output_budget,
        hold_nusd=hold_nusd,
        stream=stream,
        include_usage=include_usage,
        use_breakers=use_breakers,
    )


def _claim_and_hold(
    ctx: KeyContext, *, key: str, fingerprint: str, endpoint: str, request_id: str, amount_nusd: int
) -> tuple[idempotency.Replay | None, HoldRef | None]:
    replay = idempotency.begin(
        team_id=ctx.team_id, key=key, endpoint=endpoint, fingerprint=fingerprint, request_id=request_id
    )
    if replay is not None:
        return replay, None
    try:
        return None, _hold(ctx, request_id, amount_nusd)
    except BaseException:
        idempotency.abandon(team_id=ctx.team_id, key=key, request_id=request_id)
        raise


def _hold(ctx: KeyContext, request_id: str, amount_nusd: int) -> HoldRef:
    return place_hold(
        team_id=ctx.team_id,
        key_id=ctx.key_id,
        request_id=request_id,
        amount_nusd=amount_nusd,
        is_test=ctx.is_test,
        monthly_spend_cap_nusd=ctx.monthly_spend_cap_nusd,
    )


async def admit(
    ctx: KeyContext,
    endpoint: Endpoint,
    body: bytes,
    *,
    request_id: str,
    started: float,
    idempotency_key: str | None = None,
) -> Admission | Reply:
    """Everything before the upstream call. Returns a Reply for an idempotent replay. ApiErrors raised
    here carry the headers gathered so far (rate limits, key headers)."""
    headers = key_headers(ctx)
    try:
        key = idempotency.validate_key(idempotency_key)
        p = await plan(ctx, endpoint, body)
        decision = await ratelimit.check(ctx, tokens=p.prompt_estimate + p.output_budget)
        headers.update(decision.headers)
        ratelimit.raise_if_denied(decision)
        if key is not None:
            replay, hold = await run_db(
                _claim_and_hold,
                ctx,
                key=key,
                fingerprint=idempotency.fingerprint(
                    endpoint.name, body if isinstance(body, bytes) else orjson.dumps(body)
                ),
                endpoint=endpoint.name,
                request_id=request_id,
                amount_nusd=p.hold_nusd,
            )
            if replay is not None:
                return Reply(
                    replay.status, replay.body, {**headers, "Idempotent-Replayed": "true"}, replay.content_type
                )
        else:
            hold = await aplace_hold(
                team_id=ctx.team_id,
                key_id=ctx.key_id,
                request_id=request_id,
                amount_nusd=p.hold_nusd,
                is_test=ctx.is_test,
                monthly_spend_cap_nusd=ctx.monthly_spend_cap_nusd,
            )
    except ApiError as exc:
        exc.headers = {**headers, **exc.headers}
        raise
    store = endpoint is CHAT and bool(p.request.store)
    return Admission(
        ctx=ctx,
        plan=p,
        request_id=request_id,
        started=started,
        hold=hold,
        headers=headers,  # type: ignore[arg-type]
        idempotency_key=key,
        store=store,
    )


# --- finishing -----------------------------------------------------------------------------------------

_team_store: dict[int, tuple[bool, float]] = {}


def _load_team_stores(team_id: int) -> bool:
    from accounts.models import Team

    value = bool(Team.objects.filter(pk=team_id).values_list("store_completions", flat=True).first())
    if len(_team_store) > 50_000:
        _team_store.clear()
    _team_store[team_id] = (value, time.monotonic())
    return value


async def _team_stores(team_id: int) -> bool:
    """Team setting `store_completions`, cached per process for a few seconds."""
    hit = _team_store.get(team_id)
    if hit is not None and time.monotonic() - hit[1] < conf.get("GATEWAY_TEAM_TTL_SECONDS"):
        return hit[0]
    return await run_db(_load_team_stores, team_id)


async def _stores(adm: Admission) -> bool:
    """Whether this request's chat completion is stored (the request or the team asks)."""
    return adm.plan.endpoint is CHAT and (adm.store or await _team_stores(adm.ctx.team_id))


async def finish(
    adm: Admission,
    *,
    usage: pricing.Usage,
    meta: ReceiptMeta,
    status: str,
    render_body: Callable[[Receipt], bytes],
    stored_body: Callable[[Receipt], bytes] | None = None,
    content_type: str = "application/json",
) -> tuple[Receipt, bytes]:
    """Settle a request that got its answer and render the reply from the receipt.

    A chat completion is stored (its body, or `stored_body` for a stream) when the request or the team
    asks. The common case, nothing to store and no idempotency key, is the one settlement statement on
    the event loop's connection; otherwise settlement, stored completion and idempotent reply are one
    transaction in a worker thread. Shielded: cancelling the caller does not cancel the settlement."""
    store = await _stores(adm)
    if store or adm.idempotency_key is not None:
        work = run_db(
            finish_ok,
            adm,
            usage=usage,
            meta=meta,
            status=status,
            render_body=render_body,
            store=store,
            stored_body=stored_body,
            content_type=content_type,
        )
    else:
        work = _settle_and_render(adm, usage=usage, meta=meta, status=status, render_body=render_body)
    return await uncancellable(work)


async def _settle_and_render(
    adm: Admission, *, usage: pricing.Usage, meta: ReceiptMeta, status: str, render_body: Callable[[Receipt], bytes]
) -> tuple[Receipt, bytes]:
    receipt = await asettle(adm.hold, usage=usage, prices=adm.plan.model.prices, meta=meta, status=status)
    return receipt, render_body(receipt)


def finish_ok(
    adm: Admission,
    *,
    usage: pricing.Usage,
    meta: ReceiptMeta,
    status: str,
    render_body,
    store: bool = False,
    stored_body=None,
    content_type: str = "application/json",
) -> tuple[Receipt, bytes]:
    """One DB unit: settle, render the body from the receipt, store the completion and the idempotent reply."""
    from django.db import transaction

    with transaction.atomic():
        receipt = settle(adm.hold, usage=usage, prices=adm.plan.model.prices, meta=meta, status=status)
        body = render_body(receipt)
        if store:
            _store_completion(adm, receipt, stored_body(receipt) if stored_body is not None else body)
        if adm.idempotency_key is not None:
            if status == "succeeded":
                idempotency.complete(
                    team_id=adm.ctx.team_id,
                    key=adm.idempotency_key,
                    request_id=adm.request_id,
                    status=200,
                    body=body,
                    content_type=content_type,
                )
            else:
                idempotency.abandon(team_id=adm.ctx.team_id, key=adm.idempotency_key, request_id=adm.request_id)
    return receipt, body


def _store_completion(adm: Admission, receipt: Receipt, body: bytes) -> None:
    StoredCompletion.objects.create(
        completion_id=adm.completion_id,
        team_id=adm.ctx.team_id,
        request_id=adm.request_id,
        receipt_id=receipt.public_id,
        model=adm.plan.model.id,
        request=adm.plan.payload,
        response=body.decode(),
        metadata=adm.plan.request.metadata or {},
    )


def finish_failed(adm: Admission, *, meta: ReceiptMeta, error_code: str) -> Receipt:
    """One DB unit: release the hold (zero cost, failed receipt) and free the idempotency key."""
    receipt = release(adm.hold, meta=meta, error_code=error_code)
    if adm.idempotency_key is not None:
        idempotency.abandon(team_id=adm.ctx.team_id, key=adm.idempotency_key, request_id=adm.request_id)
    return receipt


async def fail(adm: Admission, *, error_code: str, attempts: int, route: RouteEntry | None) -> None:
    """Release, shielded from cancellation: a request that dies still frees its hold."""
    meta = adm.meta(route=route, attempts=attempts, latency_ms=elapsed_ms(adm.started), streamed=adm.plan.stream)
    try:
        await uncancellable(run_db(finish_failed, adm, meta=meta, error_code=error_code))
    except Exception:
        log.exception("could not release hold for %s", adm.request_id)


async def route_or_release(adm: Admission, call, *, interrupted_code: str) -> router.Routed:
    """Try the plan's routes; if none answers (or the request is interrupted), release the hold first."""
    p = adm.plan
    try:
        return await router.call(p.routes, call, use_breakers=p.use_breakers)
    except router.RoutingFailed as exc:
        await fail(adm, error_code=exc.code, attempts=exc.attempts, route=exc.route)
        exc.headers = {**adm.headers, **exc.headers}
        raise
    except BaseException:
        await fail(adm, error_code=interrupted_code, attempts=1, route=None)
        raise


def _usage(up) -> pricing.Usage:
    return pricing.Usage(
        prompt_tokens=up.prompt_tokens, completion_tokens=up.completion_tokens, cached_tokens=up.cached_tokens
    )


async def complete(adm: Admission, *, settle_after_reply: bool = False) -> Reply:
    """A non-streaming call: route, then settle and render.

    With settle_after_reply (the Channels consumer), a plain request (nothing to store, no idempotency
    key) is priced and rendered now and its settlement returned as the reply's `after`, for the caller to
    run once the response is sent: the client does not wait for the write. The receipt id and costs in
    the body are those the settlement writes; reads of the team's balance and receipts in this process
    wait for it (billing.services.unsettled)."""
    p = adm.plan
    model_id = p.model.id

    if p.endpoint is EMBEDDINGS:

        async def call(provider, route):
            return await provider.embeddings(p.payload, upstream_model=route.upstream_model)
    elif p.endpoint is COMPLETIONS:

        async def call(provider, route):
            return await provider.completion(p.payload, upstream_model=route.upstream_model)
    else:

        async def call(provider, route):
            return await provider.chat(p.payload, upstream_model=route.upstream_model)

    routed = await route_or_release(adm, call, interrupted_code="internal_error")
    result = routed.value
    meta = adm.meta(route=routed.route, attempts=routed.attempts, latency_ms=elapsed_ms(adm.started))
    if p.endpoint is EMBEDDINGS:
        encoding = p.request.encoding_format

        def render_body(receipt: Receipt) -> bytes:
            return render.embeddings_body(result.body, model=model_id, receipt=receipt, encoding=encoding)
    else:

        def render_body(receipt: Receipt) -> bytes:
            return render.completion_body(result.body, completion_id=adm.completion_id, model=model_id, receipt=receipt)

    usage = _usage(result.usage)
    if settle_after_reply and adm.idempotency_key is None and not await _stores(adm):
        settlement = price(adm.hold, usage=usage, prices=p.model.prices, meta=meta)
        body = render_body(settlement.receipt)
        unsettled.add(adm.ctx.team_id)
        return Reply(200, body, adm.headers, after=functools.partial(arecord_after_reply, settlement))
    _receipt, body = await finish(adm, usage=usage, meta=meta, status="succeeded", render_body=render_body)
    return Reply(200, body, adm.headers)


# --- reads -------------------------------------------------------------------------------------------


async def models_body() -> bytes:
    snap = await asnapshot()
    return orjson.dumps(
        {"object": "list", "data": [m.public() for m in sorted(snap.models.values(), key=lambda m: m.id)]}
    )


async def model_body(model_id: str) -> bytes:
    snap = await asnapshot()
    model = snap.models.get(model_id)
    if model is None:
        raise ApiError(404, "model_not_found", f"The model '{model_id}' does not exist.", param="model")
    return orjson.dumps(model.public())


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
            "enabled": r.enabled and router.breakers.healthy(r),
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
            request_id="req_" + completion_id.removeprefix("chatcmpl-"), team_id=ctx.team_id, endpoint=CHAT.name
        ).first()
        if receipt is not None:
            return render.metadata_body(receipt, completion_id)
    raise ApiError(404, "not_found", f"No chat completion '{completion_id}' for this team.", param="completion_id")


async def estimate(ctx: KeyContext, endpoint: Endpoint, body: bytes | dict) -> bytes:
    """The hold a request would place and what its prompt would cost; no upstream call, no charge."""
    p = await plan(ctx, endpoint, body)
    prices = p.model.prices
    prompt_cost = p.prompt_estimate * prices.input_nusd
    output_cost = p.output_budget * prices.output_nusd
    return orjson.dumps(
        {
            "object": "estimate",
            "model": p.model.id,
            "prompt_tokens": p.prompt_estimate,
            "max_completion_tokens": p.output_budget,
            "input_cost_usd": json_number(prompt_cost),
            "max_output_cost_usd": json_number(output_cost),
            "max_total_cost_usd": json_number(prompt_cost + output_cost),
            "hold_usd": json_number(0 if ctx.is_test else p.hold_nusd),
            "is_test": ctx.is_test,
        }
    )
