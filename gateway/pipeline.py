"""The metered pipeline every charging /v1 operation runs through, plain and streamed:

    authenticate → scope → parse → plan → rate limit → idempotency → hold
        → route with fallbacks → provider → price → settle → receipt → render

An operation (gateway/operations/) only declares its shapes; this module runs the stages around them and
owns the failure rules:

- nothing is sent upstream before the hold is placed; a refusal before it changes nothing;
- a call that fails settles at zero (a failed receipt), and its Idempotency-Key is released;
- a client that leaves mid-stream, or an upstream that breaks after output was delivered, pays for what was
  produced (a `partial` receipt);
- every hold ends exactly once: settled, released, or (if this process dies) swept (billing.leases);
- a request is priced by the price version in force when it is planned (just before its hold), and its settlement
  prices with that same version and the serving route's cost version of that moment, whatever changed meanwhile;
- a request's cost cap (gateway.cost_cap) bounds its hold, so its receipt; a stream is cut before it passes it.

Round trips for a plain live request: the rate-limit script (one Redis call; none in the embedded default),
the hold (one statement) and the settlement (one statement, written after the reply is sent).
Authentication and the catalog come from per-process caches. A test key places no hold and writes only its
test receipt; it may ask for a test scenario (gateway/scenarios.py), which plan, rate limit and hold hand to
the stage (or the simulator) whose real failure it imitates.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.auth import aauthenticate, check_model_allowed, extract_key_lowered, key_headers
from billing import pricing, settlement
from billing.errors import BillingError, InsufficientBalance
from billing.models import Receipt, ReceiptStatus
from billing.settlement import Hold, HoldRequest, ReceiptMeta, Settlement, UpstreamBill, unsettled
from config import metrics
from config.db import run_db
from config.errors import ApiError
from gateway import conf, cost_cap, errors, fallback, idempotency, ratelimit, scenarios, schemas, sse
from gateway.catalog import AUTO_MODEL, RouteEntry, asnapshot, order_routes, resolve
from gateway.operations.base import Call, Reply, Result, StreamView
from gateway.providers.base import ProviderError, usage_from_openai
from gateway.tokens import count_tokens, estimate_margin

log = logging.getLogger(__name__)
T = TypeVar("T")

INFERENCE = "inference"


# Money work under way in this process (settlements, releases, retries): a graceful shutdown waits for it.
_money: set[asyncio.Future] = set()


def _track(task: asyncio.Future) -> asyncio.Future:
    _money.add(task)
    task.add_done_callback(_money.discard)
    return task


# Requests being served (the transport registers each): at shutdown, uvicorn cancels the ones still open and
# their settlements start only when each task next runs, so a drain waits for the requests first.
requests_in_flight: set[asyncio.Task] = set()


async def drain(timeout: float) -> int:
    """Wait (at most `timeout` seconds) for this process's requests and money work to finish; how many were still
    running when the time ran out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        me = asyncio.current_task()
        pending = [t for t in (*requests_in_flight, *_money) if not t.done() and t is not me]
        left = deadline - loop.time()
        if not pending or left <= 0:
            return len(pending)
        await asyncio.wait(pending, timeout=left)


async def uncancellable(coro: Awaitable[T]) -> T:
    """Run `coro` to the end even if the caller is cancelled (a client that leaves must not skip the money
    work); the cancellation is re-raised once it is done."""
    task = _track(asyncio.ensure_future(coro))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


# --- the stages before the upstream call ---------------------------------------------------------------


async def authenticate(call: Call) -> None:
    call.ctx = await aauthenticate(
        extract_key_lowered(call.headers),  # the transport lower-cased the names
        client_ip=call.client_ip,
        scope=INFERENCE,
        cookie_header=call.headers.get("cookie", ""),  # the dashboard Playground's credential is session-bound
    )
    call.response_headers = key_headers(call.ctx)
    call.log_fields.update(team=call.ctx.team_public_id, key=call.ctx.public_id)


