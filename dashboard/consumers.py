"""The live-update websocket: /ws/team/<team_public_id>/, for signed-in members of that team only."""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.models import Membership
from accounts.permissions import Action, can
from dashboard import live
from dashboard.live import group_name


@database_sync_to_async
def _role(user, team_public_id: str) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, team__public_id=team_public_id).values_list("role", flat=True).first()


class TeamConsumer(AsyncJsonWebsocketConsumer):
    """Joins the team's group; anyone who is not a member is refused before the handshake completes."""

    group: str | None = None

    async def connect(self) -> None:
        team_public_id = self.scope["url_route"]["kwargs"]["team_public_id"]
        role = await _role(self.scope.get("user"), team_public_id)
        if role is None:
            await self.close(code=4403)
            return
        self.sees_balance = can(role, Action.BILLING_VIEW)
        self.group = group_name(team_public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await live.mark_open(team_public_id)
        self.presence = asyncio.ensure_future(self._stay_present(team_public_id))

    async def _stay_present(self, team_public_id: str) -> None:
        while True:
            await asyncio.sleep(live.PRESENCE_REFRESH)
            await live.mark_open(team_public_id)

    async def disconnect(self, code) -> None:
        presence = getattr(self, "presence", None)
        if presence is not None:
            presence.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def team_update(self, event: dict) -> None:
        payload = {"type": "update"}
        for part in ("receipt", "image"):
            if part in event:
                payload[part] = event[part]
        if self.sees_balance:  # the balance is billing data: not for developers
            for part in ("balance", "ledger"):
                if part in event:
                    payload[part] = event[part]
        if len(payload) > 1:
            await self.send_json(payload)
