"""Property tests (hypothesis): the cost maths is exact, and no sequence of holds, settlements, releases and
expiries ever loses or creates an amount."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Team
from billing import leases, pricing
from billing.errors import InsufficientBalance
from billing.models import Hold, HoldLease, HoldStatus, LedgerEntry, Receipt, Wallet
from billing.pricing import Prices, Usage, cost_of
from billing.reconcile import find_discrepancies
from billing.services import ensure_wallet, grant_credit, release_abandoned_holds
from tests.billing.calls import place_hold, release, settle
from tests.billing.conftest import META

tokens = st.integers(min_value=0, max_value=2_000_000)
unit_prices = st.integers(min_value=0, max_value=1_000_000)  # up to $1 000 per million tokens... per token in nusd
nusd = st.integers(min_value=-(10**18), max_value=10**18)
# No per-example deadline: CI machines are shared and a slow example is not a wrong one.
relaxed = settings(deadline=None)


@relaxed
@given(prompt=tokens, cached=tokens, completion=tokens, p_in=unit_prices, p_cached=unit_prices, p_out=unit_prices)
def test_cost_is_exactly_tokens_times_prices(prompt, cached, completion, p_in, p_cached, p_out):
    cost = cost_of(Usage(prompt, completion, cached), Prices(p_in, p_out, p_cached))
    exact = Fraction(prompt) * p_in + Fraction(cached) * p_cached + Fraction(completion) * p_out
    assert cost.total_nusd == exact == cost.input_nusd + cost.output_nusd
    assert cost.input_nusd >= 0 and cost.output_nusd >= 0


@relaxed
@given(
    a=st.tuples(tokens, tokens, tokens),
    b=st.tuples(tokens, tokens, tokens),
    p=st.tuples(unit_prices, unit_prices, unit_prices),
)
def test_splitting_a_request_neither_loses_nor_creates_money(a, b, p):
    prices = Prices(*p)
    whole = cost_of(Usage(a[0] + b[0], a[1] + b[1], a[2] + b[2]), prices)
    parts = cost_of(Usage(*a), prices).total_nusd + cost_of(Usage(*b), prices).total_nusd
    assert whole.total_nusd == parts


@relaxed
@given(prompt=tokens, max_out=tokens, used_prompt=tokens, used_out=tokens, p=st.tuples(unit_prices, unit_prices))
def test_the_hold_estimate_covers_any_usage_within_it(prompt, max_out, used_prompt, used_out, p):
    prices = Prices(input_nusd=p[0], output_nusd=p[1], cached_nusd=p[0] // 4)
    held = pricing.hold_amount(prompt_tokens_estimate=prompt, max_output_tokens=max_out, prices=prices)
    used_prompt, used_out = min(used_prompt, prompt), min(used_out, max_out)
    cached = used_prompt // 3  # some of the prompt was cached: cheaper, never dearer
    assert cost_of(Usage(used_prompt - cached, used_out, cached), prices).total_nusd <= held


@relaxed
@given(amount=nusd)
def test_nano_dollars_round_trip_through_usd_exactly(amount):
    usd = pricing.nusd_to_usd(amount)
    assert isinstance(usd, Decimal) and pricing.usd_to_nusd(usd) == amount
    assert pricing.usd_to_nusd(str(usd)) == amount


@relaxed
@given(price=st.integers(min_value=0, max_value=10**9))
def test_per_million_display_round_trips_to_the_stored_unit_price(price):
    assert pricing.per_million_to_per_token_nusd(pricing.per_million_usd(price)) == price


@relaxed
@given(amount=st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=12, allow_nan=False))
def test_usd_finer_than_a_nano_dollar_is_refused_not_rounded(amount):
    if amount * pricing.NUSD_PER_USD == (amount * pricing.NUSD_PER_USD).to_integral_value():
        assert Decimal(pricing.usd_to_nusd(amount)) == amount * pricing.NUSD_PER_USD
    else:
        with pytest.raises(ValueError):
            pricing.usd_to_nusd(amount)


# --- sequences against the database ------------------------------------------------------------

op = st.one_of(
    st.tuples(st.just("hold"), st.integers(min_value=0, max_value=3_000_000)),
    st.tuples(
        st.just("settle"),
        st.integers(min_value=0, max_value=50),
        st.integers(0, 400),
        st.integers(0, 400),
        st.integers(0, 400),
        st.sampled_from(["succeeded", "partial"]),
    ),
    st.tuples(st.just("release"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("expire"), st.integers(min_value=0, max_value=50)),
    # the request's process looked dead, its hold was swept, then its settlement arrived after all
    st.tuples(st.just("late"), st.integers(min_value=0, max_value=50), st.integers(0, 4_000), st.integers(0, 400)),
    st.tuples(st.just("credit"), st.integers(min_value=1, max_value=2_000_000)),
)


@pytest.mark.django_db
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    ops=st.lists(op, max_size=25),
    start=st.integers(min_value=0, max_value=5_000_000),
    price=st.tuples(st.integers(0, 5_000), st.integers(0, 20_000), st.integers(0, 1_000)),
)
def test_no_sequence_of_holds_and_settlements_loses_or_creates_money(ops, start, price):
    prices = Prices(*price)
    leases.forget()  # each example rolls its rows back, this process's lease row with them
    with transaction.atomic():
        team = Team.objects.create(name="Prop", slug="prop")
        wallet = ensure_wallet(team)
        credited = 0
        if start:
            grant_credit(team, amount_nusd=start)
            credited += start
        open_refs, refused = [], 0
        for step, action in enumerate(ops):
            kind = action[0]
            if kind == "hold":
                try:
                    open_refs.append(
                        place_hold(
                            team_id=team.id, key_id=None, request_id=f"req_{step}", amount_nusd=action[1], is_test=False
                        )
                    )
                except InsufficientBalance:
                    refused += 1
            elif kind == "credit":
                grant_credit(team, amount_nusd=action[1])
                credited += action[1]
            elif open_refs:
                ref = open_refs.pop(action[1] % len(open_refs))
                if kind == "settle":
                    _, _, p, c, cached, status = action
                    settle(ref, usage=Usage(p, c, cached), prices=prices, meta=META, status=status)
                elif kind == "release":
                    release(ref, meta=META, error_code="upstream_error")
                else:  # the request's process died: the sweeper frees its hold
                    dead = HoldLease.objects.create(owner="dead", expires_at=timezone.now() - timedelta(seconds=1))
                    Hold.objects.filter(pk=ref.hold_id).update(lease=dead)
                    assert release_abandoned_holds() == 1
                    if kind == "late":
                        _, _, p, c = action
                        settle(ref, usage=Usage(p, c), prices=prices, meta=META)

            wallet.refresh_from_db()
            receipts = Receipt.objects.filter(team=team).aggregate(s=Sum("total_cost_nusd"), u=Sum("uncollected_nusd"))
            charged = (receipts["s"] or 0) - (receipts["u"] or 0)
            ledger = LedgerEntry.objects.filter(wallet=wallet).aggregate(s=Sum("amount_nusd"))["s"] or 0
            open_held = (
                Hold.objects.filter(wallet=wallet, status=HoldStatus.OPEN).aggregate(s=Sum("amount_nusd"))["s"] or 0
            )
            assert wallet.balance_nusd == ledger == credited - charged  # nothing lost, nothing created
            assert wallet.held_nusd == open_held == sum(r.amount_nusd for r in open_refs)
            assert wallet.balance_nusd >= 0 and wallet.available_nusd >= 0  # a hold never lets us overdraw
        assert find_discrepancies() == []
        transaction.set_rollback(True)
    assert not Wallet.objects.filter(team__slug="prop").exists()