def parse(call: Call) -> None:
    try:
        payload = orjson.loads(call.body) if call.body else None
    except orjson.JSONDecodeError:
        raise ApiError(
            400, "invalid_request_error", "We could not parse the JSON body of your request. Send a JSON object."
        ) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request_error", "The request body must be a JSON object.")
    if call.body.count(b"{") + call.body.count(b"[") > schemas.MAX_JSON_DEPTH:  # cheap: most bodies cannot be
        schemas.check_depth(payload)
    # The cost cap is the gateway's: its body field is taken out before validation, so it never goes upstream.
    cap = cost_cap.requested(call.headers, payload)
    call.max_cost_nusd = cap if cap is not None else call.ctx.max_cost_per_request_nusd
    call.payload = payload
    call.request = schemas.parse(call.op.schema, payload)
    call.op.prepare(call)


async def plan(call: Call) -> None:
    """Pick the model and its routes and compute what the request may cost (no I/O but what the operation loads
    and a stale catalog)."""
    op, ctx, request = call.op, call.ctx, call.request
    if ctx.is_test:  # test scenarios (gateway/scenarios.py): live keys never read the header
        call.scenario = scenarios.read(call.headers, request, call.payload)
    check_model_allowed(ctx, request.model)
    await op.load(call)
    snap = await asnapshot()
    needs = op.needs(call)
    model = resolve(request.model, snap, kind=op.model_kind, needs=needs, healthy=fallback.breakers.healthy)
    if model is None:
        if request.model == AUTO_MODEL:
            raise ApiError(
                503, "model_unavailable", "No available model supports what this request needs.", param="model"
            )
        raise ApiError(
            404,
            "model_not_found",
            f"The model '{request.model}' does not exist or is not available for {op.name}.",
            param="model",
        )
    if request.model == AUTO_MODEL:
        check_model_allowed(ctx, model.id)
    # The prices in force now: the hold and, however long the call takes, the settlement (call.model keeps them).
    call.priced_at = timezone.now()
    model = model.at(call.priced_at)
    for wanted, supported, param, what in (
        (needs.tools, model.supports_tools, "tools", "does not support tools"),
        (needs.vision, model.supports_vision, "messages", "does not accept images"),
        (needs.json, model.supports_json, "response_format", "does not support response_format"),
    ):
        if wanted and not supported:
            raise ApiError(400, "invalid_request_error", f"The model '{model.id}' {what}.", param=param)
    call.model = model
    call.log_fields["model"] = model.id
    call.prompt_tokens = op.count_prompt(call)
    call.prompt_estimate = call.prompt_tokens + estimate_margin(call.prompt_tokens)
    call.output_budget = op.output_budget(call)
    if op.context_param and call.prompt_tokens > model.context_window:
        raise ApiError(
            400,
            "context_length_exceeded",
            f"This model's context window is {model.context_window} tokens; your prompt is longer.",
            param=op.context_param,
        )
    call.stream = op.wants_stream(call)
    if ctx.is_test:  # test keys always run on the simulator, whatever the catalog says
        call.routes = [
            RouteEntry(
                route_id=0,
                provider=snap.simulator.name,
                upstream_model=model.id,
                priority="primary",
                order=0,
                weight=1,
                enabled=True,
                config=scenarios.simulator_config(snap.simulator, call.scenario),  # the simulator plays it
            )
        ]
        call.use_breakers = False
    else:
        call.routes = order_routes(model.routes)
        if not call.routes or not any(fallback.breakers.healthy(r) for r in call.routes):
            raise ApiError(
                503, "model_unavailable", f"The model '{model.id}' has no available upstream right now.", param="model"
            )
    call.upstream = op.upstream_payload(call)
    if call.max_cost_nusd is not None:
        op.fit_cost(call, call.max_cost_nusd)  # the output budget (and upstream's max tokens) shrink to fit
    call.hold_nusd = op.budget(call)


async def rate_limit(call: Call, *, tokens: int) -> None:
    if call.scenario == scenarios.Scenario.RATE_LIMITED:  # test scenario: the limiter's own refusal
        decision = ratelimit.exhausted(call.ctx, tokens=tokens)
    else:
        decision = await ratelimit.check(call.ctx, tokens=tokens)
    call.response_headers.update(decision.headers)
    ratelimit.raise_if_denied(decision)


