"""Live updates: the websocket admits only the team's members; settlements reach them with one group_send."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.services import ensure_wallet
from dashboard import live
from dashboard.routing import websocket_urlpatterns
from tests.dashboard.conftest import make_receipt

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test runs on its own event loop; a layer instance (with channels_redis's per-loop receive
    state) left over from another test's loop makes receive() refuse to run."""
    channel_layers.backends.pop("default", None)
    yield
    channel_layers.backends.pop("default", None)


def communicator(user, team_public_id: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/team/{team_public_id}/")
    comm.scope["user"] = user
    return comm


async def test_a_member_receives_the_balance_and_the_new_receipt(owner, team):
    comm = communicator(owner, team.public_id)
    connected, _ = await comm.connect()
    assert connected
    wallet = await database_sync_to_async(ensure_wallet)(team)
    receipt = await database_sync_to_async(make_receipt)(team)
    await database_sync_to_async(live.on_receipt_settled)(None, receipt=receipt, wallet=wallet)
    message = await comm.receive_json_from(timeout=2)
    assert message["receipt"]["id"] == receipt.public_id
    assert message["receipt"]["cost_nusd"] == receipt.total_cost_nusd
    assert message["balance"]["balance_nusd"] == wallet.balance_nusd
    await comm.disconnect()


async def test_a_developer_gets_receipts_but_not_the_balance(developer, team):
    comm = communicator(developer, team.public_id)
    assert (await comm.connect())[0]
    wallet = await database_sync_to_async(ensure_wallet)(team)
    receipt = await database_sync_to_async(make_receipt)(team)
    await database_sync_to_async(live.on_receipt_settled)(None, receipt=receipt, wallet=wallet)
    message = await comm.receive_json_from(timeout=2)
    assert "receipt" in message and "balance" not in message
    await database_sync_to_async(live.on_wallet_credited)(None, wallet=wallet, entry=None)
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


async def test_a_member_of_another_team_is_refused(outsider, team):
    comm = communicator(outsider, team.public_id)
    connected, code = await comm.connect()
    assert not connected and code == 4403


async def test_an_anonymous_visitor_is_refused(team):
    from django.contrib.auth.models import AnonymousUser

    connected, _ = await communicator(AnonymousUser(), team.public_id).connect()
    assert not connected


async def test_another_teams_settlement_reaches_nobody_here(owner, team, other_team):
    comm = communicator(owner, team.public_id)
    assert (await comm.connect())[0]
    wallet = await database_sync_to_async(ensure_wallet)(other_team)
    receipt = await database_sync_to_async(make_receipt)(other_team)
    await database_sync_to_async(live.on_receipt_settled)(None, receipt=receipt, wallet=wallet)
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


def test_the_settlement_hook_makes_no_query_once_the_team_is_known(team, monkeypatch):
    sent = []

    async def group_send(group, message):
        sent.append((group, message))

    layer = get_channel_layer()
    monkeypatch.setattr(layer, "group_send", group_send)
    async_to_sync(live.mark_open)(team.public_id)  # a page of the team is open (in any process)
    live._listening.clear()
    wallet = ensure_wallet(team)
    first, second = make_receipt(team), make_receipt(team)
    live._public_ids.clear()
    live.on_receipt_settled(None, receipt=first, wallet=wallet)
    with CaptureQueriesContext(connection) as queries:
        live.on_receipt_settled(None, receipt=second, wallet=wallet)
    assert len(queries) == 0
    assert [g for g, _ in sent] == [f"team.{team.public_id}"] * 2
    assert sent[1][1]["receipt"]["id"] == second.public_id


def test_nothing_is_sent_while_no_page_of_the_team_is_open(team, monkeypatch):
    sent = []

    async def group_send(group, message):
        sent.append(group)

    monkeypatch.setattr(get_channel_layer(), "group_send", group_send)
    live._listening.clear()
    live.on_receipt_settled(None, receipt=make_receipt(team), wallet=ensure_wallet(team))
    assert sent == []


def test_a_broken_channel_layer_never_breaks_the_settlement(team, monkeypatch):
    async def boom(group, message):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(get_channel_layer(), "group_send", boom)
    live.on_receipt_settled(None, receipt=make_receipt(team), wallet=ensure_wallet(team))  # does not raise


def test_the_hook_is_connected_to_billings_signal(team, monkeypatch):
    from billing.signals import receipt_settled

    seen = []
    monkeypatch.setattr(live, "_send", lambda team_public, message: seen.append(team_public))
    receipt_settled.send(sender=None, receipt=make_receipt(team), wallet=ensure_wallet(team))
    assert seen == [team.public_id]


def _pending_job(team):
    from datetime import timedelta

    from django.utils import timezone

    from gateway.models import ImageJob

    now = timezone.now()
    return ImageJob.objects.create(
        public_id="img_01LIVEUPDATE",
        team=team,
        request_id="req_live",
        model="demo-image",
        prompt="a live fox",
        size="256x256",
        is_test=True,
        start_by=now + timedelta(minutes=10),
        hold_expires_at=now + timedelta(minutes=30),
    )


async def test_image_job_status_changes_reach_the_teams_pages(owner, team):
    from gateway import image_jobs

    comm = communicator(owner, team.public_id)
    assert (await comm.connect())[0]
    job = await database_sync_to_async(_pending_job)(team)
    # A first update, so this process knows the page listens (channels_redis: dashboard.live.LISTENERS_TTL).
    receipt = await database_sync_to_async(make_receipt)(team)
    await database_sync_to_async(live.on_receipt_settled)(None, receipt=receipt, wallet=None)
    assert (await comm.receive_json_from(timeout=2))["receipt"]["id"] == receipt.public_id
    await database_sync_to_async(image_jobs.cancel)(team.pk, job.public_id, actor=owner)
    message = await comm.receive_json_from(timeout=2)
    while "image" not in message:  # the cancel's zero receipt arrives as well
        message = await comm.receive_json_from(timeout=2)
    assert message["image"]["id"] == job.public_id
    assert message["image"]["status"] == "cancelled" and message["image"]["terminal"] is True
    assert message["image"]["url"] == f"/t/{team.public_id}/images/{job.public_id}/"
    await comm.disconnect()


def test_a_settlement_while_no_page_is_open_builds_no_update(team, monkeypatch):
    """Most settlements happen with no dashboard open: once this process knows that (LISTENERS_TTL), the hook
    neither builds the message nor hands anything to the event loop."""
    sent, built = [], []

    async def group_send(group, message):
        sent.append(group)

    monkeypatch.setattr(get_channel_layer(), "group_send", group_send)
    real_payload = live.receipt_payload
    monkeypatch.setattr(live, "receipt_payload", lambda *a: built.append(1) or real_payload(*a))
    live._listening.clear()
    wallet = ensure_wallet(team)
    live.on_receipt_settled(None, receipt=make_receipt(team), wallet=wallet)  # asks the cache: nobody
    built.clear()
    live.on_receipt_settled(None, receipt=make_receipt(team), wallet=wallet)
    assert built == [] and sent == []
    async_to_sync(live.mark_open)(team.public_id)  # a page opens in this process: updates flow again
    live.on_receipt_settled(None, receipt=make_receipt(team), wallet=wallet)
    assert built == [1] and sent == [f"team.{team.public_id}"]
