"""An immutable, in-process snapshot of the catalog, read from the database every few seconds.

The hot path never queries the catalog: it reads the snapshot. Admin edits reach this process at
once (signals drop the snapshot) and every other process within `GATEWAY_CATALOG_TTL_SECONDS`.

Prices come from the price book (gateway.price_book): each model carries its sale price `schedule` (every
version, the scheduled ones included) and each route its cost schedule, and a request is
priced by the version in force at its own moment (`ModelEntry.at`, `RouteEntry.cost_at`), so a change scheduled
for 12:00 applies to the requests held from 12:00 on, whichever server and however old its snapshot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from django.db.models.signals import post_delete, post_save

from billing import money
from billing.pricing import Prices
from config.db import run_db
from gateway import conf, image_pricing
from gateway.models import (
    CatalogModel,
    ModelKind,
    PriceVersion,
    Provider,
    ProviderKind,
    Route,
    RouteCostVersion,
    RoutePriority,
)
from gateway.price_book import in_force
from gateway.providers.base import ProviderConfig

AUTO_MODEL = "auto"
SIMULATOR_CONFIG = ProviderConfig(kind="simulator", name="simulator")


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One version of the price book: a model's sale prices or a route's upstream costs, from `effective_at`."""

    version: str  # pv_… or cv_…
    effective_at: datetime
    prices: Prices
    image_prices: Mapping[str, int] = field(default_factory=dict)  # nusd per image by size[/quality]


def _upcoming(schedule: tuple[PriceEntry, ...], moment: datetime) -> PriceEntry | None:
    return next((entry for entry in schedule if entry.effective_at > moment), None)


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
    costs: tuple[PriceEntry, ...] = ()  # what its upstream charges: every cost version, in order

    def cost_at(self, moment: datetime) -> PriceEntry | None:
        """The upstream's prices in force at `moment` (None: nobody entered them)."""
        return in_force(self.costs, moment)


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
    # The price book: `prices` and `image_prices` above are those of version `price_version`; `schedule` holds every
    # version, in order.
    price_version: str = ""
    price_effective_at: datetime | None = None
    schedule: tuple[PriceEntry, ...] = ()

    @property
    def enabled_routes(self) -> tuple[RouteEntry, ...]:
        return tuple(r for r in self.routes if r.enabled)

    def at(self, moment: datetime) -> ModelEntry:
        """This model priced by the version in force at `moment` (itself when that is the version it carries)."""
        entry = in_force(self.schedule, moment)
        if entry is None or entry.version == self.price_version:
            return self
        return dataclasses.replace(
            self,
            prices=entry.prices,
            image_prices=entry.image_prices,
            price_version=entry.version,
            price_effective_at=entry.effective_at,
        )

    def _pricing(self) -> dict:
        if self.kind == ModelKind.IMAGE:
            default = image_pricing.default_size(self.image_prices)
            return {
                "currency": "USD",
                "unit": "per_image",
                # the default size's price (what a request without size and quality pays), then every entry
                "per_image": money.exact(self.image_prices[default]) if default else None,
                "images": {key: money.exact(nusd) for key, nusd in self.image_prices.items()},
            }
        return {
            "currency": "USD",
            "unit": "per_million_tokens",
            "input": _usd(self.prices.input_nusd),
            "cached_input": _usd(self.prices.cached_nusd),
            "output": _usd(self.prices.output_nusd),
        }

    def public(self, moment: datetime) -> dict:
        """GET /v1/models/{id}: OpenAI's model object plus the prices in force at `moment` per million tokens
        (exact strings), or per image by size (and quality) for image models, with their price version and, when
        one is scheduled, the next prices and when they take effect."""
        current = self.at(moment)
        pricing = current._pricing()
        pricing["version"] = current.price_version
        pricing["effective_at"] = _unix(current.price_effective_at)
        upcoming = _upcoming(self.schedule, moment)
        if upcoming is None:
            pricing["next"] = None
        else:
            following = current.at(upcoming.effective_at)
            pricing["next"] = {
                **{k: v for k, v in following._pricing().items() if k not in ("currency", "unit")},
                "version": following.price_version,  # of versions taking effect together, the last added
                "effective_at": _unix(upcoming.effective_at),
            }
        if self.kind == ModelKind.IMAGE:
            return {
                "id": self.id,
                "object": "model",
                "created": self.created,
                "owned_by": self.owned_by,
                "type": self.kind,
                "sizes": image_pricing.sizes(current.image_prices),
                "qualities": image_pricing.qualities(current.image_prices),
                "pricing": pricing,
            }
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "type": self.kind,
            "context_length": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "pricing": pricing,
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


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


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