def _hold_request(call: Call) -> HoldRequest:
    ctx = call.ctx
    return HoldRequest(
        team_id=ctx.team_id,
        key_id=ctx.key_id,
        request_id=call.request_id,
        amount_nusd=call.hold_nusd,
        is_test=ctx.is_test,
        spend_cap_nusd=ctx.monthly_spend_cap_nusd,
        leased=not call.op.deferred,  # a job's hold outlives this process's request
        project_id=ctx.project_id,
        project_budget_nusd=ctx.project_budget_nusd,
    )


def _claim_and_hold(call: Call, fingerprint: str) -> tuple[idempotency.Replay | None, Hold | None]:
    """One DB unit: claim the Idempotency-Key, then place the hold (the key is released if the hold fails)."""
    key = call.idempotency_key
    assert key is not None
    from billing import leases

    replay = idempotency.begin(
        team_id=call.ctx.team_id,
        key=key,
        endpoint=call.op.name,
        fingerprint=fingerprint,
        request_id=call.request_id,
        lease_id=leases.current(),
    )
    if replay is not None:
        return replay, None
    try:
        return None, settlement.place_hold_sync(_hold_request(call))
    except BaseException:
        idempotency.abandon(team_id=call.ctx.team_id, key=key, request_id=call.request_id)
        raise


async def hold(call: Call) -> Reply | None:
    """Place the hold (claiming the Idempotency-Key first, if any). A Reply when the request is a replay."""
    call.idempotency_key = idempotency.validate_key(call.headers.get("idempotency-key"))
    try:
        if call.scenario == scenarios.Scenario.INSUFFICIENT_BALANCE:  # test scenario: a wallet that is short
            raise InsufficientBalance(call.hold_nusd)
        if call.idempotency_key is None:
            call.hold = await settlement.place_hold(_hold_request(call))
            return None
        replay, call.hold = await run_db(_claim_and_hold, call, idempotency.fingerprint(call.op.name, call.body))
    except BillingError as exc:
        raise errors.from_billing(exc) from None
    if replay is not None:
        return Reply(
            replay.status, replay.body, {**call.response_headers, "Idempotent-Replayed": "true"}, replay.content_type
        )
    return None


async def admit(call: Call) -> Reply | None:
    """Every stage before the upstream call. ApiErrors raised here carry the headers gathered so far. A caller
    that authenticated the request itself (the dashboard, for a signed-in member) sets `call.ctx` first."""
    if call.ctx is None:
        await authenticate(call)
    try:
        parse(call)
        await plan(call)
        tokens = call.prompt_estimate + call.output_budget
        if (
            call.scenario is None
            and "idempotency-key" not in call.headers
            and ratelimit.has_headroom(call.ctx, tokens=tokens)
        ):
            await limit_while_holding(call, tokens=tokens)
            return None
        await rate_limit(call, tokens=tokens)
        return await hold(call)
    except ApiError as exc:
        exc.headers = {**call.response_headers, **exc.headers}
        raise


async def limit_while_holding(call: Call, *, tokens: int) -> None:
    """The limiter's round trip and the hold's statement at once, for a key whose window has room to spare
    (ratelimit.has_headroom): the first byte waits for the slower of the two instead of both. The hold still
    comes before any upstream call, and the limiter still decides: if it refuses after all (or cannot be
    asked), the hold is withdrawn (no receipt, nothing charged), as if the refusal had come first."""
    placing = asyncio.ensure_future(settlement.place_hold(_hold_request(call)))
    try:
        await rate_limit(call, tokens=tokens)
    except BaseException:
        await uncancellable(_withdraw(call, placing))
        raise
    try:
        call.hold = await placing
    except BillingError as exc:
        raise errors.from_billing(exc) from None


async def _withdraw(call: Call, placing: asyncio.Future[Hold]) -> None:
    try:
        placed = await placing
    except Exception:  # no hold to undo: the wallet was short, or the database away
        return
    await write_or_retry(lambda: settlement.withdraw(placed), f"the withdrawal of the hold of {call.request_id}")


