"""Fault tests: real server processes (`python -m config.serve`, tests/processes.py) against the test database,
a real PostgreSQL and Redis, and faults a production deployment meets — terminated database connections, a
stopped database, an unreachable Redis, a process killed mid-stream, a misbehaving upstream.

Every loop here is bounded by a deadline; every process a test starts is ended by its PID. The figures in
README.md's Reliability section are what these tests measure (they print them with `-s`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from django.core.management import call_command
from multidict import CIMultiDict

from accounts.keys import mint_key
from accounts.models import Team, User
from accounts.services import create_team
from billing.models import Hold, HoldStatus, LedgerEntry, Wallet
from billing.money import NUSD_PER_USD
from billing.reconcile import find_discrepancies
from billing.services import grant_credit

USD = NUSD_PER_USD
MSGS = [{"role": "user", "content": "hello"}]
CHAT = {"model": "demo-chat", "messages": MSGS, "max_tokens": 8}


@dataclass
class Outcome:
    """One request a load loop sent: when (monotonic, relative to the loop's start), what came back."""

    path: str
    started: float
    ended: float
    status: int  # 0: no HTTP response (connection error or client timeout)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)  # any case: a CIMultiDict

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


@dataclass
class Funded:
    team: Team
    owner: User
    live_key: str
    test_key: str

    def wallet(self) -> Wallet:
        return Wallet.objects.get(team=self.team)


def funded_team(*, slug: str = "acme", plan: str = "enterprise", credit_usd: int = 10, **key_limits) -> Funded:
    """A team with credit, a live key and a test key (committed: the server processes read them)."""
    call_command("seed_catalog", quiet=True)
    owner = User.objects.create_user(email=f"owner@{slug}.test", password="correct-horse-battery")
    team = create_team(name=slug.title(), slug=slug, owner=owner, plan=plan)
    if credit_usd:
        grant_credit(team, amount_nusd=credit_usd * USD, reason="fault test credit")
    live = mint_key(team=team, name="live", created_by=owner, **key_limits).plaintext
    test = mint_key(team=team, name="test", mode="test", created_by=owner).plaintext
    return Funded(team=team, owner=owner, live_key=live, test_key=test)


@pytest.fixture
def acme(transactional_db) -> Funded:
    return funded_team()


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(
    session: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    *,
    key: str | None = None,
    json: Any = None,
    t0: float = 0.0,
    timeout: float = 10.0,
    extra_headers: dict[str, str] | None = None,
) -> Outcome:
    started = time.monotonic() - t0
    try:
        async with session.request(
            method,
            f"{base}{path}",
            json=json,
            headers={**(headers(key) if key else {}), **(extra_headers or {})},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            raw = await response.read()
            try:
                body: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw
            return Outcome(path, started, time.monotonic() - t0, response.status, body, CIMultiDict(response.headers))
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Outcome(path, started, time.monotonic() - t0, 0, repr(exc))


Request = tuple[str, str, Any]  # method, path, JSON body


async def load(
    base: str,
    key: str,
    requests: list[Request],
    *,
    seconds: float,
    concurrency: int,
    fault: Callable[[], Any] | None = None,
    fault_at: float = 0.0,
    t0: float | None = None,
) -> tuple[list[Outcome], float, float]:
    """`concurrency` clients cycling through `requests` for `seconds`; `fault` (a blocking callable) runs in a
    thread `fault_at` seconds in. Returns the outcomes and when the fault began and ended, in seconds from `t0`
    (default: now)."""
    t0 = time.monotonic() if t0 is None else t0
    outcomes: list[Outcome] = []
    fault_window = [float("inf"), float("inf")]

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        i = n
        while time.monotonic() - t0 < seconds:
            method, path, body = requests[i % len(requests)]
            outcomes.append(await send(session, base, method, path, key=key, json=body, t0=t0))
            i += 1

    async def inject() -> None:
        if fault is None:
            return
        await asyncio.sleep(fault_at)
        fault_window[0] = time.monotonic() - t0
        await asyncio.to_thread(fault)
        fault_window[1] = time.monotonic() - t0

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(inject(), *(client(n, session) for n in range(concurrency)))
    return outcomes, fault_window[0], fault_window[1]


def run(coro):
    return asyncio.run(coro)


def get(base: str, path: str, key: str | None = None, **kw) -> Outcome:
    async def one() -> Outcome:
        async with aiohttp.ClientSession() as session:
            return await send(session, base, "GET", path, key=key, **kw)

    return run(one())


def post(base: str, path: str, body: Any, key: str | None = None, **kw) -> Outcome:
    async def one() -> Outcome:
        async with aiohttp.ClientSession() as session:
            return await send(session, base, "POST", path, key=key, json=body, **kw)

    return run(one())


def assert_openai_envelope(outcome: Outcome) -> None:
    """OpenAI's error envelope with the request id, never an HTML page or a traceback."""
    body = outcome.body
    assert isinstance(body, dict), (outcome.status, outcome.path, body)
    error = body.get("error")
    assert isinstance(error, dict) and error.get("message") and error.get("type"), body
    assert body.get("request_id", "").startswith("req_"), body
    assert "Traceback" not in str(body)


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `predicate()` held (polled), or None if it did not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def open_holds(team: Team | None = None) -> int:
    holds = Hold.objects.filter(status=HoldStatus.OPEN)
    return (holds.filter(wallet__team=team) if team else holds).count()


def assert_books_exact(team: Team) -> None:
    """wallet = ledger, held = open holds, nothing below zero; `manage.py check_ledger` agrees."""
    assert find_discrepancies() == []
    call_command("check_ledger")
    wallet = Wallet.objects.get(team=team)
    ledger = sum(LedgerEntry.objects.filter(wallet=wallet).values_list("amount_nusd", flat=True))
    assert wallet.balance_nusd == ledger and wallet.balance_nusd >= 0


def report(name: str, **figures: Any) -> None:
    """The figures the README's Reliability table quotes (shown with pytest -s)."""
    print(f"\n[reliability] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
