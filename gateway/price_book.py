"""The price book: what each model sells for (PriceVersion) and what each route's upstream charges the operator
(RouteCostVersion), as versions with an effective time.

A price never changes in place: a change is a new version, effective from a moment on; the version in force at
a moment is the latest one whose `effective_at` has come (ties: the one added last). Every receipt names the
sale version its hold was placed under and the serving route's cost version, so history stays readable and
margins exact.

Every server prices from its catalog snapshot (gateway.catalog), which carries the version in force and every
scheduled one and picks by the clock per request. A change to a model that already has a price must therefore
take effect at least `lead_seconds()` after it is made (the catalog's refresh interval plus a margin): by then
every server has it, so no server can price a request held after the effective time at the old price, or one
held before it at the new one. A model's or route's first version takes effect at once, and also prices any
earlier moment (a model has prices from the moment it exists; clocks set back, as tests do, still find them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.services import audit
from billing.money import exact
from gateway import conf, image_pricing
from gateway.models import CatalogModel, ModelKind, PriceVersion, Route, RouteCostVersion

PROPAGATION_MARGIN_SECONDS = 2.0  # beyond the catalog's refresh interval: a reload in flight, clocks
MAX_TOKEN_PRICE_NUSD = 10**9  # $1 per token ($1M per million): anything above is a typo


class PriceBookError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Prices:
    """One version's prices: nano-dollars per token, and per image by size[/quality] for image models."""

    input_nusd: int = 0
    cached_nusd: int = 0
    output_nusd: int = 0
    image_prices: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, version: PriceVersion | RouteCostVersion) -> Prices:
        return cls(
            version.input_price_nusd, version.cached_price_nusd, version.output_price_nusd, dict(version.image_prices)
        )

    def describe(self) -> dict:
        return {
            "input_per_million_usd": exact(self.input_nusd * 1_000_000),
            "cached_per_million_usd": exact(self.cached_nusd * 1_000_000),
            "output_per_million_usd": exact(self.output_nusd * 1_000_000),
            "images_usd": {key: exact(nusd) for key, nusd in self.image_prices.items()},
        }


def lead_seconds() -> float:
    return float(conf.get("GATEWAY_CATALOG_TTL_SECONDS")) + PROPAGATION_MARGIN_SECONDS


