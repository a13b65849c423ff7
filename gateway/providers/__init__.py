"""Upstream providers behind one interface (base.Provider); `get_provider(config)` picks and caches them.

Kinds: "simulator" (built in, no network), "openai" (OpenAI and any OpenAI-compatible server),
"anthropic" (Messages API, translated). Providers hold no connections of their own: every HTTP
provider shares the pooled session of gateway.providers.http.
"""

from __future__ import annotations

import orjson

from gateway.providers.base import Provider, ProviderConfig, ProviderError

__all__ = ["Provider", "ProviderConfig", "ProviderError", "get_provider", "KINDS"]

KINDS = ("simulator", "openai", "anthropic")
_MAX_CACHED = 512  # a catalog has tens of providers; the bound only matters if configs churn

_cache: dict[tuple, Provider] = {}


def _key(config: ProviderConfig) -> tuple:
    # ProviderConfig holds a dict (options), so it is not hashable itself.
    options = orjson.dumps(config.options, option=orjson.OPT_SORT_KEYS, default=str) if config.options else b""
    return (
        config.kind,
        config.name,
        config.base_url,
        config.api_key,
        config.timeout_seconds,
        config.connect_timeout_seconds,
        options,
    )


def _build(config: ProviderConfig) -> Provider:
    if config.kind == "simulator":
        from gateway.providers.simulator import SimulatorProvider

        return SimulatorProvider(config)
    if config.kind == "openai":
        from gateway.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(config)
    if config.kind == "anthropic":
        from gateway.providers.anthropic import AnthropicProvider

        return AnthropicProvider(config)
    raise ValueError(f"unknown provider kind {config.kind!r} (expected one of {', '.join(KINDS)})")


def get_provider(config: ProviderConfig) -> Provider:
    """The provider for `config`, built once per distinct configuration (changed credentials → new one)."""
    key = _key(config)
    provider = _cache.get(key)
    if provider is None:
        if len(_cache) >= _MAX_CACHED:
            _cache.clear()
        provider = _cache[key] = _build(config)
    return provider


def clear_cache() -> None:
    """Forget built providers (tests change the settings a provider reads when it is built)."""
    _cache.clear()
