"""Images, paid for like tokens: POST /v1/images/generations (OpenAI's synchronous API) and POST /v1/images
(an asynchronous job, polled at GET /v1/images/{id}), both with `{path}/estimate`.

The price is per image, by size (and quality where the model prices it): gateway.image_pricing. The hold is
`n × unit price`; a plain generation is charged for the images it returned, a job when it ends
(gateway.image_jobs). Images cost no tokens: a call counts as one request of zero tokens against the limits.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from django.utils import timezone

from billing import pricing
from billing.models import Receipt
from billing.money import json_number, usd
from billing.settlement import UpstreamPrices
from config.db import run_db
from config.errors import ApiError
from gateway import cost_cap, fallback, image_files, image_jobs, image_pricing, openapi, render, schemas
from gateway.catalog import RouteEntry
from gateway.models import ModelKind
from gateway.operations.base import Call, Operation, Reply, Result
from gateway.providers.base import ModerationRejected, Provider, ProviderError, UpstreamUsage

# Fields the gateway acts on itself: how results are returned is ours to decide (upstream URLs are fetched).
GATEWAY_ONLY = ("response_format",)


def price_of(call: Call) -> image_pricing.ImagePrice:
    """The unit price for the size and quality asked (400 naming the field when the model does not offer it)."""
    request = call.request
    try:
        return image_pricing.price_for(
            call.model.image_prices, model=call.model.id, size=request.size, quality=request.quality
        )
    except image_pricing.Unpriced as exc:
        raise ApiError(400, "invalid_request_error", exc.message, param=exc.param) from None


class _Images(Operation):
    model_kind = ModelKind.IMAGE
    has_estimate = True
    estimate_doc = openapi.ImageEstimateOut

    def count_prompt(self, call: Call) -> int:
        return 0  # priced per image: the prompt's tokens cost nothing and count nothing

    def output_budget(self, call: Call) -> int:
        price_of(call)  # size and quality are checked here, before anything is held
        return 0

    def upstream_payload(self, call: Call) -> dict[str, Any]:
        body = {k: v for k, v in call.payload.items() if k not in GATEWAY_ONLY}
        body["size"] = price_of(call).size
        body["n"] = call.request.n
        return body

    def prices(self, call: Call) -> pricing.Prices:
        return pricing.Prices(input_nusd=0, output_nusd=0, image_nusd=price_of(call).unit_nusd)

    def budget(self, call: Call) -> int:
        return pricing.hold_amount(
            prompt_tokens_estimate=0, max_output_tokens=0, prices=self.prices(call), max_images=call.request.n
        )

    def fit_cost(self, call: Call, cap_nusd: int) -> None:
        """Images are not clamped to a cost cap: a smaller `n` is another request. Refused when they cost more."""
        hold = self.budget(call)
        if hold > cap_nusd:
            price = price_of(call)
            raise cost_cap.too_low(
                f"{call.request.n} image(s) of {price.size} at {usd(price.unit_nusd)} each cost {usd(hold)}, more than "
                f"the max cost of {usd(cap_nusd)}."
            )

    def upstream_prices(self, call: Call, route: RouteEntry) -> UpstreamPrices | None:
        """The route's own price per image for the size and quality asked (its cost table, as the sale table)."""
        entry = route.cost_at(call.priced_at) if call.priced_at is not None else None
        return None if entry is None else image_cost(entry, price_of(call).size, call.request.quality)

    def estimate_body(self, call: Call) -> bytes:
        return orjson.dumps(
            image_jobs.estimate(model=call.model.id, n=call.request.n, price=price_of(call), is_test=call.ctx.is_test)
        )


def image_cost(entry, size: str | None, quality: str | None) -> UpstreamPrices | None:
    """What one route charges per image of `size`/`quality` (a route cost version's table); None when it names no
    price for that size."""
    try:
        price = image_pricing.price_for(entry.image_prices, model="", size=size, quality=quality)
    except image_pricing.Unpriced:
        return None
    return UpstreamPrices(pricing.Prices(input_nusd=0, output_nusd=0, image_nusd=price.unit_nusd), entry.version)