async def estimate(call: Call) -> Reply:
    """POST {path}/estimate: the hold the request would place and what its prompt would cost; no call, no charge.
    Counts as one request of zero tokens against the key's rate limit, like every other /v1 read."""
    await authenticate(call)
    try:
        parse(call)
        await plan(call)
        await rate_limit(call, tokens=0)
    except ApiError as exc:
        exc.headers = {**call.response_headers, **exc.headers}
        raise
    return Reply(200, call.op.estimate_body(call), call.response_headers)


# --- ending the hold ------------------------------------------------------------------------------------


def _meta(call: Call, *, route: RouteEntry | None, attempts: int, ttft_ms: int | None = None) -> ReceiptMeta:
    ctx = call.ctx
    return ReceiptMeta(
        endpoint=call.op.name,
        model_requested=call.request.model,
        model_routed=call.model.id,
        provider=route.provider if route else "",
        upstream_model=route.upstream_model if route else "",
        attempts=attempts,
        streamed=call.stream,
        latency_ms=call.elapsed_ms(),
        ttft_ms=ttft_ms,
        idempotency_key=call.idempotency_key or "",
        key_label=f"{ctx.name} ({ctx.masked})",
        price_version=call.model.price_version,
        max_cost_nusd=call.max_cost_nusd,
    )


def _billed(call: Call, failures: fallback.Billed) -> list[UpstreamBill]:
    """Failed attempts upstream billed anyway, at their routes' costs."""
    bills = []
    for route, usage in failures:
        upstream = call.op.upstream_prices(call, route)
        if upstream is not None:
            bills.append(
                UpstreamBill(pricing.Usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens), upstream)
            )
    return bills


def _release_unit(call: Call, meta: ReceiptMeta, error_code: str, billed: list[UpstreamBill]) -> Receipt:
    """One DB unit: release the hold (zero cost, failed receipt) and free the Idempotency-Key."""
    assert call.hold is not None
    receipt = settlement.release_sync(call.hold, meta=meta, error_code=error_code, billed=billed)
    if call.idempotency_key is not None:
        idempotency.abandon(team_id=call.ctx.team_id, key=call.idempotency_key, request_id=call.request_id)
    return receipt


def spawn(coro: Awaitable[Any]) -> None:
    """Run money work that must outlive the request (a write waiting for the database to come back)."""
    _track(asyncio.ensure_future(coro))


async def fail(
    call: Call, *, error_code: str, attempts: int, route: RouteEntry | None, billed: fallback.Billed | None = None
) -> None:
    """Release the hold (zero cost, a failed receipt) and free the Idempotency-Key, shielded from cancellation.
    If the database is away the client is answered at once and the release goes on in the background."""
    if call.ended:
        return
    call.ended = True
    meta = _meta(call, route=route, attempts=attempts)
    bills = _billed(call, billed or [])

    async def attempt() -> Receipt:
        return await run_db(_release_unit, call, meta, error_code, bills)

    await write_or_retry(attempt, f"the release of {call.request_id}")


async def write_or_retry(attempt: Callable[[], Awaitable[Any]], what: str) -> None:
    """Run a money write now, shielded from cancellation. While the database is away, the client is answered at
    once and the write goes on in the background until it lands (settlement.eventually); any other failure is
    logged, since retrying cannot help."""
    try:
        await uncancellable(attempt())
    except Exception as exc:
        if not settlement.transient(exc):
            log.exception("could not write %s", what)
            return
        spawn(settlement.eventually(attempt, what))


def _finish_unit(
    call: Call,
    priced: Settlement,
    render_body: Callable[[Receipt], bytes],
    stored_body: Callable[[Receipt], bytes] | None,
    persist: bool,
    content_type: str,
) -> bytes:
    """One transaction: settle, render the reply from the receipt, keep the result, store the idempotent reply."""
    from django.db import transaction

    with transaction.atomic():
        receipt = settlement.record_sync(priced)
        body = render_body(receipt)
        if persist:
            call.op.persist(call, receipt, stored_body(receipt) if stored_body is not None else body)
        key = call.idempotency_key
        if key is not None:
            if receipt.status == ReceiptStatus.SUCCEEDED:
                idempotency.complete(
                    team_id=call.ctx.team_id,
                    key=key,
                    request_id=call.request_id,
                    status=200,
                    body=body,
                    content_type=content_type,
                )
            else:
                idempotency.abandon(team_id=call.ctx.team_id, key=key, request_id=call.request_id)
    return body


