"""Billing's part of the management API (DRF, mounted under /api/v1/ in config/urls.py): redeeming a credit code.

Same envelope and actors as accounts.rest: a signed-in member (their role), or an API key with `keys:write`
acting with its creator's role. Another team's id answers 404, like one that does not exist.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from accounts.access import signed_in, team_for_user
from accounts.keys import KeyActor
from accounts.rest import error_response, exception_handler
from accounts.rest_auth import ApiKeyPrincipal
from billing import credit_codes, money
from config.net import client_ip_from_request


class RedeemSerializer(serializers.Serializer):
    code = serializers.CharField(
        max_length=64, help_text="The code, e.g. TG-7K2M-9QXD-4HVA (case and dashes forgiven)."
    )


class RedemptionSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The ledger entry that credited the team (txn_…).")
    code = serializers.CharField(help_text="The code, masked.")
    amount_nusd = serializers.IntegerField()
    amount_usd = serializers.CharField(help_text="Exact decimal dollars.")
    balance_nusd = serializers.IntegerField(help_text="The team's balance after the credit.")
    balance_usd = serializers.CharField()
    created_at = serializers.DateTimeField()


class RedeemCreditCodeView(GenericAPIView):
    serializer_class = RedeemSerializer

    def get_exception_handler(self):
        return exception_handler

    def _team_and_actor(self, team_public_id: str):
        user, ip = self.request.user, client_ip_from_request(self.request)
        if isinstance(user, ApiKeyPrincipal):
            if user.ctx.team_public_id != team_public_id:
                raise Http404("No such team.")
            actor = KeyActor.for_key(user.ctx, ip=ip)
            return actor.team, actor, ip
        person = signed_in(user)
        return team_for_user(person, team_public_id).team, person, ip

    @extend_schema(
        summary="Redeem a credit code for the team",
        request=RedeemSerializer,
        responses={201: RedemptionSerializer},
        description="A wrong, expired or used-up code answers 400 `invalid_code` (one answer for all of them); "
        "a code this team already redeemed, 409 `already_redeemed`; too many attempts, 429 with Retry-After.",
    )
    def post(self, request, team_public_id: str):
        team, actor, ip = self._team_and_actor(team_public_id)
        data = RedeemSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            redemption = credit_codes.redeem(team, data.validated_data["code"], actor=actor, ip=ip)
        except credit_codes.CreditCodeError as exc:
            response = error_response(request, exc.status, exc.code, exc.message, param=exc.field)
            if exc.retry_after:
                response["Retry-After"] = str(exc.retry_after)
            return response
        entry = redemption.ledger_entry
        body = {
            "id": entry.public_id,
            "code": redemption.code.masked,
            "amount_nusd": entry.amount_nusd,
            "amount_usd": money.exact(entry.amount_nusd),
            "balance_nusd": entry.balance_after_nusd,
            "balance_usd": money.exact(entry.balance_after_nusd),
            "created_at": serializers.DateTimeField().to_representation(redemption.created_at),
        }
        return Response(body, status=status.HTTP_201_CREATED)
