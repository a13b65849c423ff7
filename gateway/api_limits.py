"""The one rule that makes every /v1 operation count against the calling key's requests per minute.

Installed on the whole ninja API (config/api.py, `api.add_decorator(count_request, mode="view")`), so the
routers of accounts and billing get it without importing gateway. An operation authenticated with a valid
key counts as one request of zero tokens, gets OpenAI's x-ratelimit-* headers, and is refused with 429
and Retry-After once the key's (or its team's) requests-per-minute window is full. The inference POSTs
count themselves, with their token estimate, in gateway.services.admit: they carry `counts_own_requests`.

A request without a valid key is not counted here: the operation itself answers it with its 401/403.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponseBase

from accounts.auth import aauthenticate, extract_key, key_headers
from config.errors import ApiError, api_error_response
from config.net import client_ip_from_request
from gateway import ratelimit


def counts_own_requests(view: Callable) -> Callable:
    """Mark a view whose service does its own rate limiting (with a token estimate)."""
    view.counts_own_requests = True  # type: ignore[attr-defined]
    return view


async def _admit(request: HttpRequest) -> tuple[dict[str, str], HttpResponseBase | None]:
    """The headers to add, or a 429 (or the limiter's 503) to answer with instead of running the operation.
    This runs outside the operation, where ninja's exception handlers do not reach: every refusal is answered here."""
    raw = extract_key(request.headers)
    if raw is None:
        return {}, None
    try:
        ctx = await aauthenticate(raw, client_ip=client_ip_from_request(request), scope="")
    except ApiError:
        return {}, None  # the operation refuses it in its own words
    try:
        decision = await ratelimit.check(ctx, tokens=0)
    except ApiError as exc:  # the limiter cannot be reached (Redis away): 503 with Retry-After, as for inference
        return {}, api_error_response(exc, getattr(request, "request_id", ""))
    headers = {**key_headers(ctx), **decision.headers}
    try:
        ratelimit.raise_if_denied(decision)
    except ApiError as exc:
        exc.headers = {**headers, **exc.headers}
        return headers, api_error_response(exc, getattr(request, "request_id", ""))
    return decision.headers, None


def _with_headers(response: HttpResponseBase, headers: dict[str, str]) -> HttpResponseBase:
    for name, value in headers.items():
        if not response.has_header(name):
            response[name] = value
    return response


def count_request(run: Callable) -> Callable:
    """A ninja "view" decorator: wraps one operation's `run` (sync or async)."""
    view = getattr(getattr(run, "__self__", None), "view_func", None)
    if getattr(view, "counts_own_requests", False):
        return run

    if asyncio.iscoroutinefunction(run):

        @functools.wraps(run)
        async def arun(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
            headers, refusal = await _admit(request)
            if refusal is not None:
                return refusal
            return _with_headers(await run(request, *args, **kwargs), headers)

        return arun

    @functools.wraps(run)
    def srun(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        headers, refusal = async_to_sync(_admit)(request)
        if refusal is not None:
            return refusal
        return _with_headers(run(request, *args, **kwargs), headers)

    return srun
