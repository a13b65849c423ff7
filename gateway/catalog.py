"""An immutable, in-process snapshot of the catalog, read from the database every few seconds.

The hot path never queries the catalog: it reads the snapshot. Admin edits reach this process at
once (signals drop the snapshot) and every other process within `GATEWAY_CATALOG_TTL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from django.db.models.signals import post_delete, post_save

from billing import money
from billing.pricing import Prices
from config.db import run_db
from gateway import conf, image_pricing
from gateway.models import CatalogModel, ModelKind, Provider, ProviderKind, Route, RoutePriority
from gateway.providers.base import ProviderConfig

AUTO_MODEL = "auto"
SIMULATOR_CONFIG = ProviderConfig(kind="simulator", name="simulator")


@dataclass(frozen=True, slots=True)
class RouteEntry:
    route_id: int
    provider: str  # provider slug
    upstream_model: str
    priority: str
    order: int
    weight: int
    enabled: bool  # route and its provider both enabled
    config: ProviderConfig


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    kind: str
    owned_by: str
    created: int
    prices: Prices
    context_window: int
    max_output_tokens: int
    supports_tools: bool
    supports_vision: bool
    supports_json: bool
    routes: tuple[RouteEntry, ...]
    image_prices: Mapping[str, int] = field(default_factory=dict)  # image models: nusd per image (image_pricing)
    supports_reasoning: bool = False
    supports_multimodal_input: bool = False
    image_input_tokens: int = 0

    @property
    def enabled_routes(self) -> tuple[RouteEntry, ...]:
        return tuple(r for r in self.routes if r.enabled)

    def public(self) -> dict:
        """GET /v1/models/{id}: OpenAI's model object plus pricing per million tokens (exact strings), or per
        image by size (and quality) for image models."""
        if self.kind == ModelKind.IMAGE:
            default = image_pricing.default_size(self.image_prices)
            return {
                "id": self.id,
                "object": "model",
                "created": self.created,
                "owned_by": self.owned_by,
                "type": self.kind,
                "sizes": image_pricing.sizes(self.image_prices),
                "qualities": image_pricing.qualities(self.image_prices),
                "pricing": {
                    "currency": "USD",
                    "unit": "per_image",
                    # the default size's price (what a request without size and quality pays), then every entry
                    "per_image": money.exact(self.image_prices[default]) if default else None,
                    "images": {key: money.exact(nusd) for key, nusd in self.image_prices.items()},
                },
            }
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "type": self.kind,
            "context_length": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "pricing": {
                "currency": "USD",
                "unit": "per_million_tokens",
                "input": _usd(self.prices.input_nusd),
                "cached_input": _usd(self.prices.cached_nusd),
                "output": _usd(self.prices.output_nusd),
            },
            "capabilities": {
                "tools": self.supports_tools,
                "vision": self.supports_vision,
                "json": self.supports_json,
                "reasoning": self.supports_reasoning,
                "multimodal_input": self.supports_multimodal_input,
            },
        }


def _usd(price_nusd: int) -> str:
    return money.exact(money.per_million(price_nusd))


@dataclass(frozen=True, slots=True)
class Snapshot:
    models: dict[str, ModelEntry]
    simulator: ProviderConfig
    loaded_at: float


_snapshot: Snapshot | None = None
_refreshing: asyncio.Future | None = None


def _provider_config(provider: Provider) -> ProviderConfig:
    return ProviderConfig(
        kind=provider.kind,
        name=provider.slug,
        base_url=provider.base_url,
        api_key=provider.api_key,
        timeout_seconds=float(provider.timeout_seconds),
        connect_timeout_seconds=float(provider.connect_timeout_seconds),
        options=dict(provider.options or {}),
    )


def load() -> Snapshot:
    """Read the whole catalog (three queries). Disabled models are left out; disabled routes kept, marked."""
    configs: dict[int, ProviderConfig] = {}
    enabled_providers: set[int] = set()
    simulator = SIMULATOR_CONFIG
    for provider in Provider.objects.order_by("pk"):
        configs[provider.pk] = _provider_config(provider)
        if provider.enabled:
            enabled_providers.add(provider.pk)
            if provider.kind == ProviderKind.SIMULATOR and simulator is SIMULATOR_CONFIG:
                simulator = configs[provider.pk]
    routes: dict[int, list[RouteEntry]] = {}
    for route in Route.objects.all().order_by("priority", "order", "id"):
        routes.setdefault(route.model_id, []).append(
            RouteEntry(
                route_id=route.pk,
                provider=configs[route.provider_id].name,
                upstream_model=route.upstream_model,
                priority=route.priority,
                order=route.order,
                weight=route.weight,
                enabled=route.enabled and route.provider_id in enabled_providers,
                config=configs[route.provider_id],
            )
        )
    models = {}
    for m in CatalogModel.objects.filter(enabled=True):
        models[m.public_id] = ModelEntry(
            id=m.public_id,
            kind=m.kind,
            owned_by=m.owned_by,
            created=int(m.created_at.timestamp()),
            prices=Prices(
                input_nusd=m.input_price_nusd, output_nusd=m.output_price_nusd, cached_nusd=m.cached_price_nusd
            ),
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            supports_tools=m.supports_tools,
            supports_vision=m.supports_vision,
            supports_json=m.supports_json,
            routes=tuple(routes.get(m.pk, ())),
            image_prices=MappingProxyType(dict(m.image_prices or {})) if m.kind == ModelKind.IMAGE else {},
            supports_reasoning=m.supports_reasoning,
            supports_multimodal_input=m.supports_multimodal_input,
            image_input_tokens=m.image_input_tokens,
        )
    return Snapshot(models=models, simulator=simulator, loaded_at=time.monotonic())


def _fresh(snap: Snapshot | None) -> bool:
    return snap is not None and time.monotonic() - snap.loaded_at < conf.get("GATEWAY_CATALOG_TTL_SECONDS")


def snapshot() -> Snapshot:
    """Sync access (admin, dashboard, management commands)."""
    global _snapshot
    if not _fresh(_snapshot):
        _snapshot = load()
    return _snapshot  # type: ignore[return-value]


async def asnapshot() -> Snapshot:
    """Async access: serves the previous snapshot while one task reloads a stale one off the event loop."""
    global _snapshot, _refreshing
    snap = _snapshot
    if _fresh(snap):
        return snap  # type: ignore[return-value]
    if snap is not None and _refreshing is not None and not _refreshing.done():
        return snap
    if _refreshing is None or _refreshing.done():
        _refreshing = asyncio.ensure_future(run_db(load))
    task = _refreshing
    if snap is not None:
        task.add_done_callback(_store)
        return snap
    _snapshot = await task
    return _snapshot


def _store(task: asyncio.Future) -> None:
    global _snapshot
    if not task.cancelled() and task.exception() is None:
        _snapshot = task.result()


def invalidate(**_kwargs) -> None:
    global _snapshot
    _snapshot = None


for _model in (Provider, CatalogModel, Route):
    post_save.connect(invalidate, sender=_model, dispatch_uid=f"catalog-invalidate-save-{_model.__name__}")
    post_delete.connect(invalidate, sender=_model, dispatch_uid=f"catalog-invalidate-del-{_model.__name__}")


# --- reading -------------------------------------------------------------------------------------


def list_models(snap: Snapshot | None = None) -> list[ModelEntry]:
    snap = snap or snapshot()
    return sorted(snap.models.values(), key=lambda m: m.id)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request needs from a model (for `model: "auto"`)."""

    tools: bool = False
    vision: bool = False
    json: bool = False
    multimodal_input: bool = False  # embeddings of text and image parts


