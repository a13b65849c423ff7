"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    cache.set("readyz", "1", 5)
    if cache.get("readyz") != "1":
        raise RuntimeError("cache did not return what was written")


async def _check_layer_async() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("readyz.")
    await layer.send(channel, {"type": "readyz.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    if message.get("type") != "readyz.ping":
        raise RuntimeError("channel layer returned an unexpected message")


def _check_channel_layer() -> None:
    async_to_sync(_check_layer_async)()


CHECKS = {"database": _check_database, "cache": _check_cache, "channel_layer": _check_channel_layer}


def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    down: list[str] = []
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            results[name] = f"down: {type(exc).__name__}"
            down.append(name)
    status = 503 if down else 200
    body: dict[str, object] = {"status": "unavailable" if down else "ok", "checks": results}
    if down:
        body["down"] = down
    return JsonResponse(body, status=status)
