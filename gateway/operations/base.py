"""What an endpoint declares, and the per-request state the pipeline carries through its stages.

An `Operation` says what a /v1 endpoint accepts (its pydantic schema), what it may cost (`budget`), how to
call a provider (`call_provider`, `open_provider_stream`), how to price the result (`usage`, `prices`) and how
to render it (`render`, `stream_view`). gateway/pipeline.py runs every stage around those declarations
(authenticate, scope, rate limit, idempotency, hold, route with fallbacks, settle, receipt) and owns the
failure rules, so an operation module is only its own shapes. Adding an endpoint is a new module in
gateway/operations/ plus a line in its __init__; the pipeline does not change.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from accounts.auth import KeyContext
from billing import pricing
from billing.models import Receipt
from billing.money import json_number, usd
from billing.settlement import Hold, UpstreamPrices
from config.errors import ApiError
from gateway import cost_cap, dialects
from gateway.catalog import ModelEntry, Needs, RouteEntry
from gateway.providers.base import Provider, UpstreamUsage
from gateway.scenarios import Scenario


@dataclass(slots=True)
class Call:
    """One request on its way through the pipeline. The transport fills the first block; the pipeline's stages
    fill the rest in order (each field is set once)."""

    op: Operation
    request_id: str
    started: float  # perf_counter() when the request arrived
    headers: dict[str, str]  # request headers, names lower-cased
    body: bytes
    client_ip: str | None = None
    log_fields: dict[str, str] = field(default_factory=dict)  # what every log line of this request says
    # authenticate
    ctx: KeyContext = None  # type: ignore[assignment]
    response_headers: dict[str, str] = field(default_factory=dict)
    # parse
    payload: dict[str, Any] = field(default_factory=dict)  # the JSON body
    request: Any = None  # the validated pydantic model (op.schema)
    max_cost_nusd: int | None = None  # the request's cost cap (its own, or its key's default)
    # plan
    model: ModelEntry = None  # type: ignore[assignment]  # priced by the version in force at `priced_at`
    priced_at: datetime | None = None  # when the request was priced (just before its hold): whose price versions
    routes: list[RouteEntry] = field(default_factory=list)
    use_breakers: bool = True
    upstream: dict[str, Any] = field(default_factory=dict)  # what goes to the provider
    prompt_tokens: int = 0  # our count of the prompt
    prompt_estimate: int = 0  # that count plus a margin for other tokenizers: what the hold assumes
    output_budget: int = 0  # the most output tokens the request may produce
    hold_nusd: int = 0
    stream: bool = False
    scenario: Scenario | None = None  # a test key's Tollgate-Test-Scenario (gateway/scenarios.py)
    # hold
    idempotency_key: str | None = None
    hold: Hold | None = None
    ended: bool = False  # the hold was settled or released (or that is under way): it cannot end twice
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def public_id(self) -> str:
        """The object id clients see (chatcmpl-…, cmpl-…, resp_…, msg_…), derived from the request id."""
        return self.op.id_prefix + self.request_id.removeprefix("req_")

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str = "application/json"
    # Work to run once the reply is sent: the settlement, when it is written after replying.
    after: Callable[[], Awaitable[Any]] | None = None


@dataclass(slots=True)
class Result:
    """What a provider call returned: the upstream body (an OpenAI-shaped dict) and its validated usage."""

    body: dict[str, Any]
    usage: UpstreamUsage


def chunk_text(chunk: dict[str, Any]) -> str:
    """The text an OpenAI chat (or legacy completion) chunk adds: content, tool call names and arguments."""
    pieces: list[str] = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta is not None:  # chat
            if delta.get("content"):
                pieces.append(delta["content"])
            for tool_call in delta.get("tool_calls") or ():
                function = tool_call.get("function") or {}
                pieces.append((function.get("name") or "") + (function.get("arguments") or ""))
        elif choice.get("text"):  # legacy completions
            pieces.append(choice["text"])
    return "".join(pieces)


class StreamView:
    """How one stream looks to the client. The pipeline feeds it upstream chunks (OpenAI chat chunk dicts, as
    providers yield them) and writes the bytes it returns; it keeps what it needs to price the stream."""

    def text(self, chunk: dict[str, Any]) -> str:
        """The output text a chunk carries, before it is framed (a cost cap counts it)."""
        return chunk_text(chunk)

    def cut(self) -> bytes:
        """The stream stops here because the next chunk would cost more than the request's cap: the frames that end
        its output as if its max tokens were reached (finish_reason "length" in the operation's dialect)."""
        raise NotImplementedError

    def head(self) -> bytes:
        """Frames sent before the first upstream chunk (the Responses and Messages APIs open with events)."""
        return b""

    def frame(self, chunk: dict[str, Any]) -> bytes | None:
        raise NotImplementedError

    def upstream_usage(self) -> dict[str, Any] | None:
        """The usage object upstream reported, if any (validated by the pipeline)."""
        raise NotImplementedError

    def produced(self) -> str:
        """The text produced so far (counted locally when upstream reports no usable usage)."""
        raise NotImplementedError

    def tail(self, receipt: Receipt) -> bytes:
        """Frames after a successful (or partial) settlement: usage, the terminator."""
        raise NotImplementedError

    def error(self, exc: ApiError, request_id: str) -> bytes:
        """An error after the stream opened, in the operation's dialect."""
        raise NotImplementedError

    def stored_body(self, receipt: Receipt) -> bytes:
        """The whole object the stream added up to (for a stored completion)."""
        raise NotImplementedError


class Operation:
    """A charging /v1 endpoint. Subclasses set the class attributes and implement the hooks they need."""

    name: ClassVar[str]  # the receipt's endpoint, e.g. "chat.completions"
    path: ClassVar[str]  # e.g. "/v1/chat/completions"
    schema: ClassVar[type[BaseModel]]
    model_kind: ClassVar[str]  # the catalog kind its models have
    id_prefix: ClassVar[str] = ""
    dialect: ClassVar[dialects.Dialect] = dialects.OPENAI
    has_estimate: ClassVar[bool] = True  # also serves POST {path}/estimate
    estimate_path: ClassVar[str | None] = None  # where the estimate is served, when not at {path}/estimate
    context_param: ClassVar[str | None] = None  # the field named when a prompt exceeds the context window
    summary: ClassVar[str] = ""  # for the OpenAPI document, with:
    response_doc: ClassVar[type]  # the response's shape (a ninja Schema in gateway/openapi.py)
    streams: ClassVar[bool] = False  # it can answer with server-sent events
    # An asynchronous operation (a job) answers from `submit` once its hold is placed, instead of calling a
    # provider inside the request; its hold then outlives the request (no process lease, HOLD_TTL_SECONDS).
    deferred: ClassVar[bool] = False
    # Other methods at `path` are reads served by the ninja API (GET /v1/images lists the jobs POST creates).
    shares_path: ClassVar[bool] = False

    # -- planning (no I/O) ------------------------------------------------------------------------------

    def prepare(self, call: Call) -> None:
        """Adjust the validated payload before planning (e.g. attachments become content parts)."""

    async def load(self, call: Call) -> None:
        """Read what the request refers to (e.g. the stored conversation of `previous_response_id`) once it is
        parsed and authenticated, before planning: an ApiError here (a 404) refuses it before any hold."""

    def needs(self, call: Call) -> Needs:
        """What the request needs from a model (`model: "auto"` picks by it; others are checked against it)."""
        return Needs()

    def count_prompt(self, call: Call) -> int:
        raise NotImplementedError

    def output_budget(self, call: Call) -> int:
        """The most output tokens this request may produce (400 if it asks for more than the model can)."""
        return 0

    def upstream_payload(self, call: Call) -> dict[str, Any]:
        return dict(call.payload)

    def wants_stream(self, call: Call) -> bool:
        return False

    async def submit(self, call: Call) -> Reply:
        """A deferred operation's answer (e.g. 202 with the queued job). It takes over the hold: it must end it
        (or hand it to work that will) and set `call.ended`; if it raises first, the pipeline releases it."""
        raise NotImplementedError

    # -- the provider call ------------------------------------------------------------------------------

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        raise NotImplementedError

    def open_provider_stream(self, provider: Provider, route: RouteEntry, call: Call) -> AsyncIterator[dict]:
        raise NotImplementedError

    # -- price and render -------------------------------------------------------------------------------

    def prices(self, call: Call) -> pricing.Prices:
        return call.model.prices

    def upstream_prices(self, call: Call, route: RouteEntry) -> UpstreamPrices | None:
        """What `route`'s upstream charges the operator for this request: its cost version in force when the request
        was priced (None when nobody entered one)."""
        entry = route.cost_at(call.priced_at) if call.priced_at is not None else None
        return None if entry is None else UpstreamPrices(entry.prices, entry.version)

    # -- a cost cap ---------------------------------------------------------------------------------------

    def choices(self, call: Call) -> int:
        """How many outputs the budget covers (chat's `n`)."""
        return 1

    def cap_output(self, call: Call, tokens: int) -> None:
        """Make upstream produce at most `tokens` output tokens per choice (its max tokens, however it names them)."""
        payload = call.upstream
        keys = [k for k in ("max_completion_tokens", "max_tokens") if payload.get(k) is not None] or ["max_tokens"]
        for key in keys:
            payload[key] = tokens

    def fit_cost(self, call: Call, cap_nusd: int) -> None:
        """Clamp the output budget so the hold fits the request's cost cap; 400 max_cost_too_low when not even the
        prompt (and one output token) fits."""
        if self.budget(call) <= cap_nusd:
            return
        prices = self.prices(call)
        prompt = pricing.hold_amount(prompt_tokens_estimate=call.prompt_estimate, max_output_tokens=0, prices=prices)
        n = self.choices(call)
        tokens = cost_cap.affordable_output(
            cap_nusd=cap_nusd, prompt_nusd=prompt, output_price_nusd=prices.output_nusd, choices=n
        )
        if prompt > cap_nusd or tokens < 1:
            what = "the prompt alone" if prompt > cap_nusd else "the prompt and one output token"
            raise cost_cap.too_low(
                f"The max cost of {usd(cap_nusd)} does not cover {what} ({call.prompt_estimate} prompt tokens "
                f"cost up to {usd(prompt)} on '{call.model.id}')."
            )
        call.output_budget = tokens * n
        self.cap_output(call, tokens)

    def budget(self, call: Call) -> int:
        """The hold: the most this request may cost (its prompt estimate and whole output budget)."""
        return pricing.hold_amount(
            prompt_tokens_estimate=call.prompt_estimate, max_output_tokens=call.output_budget, prices=self.prices(call)
        )

    def usage(self, call: Call, result: Result) -> pricing.Usage:
        """What a plain call produced, as priced: upstream's validated token usage."""
        usage = result.usage
        return pricing.Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
        )

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        raise NotImplementedError

    def stream_view(self, call: Call) -> StreamView:
        raise NotImplementedError

    # -- keeping the result (stored completions, responses) ------------------------------------------------

    async def persists(self, call: Call) -> bool:
        """Whether the result is kept (written in the settlement's transaction)."""
        return False

    def persist(self, call: Call, receipt: Receipt, body: bytes) -> None:
        """Write what is kept. Runs inside the settlement's transaction."""

    # -- the estimate -----------------------------------------------------------------------------------

    def estimator(self) -> Operation:
        """The operation that answers the estimate path (another one when its body differs, e.g. Anthropic's
        count_tokens, which takes no max_tokens)."""
        return self

    def estimate_body(self, call: Call) -> bytes:
        """POST {path}/estimate: the hold the request would place and what its prompt would cost."""
        prices = self.prices(call)
        prompt_cost = call.prompt_estimate * prices.input_nusd
        output_cost = call.output_budget * prices.output_nusd
        return orjson.dumps(
            {
                "object": "estimate",
                "model": call.model.id,
                "prompt_tokens": call.prompt_estimate,
                "max_completion_tokens": call.output_budget,
                "input_cost_usd": json_number(prompt_cost),
                "max_output_cost_usd": json_number(output_cost),
                "max_total_cost_usd": json_number(prompt_cost + output_cost),
                "hold_usd": json_number(0 if call.ctx.is_test else call.hold_nusd),
                "is_test": call.ctx.is_test,
            }
        )
