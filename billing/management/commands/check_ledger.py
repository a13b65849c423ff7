"""check_ledger — exit non-zero naming every wallet whose balance or held amount does not reconcile."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.reconcile import find_discrepancies, wallet_count


class Command(BaseCommand):
    help = (
        "Check that every wallet's balance equals the sum of its ledger entries and its held amount "
        "equals the sum of its open holds. Exits non-zero naming each wallet that does not."
    )

    def handle(self, *args, **options):
        problems = find_discrepancies()
        for problem in problems:
            self.stderr.write(problem.describe())
        if problems:
            raise CommandError(f"{len(problems)} wallet(s) do not reconcile.")
        self.stdout.write(f"ok: {wallet_count()} wallet(s) reconcile with their ledger and open holds.")