async def finish(
    call: Call,
    priced: Settlement,
    *,
    render_body: Callable[[Receipt], bytes],
    stored_body: Callable[[Receipt], bytes] | None = None,
    content_type: str = "application/json",
) -> bytes:
    """Settle a request that got its answer and render the reply from the receipt; never raises for a database
    that is away (the settlement is then written when it is back, the reply goes out now).

    The common case, nothing to keep and no Idempotency-Key, is the one settlement statement on the event
    loop's connection. Otherwise settlement, kept result and idempotent reply are one transaction in a worker
    thread; if that transaction cannot be written (a result the database refuses), the request is settled
    without keeping it and the key released, so the hold still ends and the client still gets its answer."""
    try:
        persist = await call.op.persists(call)
        if not persist and call.idempotency_key is None:
            receipt = await settlement.record(priced)
            call.ended = True
            return render_body(receipt)
        try:
            body = await run_db(_finish_unit, call, priced, render_body, stored_body, persist, content_type)
            call.ended = True
            return body
        except Exception as exc:
            if settlement.transient(exc):
                raise
            log.exception("could not keep the result of %s; settling it without", call.request_id)
        receipt = await settlement.record(priced)
    except Exception as exc:
        if not settlement.transient(exc):
            raise
        log.warning("the settlement of %s waits for the database", call.request_id)
        unsettled.add(call.ctx.team_id)
        spawn(settlement.record_after_reply(priced))
        receipt = priced.receipt
    call.ended = True
    if call.idempotency_key is not None:
        await _release_key(call)
    return render_body(receipt)


async def _release_key(call: Call) -> None:
    """Free the Idempotency-Key of a request that will not store its reply; if the database is away, as soon as
    it is back (a key must never stay "in flight" after its request ended)."""
    assert call.idempotency_key is not None
    release = functools.partial(
        run_db, idempotency.abandon, team_id=call.ctx.team_id, key=call.idempotency_key, request_id=call.request_id
    )
    try:
        await release()
    except Exception as exc:
        if not settlement.transient(exc):
            raise
        spawn(settlement.eventually(release, f"releasing the Idempotency-Key of {call.request_id}"))


def validated_usage(reported: dict[str, Any] | None, *, prompt_tokens: int, produced: str) -> pricing.Usage:
    """Upstream's usage when it is usable; otherwise what we count (the prompt, and the text produced)."""
    usage = usage_from_openai(reported)
    if usage is None:
        return pricing.Usage(prompt_tokens=prompt_tokens, completion_tokens=count_tokens(produced))
    return pricing.Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens
    )


async def route_or_release(
    call: Call, attempt: Callable[..., Awaitable[T]], *, interrupted_code: str
) -> fallback.Routed[T]:
    """Try the call's routes; if none answers (or the request is interrupted), release the hold first."""
    try:
        routed = await fallback.call(call.routes, attempt, use_breakers=call.use_breakers)
    except fallback.RoutingFailed as exc:
        await fail(call, error_code=exc.code, attempts=exc.attempts, route=exc.route, billed=exc.billed)
        exc.headers = {**call.response_headers, **exc.headers}
        raise
    except BaseException:
        await fail(call, error_code=interrupted_code, attempts=1, route=None)
        raise
    call.log_fields["route"] = f"{routed.route.provider}:{routed.route.upstream_model}"
    return routed


# --- plain requests -------------------------------------------------------------------------------------