def _schedules(rows, owner: str) -> dict[int, tuple[PriceEntry, ...]]:
    """Per owner (model or route id): its versions in order (all of them: an image job is settled at the cost
    version of its hold's moment, which may be older than the snapshot)."""
    by_owner: dict[int, list[PriceEntry]] = {}
    for row in rows:
        by_owner.setdefault(row[owner], []).append(
            PriceEntry(
                version=row["public_id"],
                effective_at=row["effective_at"],
                prices=Prices(
                    input_nusd=row["input_price_nusd"],
                    output_nusd=row["output_price_nusd"],
                    cached_nusd=row["cached_price_nusd"],
                ),
                image_prices=MappingProxyType(dict(row["image_prices"] or {})),
            )
        )
    return {key: tuple(entries) for key, entries in by_owner.items()}


_VERSION_FIELDS = (
    "public_id",
    "effective_at",
    "input_price_nusd",
    "cached_price_nusd",
    "output_price_nusd",
    "image_prices",
)


def load() -> Snapshot:
    """Read the whole catalog (five queries). Disabled models, and models without prices, are left out; disabled
    routes kept, marked."""
    from django.utils import timezone

    moment = timezone.now()
    configs: dict[int, ProviderConfig] = {}
    enabled_providers: set[int] = set()
    simulator = SIMULATOR_CONFIG
    for provider in Provider.objects.order_by("pk"):
        configs[provider.pk] = _provider_config(provider)
        if provider.enabled:
            enabled_providers.add(provider.pk)
            if provider.kind == ProviderKind.SIMULATOR and simulator is SIMULATOR_CONFIG:
                simulator = configs[provider.pk]
    costs = _schedules(
        RouteCostVersion.objects.order_by("route_id", "effective_at", "id").values("route_id", *_VERSION_FIELDS),
        "route_id",
    )
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
                costs=costs.get(route.pk, ()),
            )
        )
    schedules = _schedules(
        PriceVersion.objects.order_by("model_id", "effective_at", "id").values("model_id", *_VERSION_FIELDS),
        "model_id",
    )
    models = {}
    for m in CatalogModel.objects.filter(enabled=True):
        schedule = schedules.get(m.pk)
        if not schedule:
            continue  # never sold without a price
        current = in_force(schedule, moment)
        models[m.public_id] = ModelEntry(
            id=m.public_id,
            kind=m.kind,
            owned_by=m.owned_by,
            created=int(m.created_at.timestamp()),
            prices=current.prices,
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            supports_tools=m.supports_tools,
            supports_vision=m.supports_vision,
            supports_json=m.supports_json,
            routes=tuple(routes.get(m.pk, ())),
            image_prices=current.image_prices if m.kind == ModelKind.IMAGE else {},
            supports_reasoning=m.supports_reasoning,
            supports_multimodal_input=m.supports_multimodal_input,
            image_input_tokens=m.image_input_tokens,
            price_version=current.version,
            price_effective_at=current.effective_at,
            schedule=schedule,
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


for _model in (Provider, CatalogModel, Route, PriceVersion, RouteCostVersion):
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
    rank: dict[str, int] = {RoutePriority.PRIMARY: 0, RoutePriority.BACKUP: 1}
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
    "PriceEntry",
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
