"""create_team SLUG --owner EMAIL [...] --json — one team with its owner, wallet, credit and keys."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.keys import mint_key, validate_scopes
from accounts.models import DEFAULT_SCOPES, Plan, Team, User
from accounts.services import AccountsError, create_team
from billing.money import exact, usd
from billing.pricing import usd_to_nusd
from billing.services import grant_credit


class Command(BaseCommand):
    help = "Create a team with its owner, wallet, optional credit and API keys; print one JSON object."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="Owner's email (created if new).")
        parser.add_argument("--password", help="Password for a newly created owner.")
        parser.add_argument("--name", help="Team display name (default: the slug).")
        parser.add_argument("--plan", choices=Plan.values, default=Plan.STARTER)
        parser.add_argument("--credits", help="Starting credit in USD, e.g. 5 or 12.50.")
        parser.add_argument("--key", action="append", default=[], help="Mint a live key with this name.")
        parser.add_argument("--test-key", action="append", default=[], help="Mint a test key with this name.")
        parser.add_argument(
            "--scopes", help=f"Comma-separated scopes for the keys (default {','.join(DEFAULT_SCOPES)})."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object (always on).")

    def handle(self, *args, **opts):
        slug = opts["slug"]
        if Team.objects.filter(slug=slug).exists():
            raise CommandError(f"A team with slug '{slug}' already exists; nothing was changed.")
        credits_nusd = self._credits(opts["credits"])
        try:
            scopes = validate_scopes(opts["scopes"].split(",")) if opts["scopes"] else list(DEFAULT_SCOPES)
        except AccountsError as exc:
            raise CommandError(exc.message) from None

        try:
            with transaction.atomic():
                owner, _ = User.objects.get_or_create(email=opts["owner"].lower())
                if opts["password"]:
                    owner.set_password(opts["password"])
                    owner.save(update_fields=["password"])
                team = create_team(name=opts["name"] or slug, slug=slug, owner=owner, plan=opts["plan"])
                if credits_nusd:
                    grant_credit(team, amount_nusd=credits_nusd, reason="create_team --credits", memo="Starting credit")
                keys = []
                for mode, names in (("live", opts["key"]), ("test", opts["test_key"])):
                    for name in names:
                        minted = mint_key(team=team, name=name, mode=mode, scopes=scopes, actor_label="create_team")
                        keys.append({"name": name, "key": minted.plaintext, "mode": mode, "scopes": scopes})
        except AccountsError as exc:
            raise CommandError(exc.message) from None

        team.wallet.refresh_from_db()
        self.stdout.write(
            json.dumps(
                {
                    "team": {"id": team.public_id, "slug": team.slug, "name": team.name, "plan": team.plan},
                    "owner": owner.email,
                    "balance_usd": exact(team.wallet.balance_nusd),  # "10", never Decimal's "1E+1"
                    "balance_display": usd(team.wallet.balance_nusd),
                    "keys": keys,
                }
            )
        )

    @staticmethod
    def _credits(raw: str | None) -> int:
        if raw is None or raw == "":
            return 0
        try:
            amount = Decimal(raw)
        except InvalidOperation:
            raise CommandError(f"--credits must be a number of USD, got {raw!r}") from None
        if amount < 0 or amount > 1_000_000:
            raise CommandError("--credits must be between 0 and 1,000,000 USD.")
        try:
            return usd_to_nusd(amount)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
