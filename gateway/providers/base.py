"""The one small interface every upstream provider implements.

Providers speak OpenAI's wire shapes on the way in and out (plain dicts), know nothing about the
ORM, billing or routing, and raise `ProviderError` for anything that went wrong upstream. The
router decides what is retryable from `ProviderError.retryable`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol


class ProviderError(Exception):
    """An upstream failure.

    kind: "connect" (refused/reset/DNS), "timeout", "http" (upstream answered with an error status),
          "malformed" (unparseable or truncated body/stream).
    status: upstream HTTP status for kind == "http", else None.
    retryable: try the next route? True for connect errors, timeouts, 429 and 5xx, malformed
               responses; False for 4xx caused by the request itself (400, 401, 403, 404, 413, 422).
    billed: the usage upstream reported on the failure (an error or malformed body with a believable OpenAI
            `usage`): it charged for that attempt although it failed, which the receipt's upstream cost includes.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.body = body
        self.retry_after = retry_after  # seconds, from upstream's Retry-After on 429/503 (optional)
        self.billed = usage_from_openai(body.get("usage")) if isinstance(body, dict) else None
        if retryable is None:
            retryable = kind in ("connect", "timeout", "malformed") or (
                status is not None and (status == 429 or status >= 500)
            )
        self.retryable = retryable


class ModerationRejected(ProviderError):
    """The provider's content policy refused the prompt: the request's own fault (never retried or re-routed);
    an image job ends `moderation_rejected`, a synchronous call answers 400 content_policy_violation."""

    def __init__(self, message: str, *, body: Any = None) -> None:
        super().__init__("http", message, status=400, retryable=False, body=body)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """What a provider needs to reach its upstream; built by the catalog, credentials already decrypted."""

    kind: str  # "simulator" | "openai" | "anthropic"
    name: str  # the catalog's provider slug, e.g. "openai", "demo-sim"
    base_url: str = ""
    api_key: str = ""
    timeout_seconds: float = 300.0
    connect_timeout_seconds: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)  # e.g. simulator latency / tokens per second


@dataclass(frozen=True, slots=True)
class UpstreamUsage:
    prompt_tokens: int  # uncached prompt tokens
    completion_tokens: int
    cached_tokens: int = 0


# Upstream usage is believed only when it is a plain count in this range: anything else (a negative, a
# string, 5e9 completion tokens for a 16-token request) is a broken or hostile upstream, and the gateway
# counts locally instead. Costs are clamped to the hold either way (billing.settlement.price).
MAX_REPORTED_TOKENS = 1_000_000_000


def token_count(value: Any) -> int | None:
    """A token count from an upstream's JSON, or None when it is not a believable whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_REPORTED_TOKENS:
        return value
    return None


def usage_from_openai(usage: Any) -> UpstreamUsage | None:
    """OpenAI's `usage` object → UpstreamUsage (its prompt_tokens include the cached ones; ours do not).
    None when absent or not believable (the caller counts locally)."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens", 0))
    details = usage.get("prompt_tokens_details")
    cached = token_count((details.get("cached_tokens") if isinstance(details, dict) else None) or 0)
    if prompt is None or completion is None or cached is None:
        return None
    cached = min(cached, prompt)
    return UpstreamUsage(prompt_tokens=prompt - cached, completion_tokens=completion, cached_tokens=cached)


@dataclass(slots=True)
class ChatResult:
    body: dict[str, Any]  # an OpenAI `chat.completion` (or `text_completion`) object as upstream sent it
    usage: UpstreamUsage


@dataclass(slots=True)
class EmbeddingResult:
    body: dict[str, Any]  # an OpenAI embeddings `list` object; vectors as float lists
    usage: UpstreamUsage


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes  # the encoded image (PNG from the simulator; whatever upstream made, fetched if it sent a URL)
    content_type: str = "image/png"
    revised_prompt: str | None = None


@dataclass(slots=True)
class ImageResult:
    images: list[GeneratedImage]


class Provider(Protocol):
    config: ProviderConfig

    async def chat(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        """Non-streaming chat completion. `payload` is the client's OpenAI request body."""

    def stream_chat(self, payload: dict[str, Any], *, upstream_model: str) -> AsyncGenerator[dict[str, Any], None]:
        """Yield OpenAI `chat.completion.chunk` dicts. The last chunk carries `usage` (providers ask
        upstream for it, or count). Closing the iterator (aclose / task cancellation) must cancel the
        upstream request promptly."""

    async def completion(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        """Legacy /v1/completions (text_completion)."""

    def stream_completion(
        self, payload: dict[str, Any], *, upstream_model: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Streaming legacy completion chunks; last chunk carries `usage`."""

    async def embeddings(self, payload: dict[str, Any], *, upstream_model: str) -> EmbeddingResult:
        """Embeddings; `payload["input"]` is a string or list of strings."""

    async def images(self, payload: dict[str, Any], *, upstream_model: str) -> ImageResult:
        """Generate images (OpenAI's images/generations body: prompt, n, size, quality, style). Returns the
        image bytes themselves, never links: outputs must not depend on upstream's storage. Raises
        ModerationRejected when the provider's content policy refuses the prompt."""
