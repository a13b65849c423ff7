"""Seed the benchmark: a provider on the harness's fake upstream with the models it understands
(fake, fake-c20-d5, fake-c20-d50), and an enterprise team with plenty of credit and one live key
whose RPM/TPM limits are set (so rate limiting runs) but never reached. Prints the key, nothing else."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402

from accounts.keys import mint_key  # noqa: E402
from accounts.models import User  # noqa: E402
from accounts.services import create_team  # noqa: E402
from billing.pricing import per_million_to_per_token_nusd as per_m  # noqa: E402
from billing.pricing import usd_to_nusd  # noqa: E402
from billing.services import grant_credit  # noqa: E402
from gateway import price_book  # noqa: E402
from gateway.models import CatalogModel, Provider, ProviderKind, Route  # noqa: E402

MODELS = ["fake", "fake-c20-d5", "fake-c20-d50"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--upstream", default="http://127.0.0.1:9100/v1")
    ap.add_argument("--credits-usd", default="1000000")
    a = ap.parse_args()
    with transaction.atomic():
        provider, _ = Provider.objects.update_or_create(
            slug="bench-upstream",
            defaults={
                "kind": ProviderKind.OPENAI,
                "name": "Benchmark fake upstream",
                "base_url": a.upstream,
                "timeout_seconds": 60,
                "enabled": True,
            },
        )
        for name in MODELS:
            model, new = CatalogModel.objects.update_or_create(
                public_id=name, defaults={"max_output_tokens": 4096, "enabled": True}
            )
            if new:
                price_book.add_price_version(model, price_book.Prices(per_m("0.50"), per_m("0.25"), per_m("1.50")))
            route, new = Route.objects.get_or_create(model=model, provider=provider, upstream_model=name)
            if new:  # margins are computed on every request, as in production
                price_book.add_cost_version(route, price_book.Prices(per_m("0.30"), per_m("0.15"), per_m("0.90")))
        owner, _ = User.objects.get_or_create(email="bench@tollgate.localhost")
        team = create_team(name="Benchmark", slug="bench", owner=owner, plan="enterprise")
        grant_credit(team, amount_nusd=usd_to_nusd(a.credits_usd), reason="benchmark")
        minted = mint_key(
            team=team, name="bench", rpm_limit=1_000_000_000, tpm_limit=2_000_000_000, actor_label="bench/seed.py"
        )
    print(minted.plaintext)


if __name__ == "__main__":
    main()
