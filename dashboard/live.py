"""Pushes settlements, credits and image job changes to the open dashboard pages of the team, over the channel
layer.

Runs after every settlement commits (on the hot path, possibly on the gateway's event loop): one
group_send, no queries beyond the team's public id, which is cached per process (it never changes; on
the event loop a miss is looked up in a thread); nothing at all while no page of the team is open. Only the
public APIs of channels, Django and asgiref are used.
"""

from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import SynchronousOnlyOperation

from billing.money import usd
from billing.signals import receipt_settled, wallet_credited
from config import background, redis_client
from config.db import run_db
from gateway.signals import image_job_changed

log = logging.getLogger(__name__)

_public_ids: dict[int, str] = {}
_MAX_CACHED = 10_000


def group_name(team_public_id: str) -> str:
    return f"team.{team_public_id}"


def team_public_id(team_id: int, receipt=None, wallet=None) -> str:
    cached = _public_ids.get(team_id)
    if cached:
        return cached
    for row in (receipt, wallet):  # use the team object when the caller already loaded it
        team = row._state.fields_cache.get("team") if row is not None else None
        if team is not None:
            cached = team.public_id
            break
    else:
        from accounts.models import Team

        cached = Team.objects.values_list("public_id", flat=True).get(pk=team_id)
    if len(_public_ids) >= _MAX_CACHED:
        _public_ids.clear()
    _public_ids[team_id] = cached
    return cached


def balance_payload(wallet) -> dict:
    return {
        "balance_nusd": wallet.balance_nusd,
        "held_nusd": wallet.held_nusd,
        "available_nusd": wallet.available_nusd,
        "balance": usd(wallet.balance_nusd),
        "held": usd(wallet.held_nusd),
        "available": usd(wallet.available_nusd),
    }


def receipt_payload(receipt, team_public: str) -> dict:
    return {
        "id": receipt.public_id,
        "url": f"/t/{team_public}/receipts/{receipt.public_id}/",
        "created_at": receipt.created_at.isoformat(),
        "time": receipt.created_at.strftime("%b %-d, %H:%M:%S"),
        "key": receipt.key_label,
        "model": receipt.model_requested,
        "status": receipt.status,
        "is_test": receipt.is_test,
        "prompt_tokens": receipt.prompt_tokens,
        "cached_tokens": receipt.cached_tokens,
        "completion_tokens": receipt.completion_tokens,
        "tokens": receipt.prompt_tokens + receipt.cached_tokens + receipt.completion_tokens,
        "cost_nusd": receipt.total_cost_nusd,
        "cost": usd(receipt.total_cost_nusd),
    }


_pending: set[asyncio.Task] = set()  # strong references until each fire-and-forget send finishes

# Most settlements happen while nobody has a dashboard open. Skipping the send then saves two Redis round
# trips per request (group_send's ZREMRANGEBYSCORE + ZRANGE), ~10 % of a request's CPU. An open page marks its
# team present (the websocket consumer, every PRESENCE_REFRESH seconds while connected): a key in Redis, or in
# the in-process cache without Redis; a publisher reads that at most once per LISTENERS_TTL per team and process,
# off the request's path, on the event loop's own Redis connection (config/redis_client.py: no thread hop). A page
# that just connected may miss the updates of its first second (it rendered from the database moments before).
PRESENCE_TTL = 90
PRESENCE_REFRESH = 30
LISTENERS_TTL = 1.0
_listening: dict[str, tuple[bool, float]] = {}
# The server's event loop, once a page connected to this process: sends from plain threads (the in-process
# background worker) are handed to it, since the in-memory channel layer belongs to that loop.
_server_loop: asyncio.AbstractEventLoop | None = None


def presence_key(team_public: str) -> str:
    return f"tollgate:live:open:{team_public}"


async def mark_open(team_public: str) -> None:
    """Called by an open page's websocket consumer: updates for this team are worth sending."""
    global _server_loop
    _server_loop = asyncio.get_running_loop()
    if settings.REDIS_URL:
        await redis_client.client().execute("SET", presence_key(team_public), 1, "EX", PRESENCE_TTL)
    else:
        cache.set(presence_key(team_public), 1, timeout=PRESENCE_TTL)  # in-process: no I/O
    _listening[team_public] = (True, time.monotonic())


async def _present(team_public: str) -> bool:
    if settings.REDIS_URL:
        return bool(await redis_client.client().execute("EXISTS", presence_key(team_public)))
    return bool(cache.get(presence_key(team_public)))


