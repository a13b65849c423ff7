"""The model catalog as the dashboard shows it, read through gateway.catalog (owned by the gateway)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ModelRow:
    id: str
    kind: str
    input_nusd: int
    cached_nusd: int
    output_nusd: int
    context_window: int | None = None
    max_output_tokens: int | None = None
    supports_tools: bool = False
    supports_vision: bool = False
    supports_json: bool = False
    image_prices: tuple[tuple[str, int], ...] = ()  # image models: (size or size/quality, nusd per image)
    next: ModelRow | None = None  # the prices of the next scheduled version
    next_at: datetime | None = None


def price_rows() -> list[ModelRow]:
    """Every enabled model with the unit prices in force now (nusd per token); the templates show them per million."""
    from django.utils import timezone

    from gateway.catalog import list_models

    now = timezone.now()
    rows = []
    for entry in list_models():
        upcoming = next((v for v in entry.schedule if v.effective_at > now), None)
        following = _row(entry.at(upcoming.effective_at)) if upcoming else None
        rows.append(_row(entry.at(now), following, upcoming.effective_at if upcoming else None))
    return sorted(rows, key=lambda r: (r.kind, r.id))


def model_choices(extra=()) -> list[tuple[str, str]]:
    """Choices for 'allowed models': the catalog, plus any model a key already names."""
    ids = [r.id for r in price_rows()]
    ids += [m for m in extra if m not in ids]
    return [(m, m) for m in ids]


def _row(m, following: ModelRow | None = None, at: datetime | None = None) -> ModelRow:
    return ModelRow(
        id=m.id,
        kind=m.kind,
        input_nusd=m.prices.input_nusd,
        cached_nusd=m.prices.cached_nusd,
        output_nusd=m.prices.output_nusd,
        context_window=m.context_window,
        max_output_tokens=m.max_output_tokens,
        supports_tools=m.supports_tools,
        supports_vision=m.supports_vision,
        supports_json=m.supports_json,
        image_prices=tuple(m.image_prices.items()),
        next=following,
        next_at=at,
    )
