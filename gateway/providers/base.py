"""The one small interface every upstream provider implements.

Providers speak OpenAI's wire shapes on the way in and out (plain dicts), know nothing about the
ORM, billing or routing, and raise `ProviderError` for anything that went wrong upstream. The
router decides what is retryable from `ProviderError.retryable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class ProviderError(Exception):
    """An upstream failure.

    kind: "connect" (refused/reset/DNS), "timeout", "http" (upstream answered with an error status),
          "malformed" (unparseable or truncated body/stream).
    status: upstream HTTP status for kind == "http", else None.
    retryable: try the next route? True for connect errors, timeouts, 429 and 5xx, malformed
               responses; False for 4xx caused by the request itself (400, 401, 403, 404, 413, 422).
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
        if retryable is None:
            retryable = kind in ("connect", "timeout", "malformed") or (
                status is not None and (status == 429 or status >= 500)
            )
        self.retryable = retryable


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


# More tokens than any model reads or writes in one request: a count above it is a broken upstream, not usage.
MAX_REPORTED_TOKENS = 100_000_000


def _count(value: Any) -> int | None:
    """A token count as upstream reported it: a non-negative integer of sane size, else None."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPORTED_TOKENS:
        return None
    return value


def usage_from_openai(usage: dict[str, Any] | None) -> UpstreamUsage | None:
    """OpenAI's `usage` object → UpstreamUsage (its prompt_tokens include the cached ones; ours do not). None when
    it is missing or not believable (non-integers, negatives, absurd sizes): the caller then counts locally."""
    if not usage or not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") or {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    if prompt is None or completion is None or cached is None:
        return None
    cached = min(cached, prompt)
    return UpstreamUsage(prompt_tokens=prompt - cached, completion_tokens=completion, cached_tokens=cached)


def usage_from_anthropic(usage: dict[str, Any] | None) -> UpstreamUsage | None:
    """Anthropic's `usage` object → UpstreamUsage, validated like usage_from_openai. Its input_tokens exclude cache
    reads and cache writes; writes are billed as prompt tokens, reads as cached ones."""
    if not usage or not isinstance(usage, dict) or "output_tokens" not in usage:
        return None
    counts = [
        _count(usage.get(name))
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    ]
    if any(c is None for c in counts):
        return None
    fresh, written, read, output = counts
    return UpstreamUsage(prompt_tokens=fresh + written, completion_tokens=output, cached_tokens=read)  # type: ignore[operator]


@dataclass(slots=True)
class ChatResult:
    body: dict[str, Any]  # an OpenAI `chat.completion` (or `text_completion`) object as upstream sent it
    usage: UpstreamUsage


@dataclass(slots=True)
class EmbeddingResult:
    body: dict[str, Any]  # an OpenAI embeddings `list` object; vectors as float lists
    usage: UpstreamUsage


class Provider(Protocol):
    config: ProviderConfig

    async def chat(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        """Non-streaming chat completion. `payload` is the client's OpenAI request body."""

    def stream_chat(self, payload: dict[str, Any], *, upstream_model: str) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI `chat.completion.chunk` dicts. The last chunk carries `usage` (providers ask
        upstream for it, or count). Closing the iterator (aclose / task cancellation) must cancel the
        upstream request promptly."""

    async def completion(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        """Legacy /v1/completions (text_completion)."""

    def stream_completion(self, payload: dict[str, Any], *, upstream_model: str) -> AsyncIterator[dict[str, Any]]:
        """Streaming legacy completion chunks; last chunk carries `usage`."""

    async def embeddings(self, payload: dict[str, Any], *, upstream_model: str) -> EmbeddingResult:
        """Embeddings; `payload["input"]` is a string or list of strings."""