def validate(kind: str, prices: Prices, *, what: str = "Prices") -> Prices:
    """The prices, checked for a model of `kind` (image tables only, and always, for image models)."""
    for name in ("input_nusd", "cached_nusd", "output_nusd"):
        value = getattr(prices, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_PRICE_NUSD:
            raise PriceBookError(f"{what}: a token price is a whole number of nano-dollars from 0 to $1.", name)
    try:
        table = image_pricing.parse_table(dict(prices.image_prices or {}))
    except image_pricing.PriceTableError as exc:
        raise PriceBookError(f"Image prices: {exc.message}", "image_prices") from None
    if kind == ModelKind.IMAGE and not table:
        raise PriceBookError("Image prices: an image model needs a price for at least one size.", "image_prices")
    if kind != ModelKind.IMAGE and table:
        raise PriceBookError("Image prices: only image models have prices per image.", "image_prices")
    return Prices(prices.input_nusd, prices.cached_nusd, prices.output_nusd, table)


def check_effective(effective_at: datetime | None, *, first: bool) -> datetime:
    """When new prices would take effect (PriceBookError if too soon): forms check before anything is saved."""
    return _effective(effective_at, first=first, now=timezone.now())


def _effective(effective_at: datetime | None, *, first: bool, now: datetime) -> datetime:
    if first:  # nothing was priced before: the first prices apply at once
        return now
    earliest = now + timedelta(seconds=lead_seconds())
    if effective_at is None:
        return earliest
    if effective_at < earliest:
        raise PriceBookError(
            f"A price change takes effect at least {lead_seconds():g} seconds ahead (so that every server has it "
            "first); history is never rewritten.",
            "effective_at",
        )
    return effective_at


def in_force(versions, moment: datetime):
    """The version in force at `moment` among `versions` (a sequence sorted by effective_at, then id): the last
    one whose time has come, or the first one for a moment before it (None only without versions). Scans from
    the newest, where the answer almost always is."""
    for version in reversed(versions):
        if version.effective_at <= moment:
            return version
    return versions[0] if versions else None


def _append(versions, prices: Prices, *, effective_at, actor, note: str, action: str, target: str, **owner):
    """Append a version to one price history (`versions`: PriceVersion or RouteCostVersion, `owner`: its model or
    route), audited. The caller holds the owner's row lock, so one change of its prices happens at a time."""
    now = timezone.now()
    first = not versions.objects.filter(**owner).exists()
    person = actor if getattr(actor, "pk", None) else None
    version = versions.objects.create(
        **owner,
        effective_at=_effective(effective_at, first=first, now=now),
        input_price_nusd=prices.input_nusd,
        cached_price_nusd=prices.cached_nusd,
        output_price_nusd=prices.output_nusd,
        image_prices=dict(prices.image_prices),
        note=note[:300],
        created_by=person,
        created_at=now,
    )
    audit(
        action,
        team=None,
        actor=person,
        target=target,
        version=version.public_id,
        effective_at=version.effective_at.isoformat(),
        **prices.describe(),
    )
    return version


@transaction.atomic
def add_price_version(
    model: CatalogModel,
    prices: Prices,
    *,
    effective_at: datetime | None = None,
    actor=None,
    note: str = "",
) -> PriceVersion:
    """Append a sale price version to a model's price book: its first prices at once, a change at `effective_at`
    (default and earliest: `lead_seconds()` from now). Audited."""
    model = CatalogModel.objects.select_for_update().get(pk=model.pk)
    prices = validate(model.kind, prices, what=f"{model.public_id}'s prices")
    return _append(
        PriceVersion,
        prices,
        effective_at=effective_at,
        actor=actor,
        note=note,
        action="price.version_added",
        target=model.public_id,
        model=model,
    )


@transaction.atomic
def add_cost_version(
    route: Route,
    prices: Prices,
    *,
    effective_at: datetime | None = None,
    actor=None,
    note: str = "",
) -> RouteCostVersion:
    """Append an upstream cost version to a route (the upstream's own prices, what the operator pays)."""
    route = Route.objects.select_for_update().select_related("model", "provider").get(pk=route.pk)
    prices = validate(route.model.kind, prices, what=f"The cost of {route}")
    return _append(
        RouteCostVersion,
        prices,
        effective_at=effective_at,
        actor=actor,
        note=note,
        action="price.cost_version_added",
        target=f"{route.model.public_id} → {route.provider.slug}:{route.upstream_model}",
        route=route,
    )


def current_price(model: CatalogModel, *, now: datetime | None = None) -> PriceVersion | None:
    return in_force(list(model.price_versions.order_by("effective_at", "id")), now or timezone.now())


def latest_price(model: CatalogModel) -> PriceVersion | None:
    """The version added last (in force or scheduled): what a new change is compared with."""
    return model.price_versions.order_by("-effective_at", "-id").first()


def current_cost(route: Route, *, now: datetime | None = None) -> RouteCostVersion | None:
    return in_force(list(route.cost_versions.order_by("effective_at", "id")), now or timezone.now())


def latest_cost(route: Route) -> RouteCostVersion | None:
    return route.cost_versions.order_by("-effective_at", "-id").first()


TOKEN_PRICE_FIELDS = ("input_price_nusd", "cached_price_nusd", "output_price_nusd")


@transaction.atomic
def create_model(public_id: str, *, kind: str = ModelKind.CHAT, image_prices=None, **fields) -> CatalogModel:
    """A catalog model with its opening prices (seeds, commands, tests): `input_price_nusd`, `cached_price_nusd`,
    `output_price_nusd` and `image_prices` go to its first price version, effective at once."""
    prices = Prices(
        fields.pop("input_price_nusd", 0),
        fields.pop("cached_price_nusd", 0),
        fields.pop("output_price_nusd", 0),
        image_prices or {},
    )
    model = CatalogModel.objects.create(public_id=public_id, kind=kind, **fields)
    add_price_version(model, prices, note="opening prices")
    return model