async def complete(call: Call, *, settle_after_reply: bool) -> Reply:
    """A non-streaming call: route, then price, settle and render.

    With settle_after_reply (production), a plain request (nothing kept, no Idempotency-Key) is priced and
    rendered now and its settlement returned as the reply's `after`, for the transport to run once the
    response is sent: the client does not wait for the write. The receipt id and costs in the body are those
    the settlement writes; reads of the team's balance and receipts in this process wait for it
    (billing.settlement.unsettled)."""
    op = call.op

    async def attempt(provider, route) -> Result:
        return await op.call_provider(provider, route, call)

    routed = await route_or_release(call, attempt, interrupted_code="internal_error")
    result, route = routed.value, routed.route
    try:
        priced = settlement.price(
            call.hold,  # type: ignore[arg-type]
            usage=op.usage(call, result),
            prices=op.prices(call),
            meta=_meta(call, route=route, attempts=routed.attempts),
            upstream=op.upstream_prices(call, route),
            billed=_billed(call, routed.billed),
        )

        def render_body(receipt: Receipt) -> bytes:
            return op.render(call, result, receipt)

        if settle_after_reply and call.idempotency_key is None and not await op.persists(call):
            body = render_body(priced.receipt)
            unsettled.add(call.ctx.team_id)
            call.ended = True  # the transport runs `after` whatever happens to the response
            return Reply(
                200, body, call.response_headers, after=functools.partial(settlement.record_after_reply, priced)
            )
        body = await uncancellable(finish(call, priced, render_body=render_body))
    except BaseException:
        # Nothing was written (pricing, rendering or the settlement itself failed): the hold must still end.
        log.exception("request %s failed after its upstream call", call.request_id)
        await fail(call, error_code="internal_error", attempts=routed.attempts, route=route)
        raise
    return Reply(200, body, call.response_headers)


# --- streams --------------------------------------------------------------------------------------------

Write = Callable[[bytes], Awaitable[None]]