def order_routes(routes: tuple[RouteEntry, ...]) -> list[RouteEntry]:
    """Primaries before backups, then `order`; equal ones shuffled by weight (so weights share load)."""
    rank = {RoutePriority.PRIMARY: 0, RoutePriority.BACKUP: 1}
    groups: dict[tuple[int, int], list[RouteEntry]] = {}
    for route in routes:
        if route.enabled:
            groups.setdefault((rank.get(route.priority, 2), route.order), []).append(route)
    ordered: list[RouteEntry] = []
    for key in sorted(groups):
        group = groups[key]
        if len(group) > 1:
            # weighted shuffle without replacement (Efraimidis–Spirakis)
            group = sorted(group, key=lambda r: -(random.random() ** (1.0 / max(r.weight, 1))))
        ordered.extend(group)
    return ordered


def resolve(
    model: str, snap: Snapshot, *, kind: str, needs: Needs = Needs(), healthy=lambda route: True
) -> ModelEntry | None:
    """The catalog entry for `model` (None if unknown or of another kind). For "auto": the cheapest
    enabled model of that kind supporting `needs` with at least one healthy route."""
    if model != AUTO_MODEL:
        entry = snap.models.get(model)
        return entry if entry is not None and entry.kind == kind else None
    best: ModelEntry | None = None
    for entry in snap.models.values():
        if (
            entry.kind != kind
            or (needs.tools and not entry.supports_tools)
            or (needs.vision and not entry.supports_vision)
            or (needs.json and not entry.supports_json)
            or (needs.multimodal_input and not entry.supports_multimodal_input)
        ):
            continue
        if not any(healthy(r) for r in entry.enabled_routes):
            continue
        cost = (entry.prices.input_nusd + entry.prices.output_nusd, entry.id)
        if best is None or cost < (best.prices.input_nusd + best.prices.output_nusd, best.id):
            best = entry
    return best


__all__ = [
    "AUTO_MODEL",
    "ModelEntry",
    "ModelKind",
    "Needs",
    "RouteEntry",
    "Snapshot",
    "asnapshot",
    "invalidate",
    "list_models",
    "load",
    "order_routes",
    "resolve",
    "snapshot",
]