class ImageGenerations(_Images):
    """OpenAI's images.generate: `data[i]` is a `url` (a Tollgate link, see gateway.image_files) or `b64_json`."""

    name = "images.generations"
    path = "/v1/images/generations"
    schema = schemas.ImageGenerationRequest
    summary = "Create images (OpenAI's images/generations; `url` links or `b64_json`)"
    response_doc = openapi.ImagesOut

    async def call_provider(self, provider: Provider, route: RouteEntry, call: Call) -> Result:
        try:
            result = await provider.images(call.upstream, upstream_model=route.upstream_model)
        except ModerationRejected as exc:
            fallback.breakers.success(route)  # it answered; the prompt was at fault
            raise fallback.RoutingFailed(
                400, "content_policy_violation", exc.message, attempts=1, route=route
            ) from None
        images = result.images[: call.request.n]  # never more than was asked (and held)
        if not images:
            raise ProviderError("malformed", f"{route.provider}: upstream returned no image")
        if call.request.response_format == "b64_json":
            data = [{"b64_json": base64.b64encode(i.data).decode(), "revised_prompt": i.revised_prompt} for i in images]
        else:
            outputs = await run_db(
                image_files.store,
                images,
                team_id=call.ctx.team_id,
                request_id=call.request_id,
                now=timezone.now(),
            )
            data = [{"url": image_files.url_for(o), "revised_prompt": o.revised_prompt or None} for o in outputs]
        return Result({"created": int(time.time()), "data": data}, UpstreamUsage(prompt_tokens=0, completion_tokens=0))

    def usage(self, call: Call, result: Result) -> pricing.Usage:
        return pricing.Usage(prompt_tokens=0, completion_tokens=0, images=len(result.body["data"]))

    def render(self, call: Call, result: Result, receipt: Receipt) -> bytes:
        return orjson.dumps(
            {
                "created": result.body["created"],
                "data": result.body["data"],
                "usage": image_usage(receipt),
                "routing": render.routing_block(receipt),
            }
        )


def image_usage(receipt: Receipt) -> dict[str, Any]:
    """The usage block of an image reply: OpenAI's token fields (zero: images are priced per image) and ours."""
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "images": receipt.images,
        "unit_price_usd": json_number(receipt.image_price_nusd),
        "input_cost_usd": json_number(receipt.input_cost_nusd),
        "output_cost_usd": json_number(receipt.output_cost_nusd),
        "total_cost_usd": json_number(receipt.total_cost_nusd),
        "latency_ms": receipt.latency_ms,
        "receipt_id": receipt.public_id,
    }


class ImageJobs(_Images):
    """POST /v1/images: 202 with the queued job once its hold is placed; the work runs in the background."""

    name = "images"
    path = "/v1/images"
    schema = schemas.ImageJobRequest
    id_prefix = "img_"
    summary = "Start an image job (202; poll GET /v1/images/{id} until a terminal status)"
    response_doc = openapi.ImageJobOut
    deferred = True
    shares_path = True

    async def submit(self, call: Call) -> Reply:
        ctx, request = call.ctx, call.request
        assert call.hold is not None
        submission = image_jobs.Submission(
            public_id=call.public_id,
            team_id=ctx.team_id,
            key_id=ctx.key_id,
            key_label=f"{ctx.name} ({ctx.masked})",
            is_test=ctx.is_test,
            request_id=call.request_id,
            idempotency_key=call.idempotency_key,
            model=call.model.id,
            prompt=request.prompt,
            n=request.n,
            price=price_of(call),
            style=request.style or "",
            upstream_payload=call.upstream,
            hold=call.hold,
            price_version=call.model.price_version,
            max_cost_nusd=call.max_cost_nusd,
        )
        body = await run_db(image_jobs.create, submission)
        call.ended = True  # the job owns the hold now: it ends it when it reaches a terminal status
        return Reply(202, body, call.response_headers)