def _known_silent(team_public: str) -> bool:
    """True only when this process learnt within LISTENERS_TTL that no page of the team is open: the update is
    then dropped before it is built or a task is made for it (most settlements; no I/O either way)."""
    hit = _listening.get(team_public)
    return hit is not None and not hit[0] and time.monotonic() - hit[1] < LISTENERS_TTL


async def _someone_listening(team_public: str) -> bool:
    hit = _listening.get(team_public)
    if hit is not None and time.monotonic() - hit[1] < LISTENERS_TTL:
        return hit[0]
    if len(_listening) >= _MAX_CACHED:
        _listening.clear()
    # Claim the probe first: settlements arriving while it runs reuse the last answer instead of each asking.
    _listening[team_public] = (hit[0] if hit else False, time.monotonic())
    present = await _present(team_public)
    _listening[team_public] = (present, time.monotonic())
    return present


async def _deliver(team_public: str, message: dict) -> None:
    try:
        layer = get_channel_layer()
        if layer is not None and await _someone_listening(team_public):
            await layer.group_send(group_name(team_public), message)
    except Exception as exc:  # noqa: BLE001 - a live update is best effort; the receipt is already written
        log.warning("live update to team %s dropped: %s", team_public, exc)


def _spawn(loop: asyncio.AbstractEventLoop, coro) -> None:
    task = loop.create_task(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def _send(team_public: str, build) -> None:
    """Fire and forget `build(team_public)` to the team's group. On the event loop (the gateway's settlement)
    it becomes a task; from a plain thread it goes to the server's loop when there is one, else (commands,
    tests, a worker thread under async code) it is sent before returning."""
    if _known_silent(team_public):
        return
    message = build(team_public)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        server = _server_loop or background.server_loop()
        if server is not None and server.is_running():
            asyncio.run_coroutine_threadsafe(_deliver(team_public, message), server)
        else:
            async_to_sync(_deliver)(team_public, message)
        return
    _spawn(loop, _deliver(team_public, message))


def _publish(team_id: int, build, receipt=None, wallet=None) -> None:
    try:
        try:
            team_public = team_public_id(team_id, receipt, wallet)
        except SynchronousOnlyOperation:  # on the event loop, and the team's public id is not cached yet
            _spawn(asyncio.get_running_loop(), _publish_later(team_id, build, receipt, wallet))
            return
        _send(team_public, build)
    except Exception:  # a live-update problem must never disturb the request that was just paid for
        log.exception("live update failed for team %s", team_id)


async def _publish_later(team_id: int, build, receipt, wallet) -> None:
    try:
        team_public = await run_db(team_public_id, team_id, receipt, wallet)
        _send(team_public, build)
    except Exception:
        log.exception("live update failed for team %s", team_id)


def on_receipt_settled(sender, receipt=None, wallet=None, **kwargs) -> None:
    def build(team_public: str) -> dict:
        message = {"type": "team.update", "receipt": receipt_payload(receipt, team_public)}
        if wallet is not None:
            message["balance"] = balance_payload(wallet)
        return message

    _publish(receipt.team_id, build, receipt, wallet)


def on_wallet_credited(sender, wallet=None, entry=None, **kwargs) -> None:
    def build(team_public: str) -> dict:
        message = {"type": "team.update", "balance": balance_payload(wallet)}
        if entry is not None:
            message["ledger"] = {"id": entry.public_id, "kind": entry.kind, "amount": usd(entry.amount_nusd)}
        return message

    _publish(wallet.team_id, build, None, wallet)


def image_payload(job, team_public: str) -> dict:
    return {
        "id": job.public_id,
        "url": f"/t/{team_public}/images/{job.public_id}/",
        "status": job.status,
        "terminal": job.terminal,
        "model": job.model,
        "is_test": job.is_test,
        "cost": usd(job.total_cost_nusd) if job.terminal else usd(job.hold_amount_nusd),
    }


def on_image_job_changed(sender, job=None, **kwargs) -> None:
    def build(team_public: str) -> dict:
        return {"type": "team.update", "image": image_payload(job, team_public)}

    _publish(job.team_id, build)


def connect() -> None:
    receipt_settled.connect(on_receipt_settled, dispatch_uid="dashboard.live.receipt_settled")
    wallet_credited.connect(on_wallet_credited, dispatch_uid="dashboard.live.wallet_credited")
    image_job_changed.connect(on_image_job_changed, dispatch_uid="dashboard.live.image_job_changed")
