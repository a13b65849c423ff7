"""Team preferences the gateway reads per request, cached per process for a few seconds."""

from __future__ import annotations

import time

from accounts.models import Team
from config.db import run_db
from gateway import conf

_stores: dict[int, tuple[bool, float]] = {}
_MAX_CACHED = 50_000


def _load_stores(team_id: int) -> bool:
    value = bool(Team.objects.filter(pk=team_id).values_list("store_completions", flat=True).first())
    if len(_stores) >= _MAX_CACHED:
        _stores.clear()
    _stores[team_id] = (value, time.monotonic())
    return value


async def stores_completions(team_id: int) -> bool:
    """The team's `store_completions` setting (keep every chat completion, as if each said `store: true`)."""
    hit = _stores.get(team_id)
    if hit is not None and time.monotonic() - hit[1] < conf.get("GATEWAY_TEAM_TTL_SECONDS"):
        return hit[0]
    return await run_db(_load_stores, team_id)


def clear() -> None:
    _stores.clear()