class Relay:
    """A stream whose first upstream chunk has arrived. `run` relays every chunk the moment it arrives and
    always ends in exactly one settlement:

    - upstream finished: settle "succeeded" with upstream's usage, then the view's tail (usage, terminator);
    - the client went away (the task is cancelled): upstream is closed, and what was produced is settled
      "partial";
    - upstream broke: what was delivered is settled "partial" (nothing delivered: released at zero), then an
      error event. Settlement runs through `uncancellable`, so cancellation cannot skip it;
    - under a cost cap, the next chunk would cost more than the hold (at most the cap): upstream is closed, the
      view ends the output as if its max tokens were reached, and what was relayed is settled "succeeded".
    """

    def __init__(
        self,
        call: Call,
        view: StreamView,
        iterator: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        routed: fallback.Routed,
        ttft_ms: int,
    ) -> None:
        self.call = call
        self.view = view
        self.iterator = iterator
        self.first = first
        self.route: RouteEntry = routed.route
        self.attempts = routed.attempts
        self.ttft_ms = ttft_ms
        self.billed = routed.billed
        self.transcript: list[bytes] | None = [] if call.idempotency_key is not None else None
        self.meter = (
            cost_cap.Meter(limit_nusd=call.hold_nusd, prompt_tokens=call.prompt_tokens, prices=call.op.prices(call))
            if call.max_cost_nusd is not None
            else None
        )
        self.cut = False

    async def _send(self, write: Write, data: bytes) -> None:
        if self.transcript is not None:
            self.transcript.append(data)
        await write(data)

    async def run(self, write: Write) -> None:
        view = self.view
        outcome = ReceiptStatus.PARTIAL
        broke: ProviderError | None = None
        receipt: Receipt | None = None
        try:
            head = view.head()
            if head:
                await self._send(write, head)
            chunk: dict[str, Any] | None = self.first
            while chunk is not None:
                if self.meter is not None and not self.meter.admit(view.text(chunk)):
                    self.cut = True
                    cut = view.cut()
                    if cut:
                        await self._send(write, cut)
                    break
                data = view.frame(chunk)
                if data is not None:
                    await self._send(write, data)
                try:
                    chunk = await self.iterator.__anext__()
                except StopAsyncIteration:
                    chunk = None
            outcome = ReceiptStatus.SUCCEEDED
        except ProviderError as exc:
            broke = exc
            # Output the client received is paid for; a stream that broke before any costs nothing.
            outcome = ReceiptStatus.PARTIAL if view.produced() else ReceiptStatus.FAILED
            if outcome == ReceiptStatus.FAILED and exc.billed is not None:  # partial: priced from what it relayed
                self.billed = [*self.billed, (self.route, exc.billed)]
            log.warning("stream %s broke mid-way: %s", self.call.request_id, exc.message)
        finally:
            await self._close_upstream()
            receipt = await uncancellable(self._settle(outcome))  # even if the client left
        if broke is not None:
            error = ApiError(502, "upstream_error", "The upstream provider failed in the middle of the stream.")
            await write(view.error(error, self.call.request_id))
            return
        if receipt is not None:
            await self._send(write, view.tail(receipt))

    async def _close_upstream(self) -> None:
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is None:
            return
        try:
            await asyncio.shield(aclose())
        except (Exception, asyncio.CancelledError):  # closing a broken or cancelled upstream may fail; fine
            log.debug("closing upstream stream failed", exc_info=True)

    async def _settle(self, outcome: str) -> Receipt | None:
        call, view = self.call, self.view
        if outcome == ReceiptStatus.FAILED:
            await fail(call, error_code="upstream_error", attempts=self.attempts, route=self.route, billed=self.billed)
            return None
        if self.cut:  # what was relayed, counted as the meter counted it
            usage = self.meter.usage()  # type: ignore[union-attr]
        else:
            reported = view.upstream_usage() if outcome == ReceiptStatus.SUCCEEDED else None
            usage = validated_usage(reported, prompt_tokens=call.prompt_tokens, produced=view.produced())
        priced = settlement.price(
            call.hold,  # type: ignore[arg-type]
            usage=usage,
            prices=call.op.prices(call),
            status=outcome,
            meta=_meta(call, route=self.route, attempts=self.attempts, ttft_ms=self.ttft_ms),
            upstream=call.op.upstream_prices(call, self.route),
            billed=_billed(call, self.billed),
        )
        transcript = self.transcript

        def render_body(receipt: Receipt) -> bytes:
            return b"" if transcript is None else b"".join(transcript) + view.tail(receipt)

        try:
            await finish(
                call,
                priced,
                render_body=render_body,
                stored_body=view.stored_body,
                content_type=sse.HEADERS["Content-Type"],
            )
        except Exception:
            log.exception("could not settle stream %s", call.request_id)
            await fail(call, error_code="internal_error", attempts=self.attempts, route=self.route)
            return None
        return priced.receipt


async def open_stream(call: Call) -> Relay:
    """Route until the first chunk arrives (fallback is still possible: nothing was sent to the client yet)."""
    op = call.op
    view = op.stream_view(call)

    async def first_chunk(provider, route) -> tuple[AsyncIterator[dict[str, Any]], dict[str, Any]]:
        iterator = op.open_provider_stream(provider, route, call)
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            raise ProviderError("malformed", f"{route.provider}: upstream ended the stream without data") from None
        except BaseException:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):  # already failing; the original error matters
                    await aclose()
            raise
        return iterator, first

    routed = await route_or_release(call, first_chunk, interrupted_code="client_disconnected")
    iterator, first = routed.value
    ttft_ms = call.elapsed_ms()
    metrics.child(metrics.first_byte_seconds, op.name).observe(ttft_ms / 1000)
    return Relay(call, view, iterator, first, routed, ttft_ms=ttft_ms)


# --- the whole request ----------------------------------------------------------------------------------


async def run(call: Call) -> Reply | None:
    """Admit, then a plain request's upstream call: its Reply (or a replay's). None for a stream, which the
    transport then opens with `open_stream` (it watches for keep-alives and disconnects meanwhile)."""
    try:
        replay = await admit(call)
    except RedisError:
        raise errors.unavailable() from None
    if replay is not None or call.stream:
        return replay
    if call.op.deferred:
        try:
            return await call.op.submit(call)
        except BaseException:
            await fail(call, error_code="internal_error", attempts=0, route=None)
            raise
    return await complete(call, settle_after_reply=conf.get("GATEWAY_SETTLE_AFTER_REPLY"))
