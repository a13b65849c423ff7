"""N processes proven together (issue 16): what deploy/ runs, on a fresh PostgreSQL database and Redis db.

    bash deploy/prove.sh [--quick] [--redis-db N] [--pg postgres://postgres@127.0.0.1:5432] [--keep]

It creates the database `tollgate_prove_<pid>`, migrates and seeds it, and starts, as deploy/systemd does: 3 web
processes (`python -m config.serve --port P --workers 1`) behind Debian's nginx (a config generated in a temporary
directory around deploy/nginx/snippets/ and the upstream block of deploy/nginx/tollgate.conf, on a free port), a
Celery worker and beat, with one PROMETHEUS_MULTIPROC_DIR, METRICS_TOKEN and every secret read from a file. Then it
asserts, and measures:

  rate limit   a key's RPM limit holds across all processes: N allowed in the window, the rest 429 + Retry-After
  revocation   a key revoked through one process is refused by every process within 1 s
  wallet race  200 concurrent requests on a wallet that affords exactly 20: 20 served, 180 answered 402, books exact
  websocket    the dashboard's live updates through nginx: a receipt written by any process reaches the page
  metrics      /metrics of one process (multiprocess mode) sums every process: requests, spend, 402s, 429s = the
               receipts, ledger and answers
  kill -9      one process killed under streaming load: the others keep serving, errors only on the killed
               process's open requests, its holds released within HOLD_LEASE_SECONDS + HOLD_SWEEP_SECONDS
               (short for the prove), check_ledger clean
  connections  the PostgreSQL connections each process holds stay bounded (sampled throughout)

and prints a table of figures. Exit status 0 only if every assertion held. Whatever happens it stops what it
started (by process group, started by it), drops the database, flushes its Redis db and removes its directory.
`--quick` (CI) uses smaller numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
NGINX_SITE = ROOT / "deploy" / "nginx" / "tollgate.conf"
NGINX_SNIPPETS = ROOT / "deploy" / "nginx" / "snippets"
PYTHON = sys.executable
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    rpm_limit: int  # the key's requests per minute
    rpm_sent: int  # requests sent in one window, across the processes
    race_requests: int
    race_affords: int
    load_clients: int  # concurrent streaming clients during the kill
    load_seconds: float
    kill_after: float  # seconds into the load
    reads: int  # Django-view requests (the ninja reads) at 24 at a time


FULL = Sizes(
    rpm_limit=60,
    rpm_sent=120,
    race_requests=200,
    race_affords=20,
    load_clients=24,
    load_seconds=16,
    kill_after=5,
    reads=600,
)
QUICK = Sizes(
    rpm_limit=20,
    rpm_sent=40,
    race_requests=200,
    race_affords=20,
    load_clients=12,
    load_seconds=7,
    kill_after=2.5,
    reads=240,
)

WEB_PROCESSES = 3
WORKER_CONCURRENCY = 2
# Short leases, so a killed process's holds are released within seconds (production: 45 s + 30 s).
HOLD_LEASE_SECONDS = 6
HOLD_SWEEP_SECONDS = 2
TOKENS_PER_SECOND = 200  # the simulator's pace: a 100-token stream lasts half a second
DB_ASYNC_POOL_SIZE = 8
THREADS = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor: a web process's ORM threads (config/db.py)
READ_CONCURRENCY = 24
MODEL = "demo-chat-mini"
PROMPT = [{"role": "user", "content": "Tell me a long story about toll roads"}]
START_SECONDS = 120  # bounded waits
PASSWORD = "prove-" + secrets.token_hex(8)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- figures -----------------------------------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def check(self, name: str, ok: bool, figure: str, promise: str = "") -> bool:
        self.rows.append((name, figure, promise, bool(ok)))
        print(f"    {'ok  ' if ok else 'FAIL'} {name}: {figure}" + (f"  [{promise}]" if promise else ""), flush=True)
        return bool(ok)

    @property
    def failures(self) -> list[tuple[str, str, str, bool]]:
        return [row for row in self.rows if not row[3]]

    def table(self) -> str:
        lines = ["| check | figure | promise | |", "| --- | --- | --- | --- |"]
        for name, figure, promise, ok in self.rows:
            lines.append(f"| {name} | {figure} | {promise} | {'ok' if ok else 'FAILED'} |")
        return "\n".join(lines)


# --- processes ---------------------------------------------------------------------------------------------------


class Children:
    """What the prove started, each in a process group of its own, so it can end them (and their children) by
    that group's id, never by name."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        finally:
            out.close()
        self.procs[name] = proc
        return proc

    def signal_group(self, name: str, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.procs[name].pid, sig)

    def stop_all(self, grace: float = 20.0) -> None:
        """SIGTERM (nginx: SIGQUIT), as systemd stops them; what is left after `grace` seconds gets SIGKILL."""
        started = time.monotonic()
        for name in self.procs:
            self.signal_group(name, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        deadline = started + grace
        took = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                took[name] = time.monotonic() - started
        if self.procs:
            log("stopped: " + ", ".join(f"{n} {took[n]:.1f} s" if n in took else f"{n} KILLED" for n in self.procs))
        for name in self.procs:  # whatever is left, and any children a process left behind
            self.signal_group(name, signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the prove itself is killed (Linux), so nothing outlives it even then.
    Children are started before the prove starts any thread."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the deployment under test -----------------------------------------------------------------------------------


@dataclass
class Deployment:
    pg: str  # postgres://user@host:port, without a database
    db: str
    redis_db: int
    dir: Path
    web_ports: list[int]
    nginx_port: int
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    secret_files: dict[str, str] = field(default_factory=dict)  # NAME_FILE → path, from write_secrets()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:6379/{self.redis_db}"

    @property
    def nginx_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def web_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.web_ports]

    def database_url(self, role: str) -> str:
        return f"{self.pg}/{self.db}?application_name=tollgate-{role}"

    def write_secrets(self) -> dict[str, str]:
        """Every secret as a file (NAME_FILE), as deploy/tollgate.env.example has them."""
        folder = self.dir / "secrets"
        folder.mkdir(mode=0o700)
        files = {}
        for name, value in (
            ("SECRET_KEY", secrets.token_urlsafe(50)),
            ("API_KEY_HASH_SECRET", secrets.token_urlsafe(50)),
            ("FIELD_ENCRYPTION_KEY", secrets.token_urlsafe(50)),
            ("METRICS_TOKEN", self.metrics_token),
        ):
            path = folder / name.lower()
            path.write_text(value + "\n")
            path.chmod(0o600)
            files[f"{name}_FILE"] = str(path)
        return files

    def env(self, role: str, *, metrics: bool = True) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(self.secret_files)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            TOLLGATE_TESTING="0",
            PYTHONUNBUFFERED="1",
            DATABASE_URL=self.database_url(role),
            REDIS_URL=self.redis_url,
            TOLLGATE_VAR_DIR=str(self.dir / "var"),
            STATIC_ROOT=str(self.dir / "var" / "static"),
            DEBUG="0",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            # nginx sends Host without its port ($host): its origin is trusted explicitly (tollgate-headers.conf)
            CSRF_TRUSTED_ORIGINS=self.nginx_url,
            PUBLIC_BASE_URL=self.nginx_url,
            TRUSTED_PROXIES="127.0.0.1",
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(free_port()),  # nothing here sends mail
            LOG_FORMAT="json",
            LOG_LEVEL="WARNING",
            SHUTDOWN_GRACE_SECONDS="5",
            HOLD_LEASE_SECONDS=str(HOLD_LEASE_SECONDS),
            HOLD_SWEEP_SECONDS=str(HOLD_SWEEP_SECONDS),
            SIMULATOR_TOKENS_PER_SECOND=str(TOKENS_PER_SECOND),
            DB_ASYNC_POOL_SIZE=str(DB_ASYNC_POOL_SIZE),
        )
        if metrics:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.dir / "metrics")
        return env


def nginx_config(dep: Deployment) -> Path:
    """deploy/nginx/tollgate.conf's upstream block (its balancing and failure settings, these processes' ports)
    and its map, and a plain-HTTP server on a loopback port whose locations are deploy/nginx/snippets/ as shipped.
    It also names the process that answered (X-Prove-Upstream), which the kill -9 check needs."""
    site = NGINX_SITE.read_text()
    upstream = re.search(r"^upstream tollgate \{.*?^\}", site, re.S | re.M)
    mapping = re.search(r"^map \$http_upgrade .*?$", site, re.M)
    if upstream is None or mapping is None:
        raise RuntimeError(f"{NGINX_SITE}: no 'upstream tollgate' block or upgrade map")
    servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+(.*);", upstream.group(0), re.M)
    if not servers:
        raise RuntimeError(f"{NGINX_SITE}: the upstream block names no server")
    lines = [line for line in upstream.group(0).splitlines() if not re.match(r"\s*server ", line)]
    ours = [f"    server 127.0.0.1:{port}{servers[0]};" for port in dep.web_ports]
    block = "\n".join([lines[0], *ours, *lines[1:]])
    root = dep.dir / "nginx"
    shutil.copytree(NGINX_SNIPPETS, root / "snippets")
    temp = root / "temp"
    for part in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / part).mkdir(parents=True)
        (temp / part).chmod(0o777)  # nginx's workers drop root
    for path in (dep.dir, root, temp):
        path.chmod(0o755)
    conf = root / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format prove '$remote_addr "$request" $status $body_bytes_sent $request_time "$upstream_addr"';
    access_log {root}/access.log prove;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{block}
{mapping.group(0)}
    server {{
        listen 127.0.0.1:{dep.nginx_port};
        server_name 127.0.0.1;
        add_header X-Prove-Upstream $upstream_addr always;
        include snippets/tollgate-proxy.conf;
    }}
}}
""")
    return conf


# --- the database, from this process --------------------------------------------------------------------------


def db_call(fn: Callable[[], T]) -> T:
    """ORM work from a worker thread; its connection is closed after (threads come and go)."""
    from django.db import connections

    try:
        return fn()
    finally:
        connections.close_all()


async def adb(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(db_call, fn)


@dataclass
class TeamKeys:
    team: Any
    owner_email: str
    keys: dict[str, str]  # name → plaintext
    key_ids: dict[str, str]  # name → public id


def make_team(slug: str, *, plan: str, credit_nusd: int = 0, keys: dict[str, dict[str, Any]]) -> TeamKeys:
    from accounts.keys import mint_key
    from accounts.models import User
    from accounts.services import create_team
    from billing.services import grant_credit

    email = f"owner@{slug}.prove.localhost"
    owner = User.objects.create_user(email=email, password=PASSWORD)
    team = create_team(name=f"Prove {slug}", slug=f"prove-{slug}", owner=owner, plan=plan)
    if credit_nusd:
        grant_credit(team, amount_nusd=credit_nusd, reason="prove")
    plain, ids = {}, {}
    for name, options in keys.items():
        minted = mint_key(team=team, name=name, created_by=owner, **options)
        plain[name], ids[name] = minted.plaintext, minted.key.public_id
    return TeamKeys(team, email, plain, ids)


def books(team) -> dict[str, int]:
    """The team's wallet, ledger and receipts, in nano-dollars."""
    from django.db.models import Count, Sum

    from billing.models import Hold, HoldStatus, LedgerEntry, LedgerKind, Receipt, Wallet

    wallet = Wallet.objects.get(team=team)
    receipts = Receipt.objects.filter(team=team).aggregate(
        n=Count("id"), total=Sum("total_cost_nusd"), uncollected=Sum("uncollected_nusd")
    )
    entries = LedgerEntry.objects.filter(wallet=wallet)
    return {
        "balance": wallet.balance_nusd,
        "held": wallet.held_nusd,
        "ledger": entries.aggregate(s=Sum("amount_nusd"))["s"] or 0,
        "credited": entries.exclude(kind=LedgerKind.CHARGE).aggregate(s=Sum("amount_nusd"))["s"] or 0,
        "debited": -(entries.filter(kind=LedgerKind.CHARGE).aggregate(s=Sum("amount_nusd"))["s"] or 0),
        "receipts": receipts["n"],
        "receipts_charged": (receipts["total"] or 0) - (receipts["uncollected"] or 0),
        "open_holds": Hold.objects.filter(wallet=wallet, status=HoldStatus.OPEN).count(),
    }


def check_ledger() -> tuple[bool, str]:
    """`manage.py check_ledger`, run the way an operator runs it."""
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out, err = StringIO(), StringIO()
    try:
        call_command("check_ledger", stdout=out, stderr=err)
    except CommandError as exc:
        return False, f"{exc} {err.getvalue().strip()}"
    return True, out.getvalue().strip()


async def settled(team, *, timeout: float = 30.0) -> dict[str, int]:
    """The team's books once no hold is open and the receipts stopped changing (settlement follows a plain reply)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        now = await adb(lambda: books(team))
        if now["open_holds"] == 0 and now == last:
            return now
        if time.monotonic() > deadline:
            return now
        last = now
        await asyncio.sleep(0.3)


# --- HTTP ----------------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    started: float
    ended: float
    error: str = ""
    complete: bool = True

    @property
    def upstream(self) -> str:
        """The process that answered, as nginx names it (the last one it tried)."""
        return self.headers.get("x-prove-upstream", "").split(",")[-1].strip()


class Client:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        # Statuses of the charging /v1 requests the processes answered, for the metrics check.
        self.answered: Counter[int] = Counter()
        self.count = True

    async def chat(
        self, base: str, key: str, *, max_tokens: int = 8, stream: bool = False, path: str = "/v1/chat/completions"
    ) -> Answer:
        body: dict[str, Any] = {"model": MODEL, "max_tokens": max_tokens, "messages": PROMPT}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        started = time.monotonic()
        headers: dict[str, str] = {}
        try:
            async with self.session.post(base + path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                headers = {k.lower(): v for k, v in r.headers.items()}
                if stream and r.status == 200:
                    seen = b""
                    async for line in r.content:
                        seen = line if line.strip() else seen
                    answer = Answer(r.status, headers, None, started, time.monotonic(), complete=b"[DONE]" in seen)
                else:
                    text = await r.text()
                    try:
                        parsed = json.loads(text, parse_float=Decimal)
                    except ValueError:
                        parsed = text
                    answer = Answer(r.status, headers, parsed, started, time.monotonic())
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Answer(0, headers, None, started, time.monotonic(), repr(exc), False)
        if self.count and not path.endswith("/estimate"):
            self.answered[answer.status] += 1
        return answer


async def wait_until_up(session: aiohttp.ClientSession, urls: list[str], children: Children) -> float:
    started = time.monotonic()
    deadline = started + START_SECONDS
    pending = set(urls)
    while pending:
        if dead := children.dead():
            raise RuntimeError(f"{', '.join(dead)} exited during start-up:\n" + children.tail(dead[0]))
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready within {START_SECONDS} s: {', '.join(sorted(pending))}")
        for url in list(pending):
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        pending.discard(url)
        await asyncio.sleep(0.2)
    return time.monotonic() - started


# --- PostgreSQL connections, sampled -------------------------------------------------------------------------


class ConnectionSampler(threading.Thread):
    def __init__(self, dsn: str, db: str) -> None:
        super().__init__(name="prove-pg-sampler", daemon=True)
        self.dsn, self.db = dsn, db
        self.peak: Counter[str] = Counter()
        self.latest: dict[str, int] = {}
        self.peak_total = 0
        self.stop_event = threading.Event()
        self.error = ""

    def run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name="prove-sampler") as conn:
                while not self.stop_event.wait(0.25):
                    rows = conn.execute(
                        "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s "
                        "AND application_name <> 'prove-sampler' GROUP BY 1",
                        [self.db],
                    ).fetchall()
                    latest = {re.sub(r"^tollgate-", "", name or "?"): count for name, count in rows}
                    for name, count in latest.items():
                        self.peak[name] = max(self.peak[name], count)
                    self.latest = latest
                    self.peak_total = max(self.peak_total, sum(latest.values()))
        except Exception as exc:  # noqa: BLE001 - reported as a failed figure
            self.error = repr(exc)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


# --- the checks ----------------------------------------------------------------------------------------------------


async def prove_rate_limit(dep: Deployment, client: Client, report: Report, sizes: Sizes) -> None:
    from accounts.models import Plan

    n = sizes.rpm_limit
    tk = await adb(lambda: make_team("rpm", plan=Plan.PRO, credit_nusd=10**9, keys={"rpm": {"rpm_limit": n}}))
    key = tk.keys["rpm"]
    left = 60 - time.time() % 60  # fixed one-minute windows (gateway/ratelimit.py): all inside one
    if left < 12:
        log(f"  waiting {left:.0f} s for the next rate-limit window")
        await asyncio.sleep(left + 0.3)
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> tuple[int, Answer]:
        async with gate:
            return i % len(dep.web_urls), await client.chat(dep.web_urls[i % len(dep.web_urls)], key, max_tokens=4)

    results = await asyncio.gather(*(one(i) for i in range(sizes.rpm_sent)))
    allowed = [p for p, a in results if a.status == 200]
    refused = [a for _p, a in results if a.status == 429]
    retry_after = [a.headers.get("retry-after", "") for a in refused]
    good_retry = all(v.isdigit() and 1 <= int(v) <= 60 for v in retry_after)
    split = " / ".join(f"{allowed.count(p)}" for p in range(len(dep.web_urls)))
    report.check(
        "RPM limit across 3 processes",
        len(allowed) == n and len(refused) == sizes.rpm_sent - n and good_retry,
        f"{sizes.rpm_sent} sent round-robin: {len(allowed)} allowed (per process {split}), {len(refused)} × 429 "
        f"(Retry-After {min(retry_after, default='-')}–{max(retry_after, default='-')} s)",
        f"exactly {n} allowed; the rest 429 with Retry-After",
    )


async def prove_revocation(dep: Deployment, client: Client, report: Report) -> None:
    from accounts.models import Plan

    tk = await adb(
        lambda: make_team(
            "revoke",
            plan=Plan.PRO,
            credit_nusd=10**9,
            keys={"victim": {}, "admin": {"scopes": ["inference", "keys:write"]}},
        )
    )
    key = tk.keys["victim"]
    for url in dep.web_urls:  # every process has the key in its cache
        warm = await client.chat(url, key, max_tokens=1)
        if warm.status != 200:
            report.check("revocation", False, f"warm-up answered {warm.status}: {warm.body}")
            return
    revoke_url = f"{dep.web_urls[0]}/api/v1/keys/{tk.key_ids['victim']}/revoke/"
    asked = time.monotonic()
    async with client.session.post(revoke_url, headers={"Authorization": f"Bearer {tk.keys['admin']}"}) as r:
        await r.read()
        if r.status != 200:
            report.check("revocation", False, f"revoke through process 1 answered {r.status}")
            return
    # Times count from the answer: the revocation committed just before it (the key is cached for at most 0.9 s
    # from when a process read it, which was before the commit).
    revoked = time.monotonic()
    answered = revoked - asked

    async def until_refused(url: str) -> tuple[float | None, float | None]:
        """(send time of the last request served, of the first refused) after the revocation, in seconds."""
        last_served = first_refused = None
        while time.monotonic() - revoked < 3:
            answer = await client.chat(url, key, max_tokens=1)
            offset = answer.started - revoked
            if answer.status == 200:
                last_served = offset
            elif answer.status == 401 and first_refused is None:
                first_refused = offset
            if first_refused is not None and offset - first_refused > 0.3:
                break  # and it stays refused (a later 200 would show as last_served > first_refused)
            await asyncio.sleep(0.02)
        return last_served, first_refused

    results = await asyncio.gather(*(until_refused(url) for url in dep.web_urls))
    refused = [r for _s, r in results]
    served_after = [s for s, _r in results if s is not None]
    ok = all(r is not None and r <= 1.0 for r in refused) and all(
        s < 1.0 and (r is None or s < r) for s, r in results if s is not None
    )
    per = ", ".join("never" if r is None else f"{r * 1000:.0f} ms" for r in refused)
    report.check(
        "revocation seen by every process",
        ok,
        f"revoked through process 1 (its answer took {answered * 1000:.0f} ms); from that answer, refused by "
        f"processes 1/2/3 after {per}; last request served "
        f"{max(served_after) * 1000:.0f} ms after"
        if served_after
        else f"refused after {per}; none served after",
        "≤ 1 s (key cache 0.9 s)",
    )


async def prove_wallet_race(dep: Deployment, client: Client, report: Report, sizes: Sizes) -> None:
    from accounts.models import Plan
    from billing.services import grant_credit

    tk = await adb(lambda: make_team("race", plan=Plan.ENTERPRISE, keys={"race": {}}))
    key = tk.keys["race"]
    estimate = await client.chat(dep.nginx_url, key, path="/v1/chat/completions/estimate")
    if estimate.status != 200:
        report.check("wallet race", False, f"estimate answered {estimate.status}: {estimate.body}")
        return
    hold = int(Decimal(estimate.body["hold_usd"]) * 10**9)
    credit = sizes.race_affords * hold
    await adb(lambda: grant_credit(tk.team, amount_nusd=credit, reason="prove: affords exactly 20"))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        racer = Client(session)
        started = time.monotonic()
        answers = await asyncio.gather(*(racer.chat(dep.nginx_url, key) for _ in range(sizes.race_requests)))
        took = time.monotonic() - started
    client.answered.update(racer.answered)
    statuses = Counter(a.status for a in answers)
    codes = Counter(a.body["error"]["code"] for a in answers if a.status == 402 and isinstance(a.body, dict))
    by_process = Counter(a.upstream for a in answers)
    after = await settled(tk.team)
    clean, said = await adb(check_ledger)
    said = "check_ledger clean" if clean else said
    served, refused = statuses.get(200, 0), statuses.get(402, 0)
    report.check(
        "wallet race: exactly the affordable requests served",
        served == sizes.race_affords
        and refused == sizes.race_requests - sizes.race_affords
        and set(codes) == {"insufficient_balance"},
        f"{sizes.race_requests} at once through nginx ({' / '.join(str(v) for v in sorted(by_process.values()))} "
        f"per process, {took:.2f} s): {served} × 200, {refused} × 402"
        + (f", other: {dict((s, c) for s, c in statuses.items() if s not in (200, 402))}" if len(statuses) > 2 else ""),
        f"wallet holds {sizes.race_affords} × the hold ({hold} nusd): exactly {sizes.race_affords} served",
    )
    report.check(
        "wallet race: books exact",
        clean
        and after["receipts"] == served
        and after["open_holds"] == 0
        and after["held"] == 0
        and after["balance"] == after["ledger"] == credit - after["receipts_charged"]
        and after["debited"] == after["receipts_charged"],
        f"{after['receipts']} receipts = {after['receipts_charged']} nusd = ledger debits {after['debited']}; "
        f"wallet {after['balance']} = ledger {after['ledger']} = credit − receipts; {said}",
        "wallet = ledger, receipts = debit, check_ledger clean",
    )


async def prove_websocket(dep: Deployment, client: Client, report: Report) -> None:
    from accounts.models import Plan

    tk = await adb(lambda: make_team("live", plan=Plan.PRO, credit_nusd=10**9, keys={"live": {}}))
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        async with browser.get(dep.nginx_url + "/login/") as r:
            page = await r.text()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if token is None:
            report.check("websocket through nginx", False, "no CSRF token on /login/")
            return
        form = {"csrfmiddlewaretoken": token.group(1), "login": tk.owner_email, "password": PASSWORD}
        headers = {"Origin": dep.nginx_url, "Referer": dep.nginx_url + "/login/"}
        async with browser.post(dep.nginx_url + "/login/", data=form, headers=headers, allow_redirects=False) as r:
            if r.status != 302:
                report.check("websocket through nginx", False, f"log-in through nginx answered {r.status}")
                return
        ws_url = f"ws://127.0.0.1:{dep.nginx_port}/ws/team/{tk.team.public_id}/"
        async with browser.ws_connect(ws_url, origin=dep.nginx_url, heartbeat=None) as ws:
            await ws.send_json({"type": "ping"})
            pong = await ws.receive_json(timeout=5)
            await asyncio.sleep(1.3)  # publishers look for an open page at most once a second (dashboard/live.py)
            sent: dict[str, float] = {}
            for url in dep.web_urls:  # one receipt written by each process
                answer = await client.chat(url, tk.keys["live"])
                if answer.status == 200:
                    sent[answer.body["usage"]["receipt_id"]] = answer.ended
            latency: dict[str, float] = {}
            deadline = time.monotonic() + 10
            while len(latency) < len(sent) and time.monotonic() < deadline:
                with contextlib.suppress(asyncio.TimeoutError):
                    message = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
                    receipt = (message.get("receipt") or {}).get("id")
                    if receipt in sent and receipt not in latency:
                        latency[receipt] = time.monotonic() - sent[receipt]
    report.check(
        "websocket (dashboard live updates) through nginx",
        pong == {"type": "pong"} and len(sent) == len(dep.web_urls) and len(latency) == len(sent),
        f"signed in through nginx; ping → pong; {len(latency)} of {len(sent)} receipts (one written by each "
        f"process) arrived on one socket, in ≤ {max(latency.values(), default=0) * 1000:.0f} ms",
        "a receipt from any process reaches an open page",
    )


async def prove_django_views(
    dep: Deployment, client: Client, report: Report, sizes: Sizes, sampler: ConnectionSampler
) -> None:
    """Django's own views (the ninja /v1 reads) under concurrency: under ASGI each runs on a thread of its own, whose
    database connection must close with the request (config/db.py); the connection sampler watches."""
    from accounts.models import Plan

    tk = await adb(lambda: make_team("reads", plan=Plan.ENTERPRISE, credit_nusd=10**9, keys={"reads": {}}))
    headers = {"Authorization": f"Bearer {tk.keys['reads']}"}
    paths = ["/v1/balance", "/v1/models", "/v1/receipts?limit=5", "/v1/key"]
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(i: int) -> int:
        async with gate, client.session.get(dep.nginx_url + paths[i % len(paths)], headers=headers) as r:
            await r.read()
            return r.status

    started = time.monotonic()
    statuses = Counter(await asyncio.gather(*(one(i) for i in range(sizes.reads))))
    took = time.monotonic() - started
    await asyncio.sleep(1.0)  # a few samples after the last request
    rest = {name: n for name, n in sampler.latest.items() if name.startswith("web-")}
    bound = THREADS + DB_ASYNC_POOL_SIZE + 2
    report.check(
        "Django views under load: connections closed with their requests",
        set(statuses) == {200} and bool(rest) and max(rest.values()) <= bound,
        f"{sizes.reads} reads (/v1/balance, /models, /receipts, /key), 24 at a time through nginx: "
        f"{dict(statuses)} in {took:.1f} s; then PostgreSQL connections per web process "
        f"{' / '.join(str(n) for _k, n in sorted(rest.items()))}",
        f"per web process at rest ≤ {THREADS} loop threads + pool {DB_ASYNC_POOL_SIZE} + lease + websocket = {bound}",
    )


def _metric_sums(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "tollgate_requests_total" and not labels.get("endpoint", "").endswith("/estimate"):
                name = f"requests_{labels['status_class']}"
                sums[name] = sums.get(name, 0.0) + sample.value
                if labels["status_class"] == "2xx" and labels.get("mode") == "live":
                    sums["requests_live_2xx"] = sums.get("requests_live_2xx", 0.0) + sample.value
            elif sample.name in (
                "tollgate_spend_nusd_total",
                "tollgate_rate_limited_total",
                "tollgate_insufficient_balance_total",
            ):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


async def prove_metrics(dep: Deployment, client: Client, report: Report) -> None:
    from django.db.models import Sum

    from billing.models import LedgerEntry, LedgerKind, Receipt

    def truth() -> dict[str, int]:
        live = Receipt.objects.filter(is_test=False)
        totals = live.aggregate(t=Sum("total_cost_nusd"), u=Sum("uncollected_nusd"))
        return {
            "receipts": live.count(),
            "charged": (totals["t"] or 0) - (totals["u"] or 0),
            "debited": -(LedgerEntry.objects.filter(kind=LedgerKind.CHARGE).aggregate(s=Sum("amount_nusd"))["s"] or 0),
        }

    url = dep.web_urls[-1] + "/metrics"
    async with client.session.get(url) as r:
        anonymous = r.status
    answered = client.answered
    seen = {
        "2xx": sum(n for s, n in answered.items() if 200 <= s < 300),
        "4xx": sum(n for s, n in answered.items() if 400 <= s < 500),
    }
    # A plain reply goes out before its settlement is written, and the counters move after it: compare until they
    # agree or 10 s have passed.
    deadline = time.monotonic() + 10
    while True:
        db = await adb(truth)
        async with client.session.get(url, headers={"Authorization": f"Bearer {dep.metrics_token}"}) as r:
            status, text = r.status, await r.text()
        if status != 200:
            report.check("metrics", False, f"/metrics with the token answered {status}")
            return
        m = {name: int(value) for name, value in _metric_sums(text).items()}
        requests_ok = m.get("requests_live_2xx", 0) == db["receipts"] == seen["2xx"]
        spend_ok = m.get("tollgate_spend_nusd_total", 0) == db["charged"] == db["debited"]
        refusals_ok = (
            m.get("requests_4xx", 0) == seen["4xx"]
            and m.get("tollgate_rate_limited_total", 0) == answered[429]
            and m.get("tollgate_insufficient_balance_total", 0) == answered[402]
        )
        if (requests_ok and spend_ok and refusals_ok) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    report.check(
        "Prometheus totals = receipts (one scrape, 3 processes)",
        requests_ok and spend_ok and refusals_ok and anonymous in (403, 404),
        f"requests 2xx {m.get('requests_live_2xx', 0)} = receipts {db['receipts']} = answers seen {seen['2xx']}; "
        f"spend {m.get('tollgate_spend_nusd_total', 0)} nusd = receipts {db['charged']} = ledger debits "
        f"{db['debited']}; 4xx {m.get('requests_4xx', 0)} = seen {seen['4xx']} (rate limited "
        f"{m.get('tollgate_rate_limited_total', 0)} = 429s {answered[429]}, insufficient balance "
        f"{m.get('tollgate_insufficient_balance_total', 0)} = 402s {answered[402]}); without the token: {anonymous}",
        "summed over processes = the database and the clients",
    )


async def prove_kill(dep: Deployment, client: Client, report: Report, children: Children, sizes: Sizes) -> None:
    from accounts.models import Plan
    from billing.models import Hold, HoldStatus

    tk = await adb(lambda: make_team("load", plan=Plan.ENTERPRISE, credit_nusd=100 * 10**9, keys={"load": {}}))
    key = tk.keys["load"]
    victim_index = 1
    victim = children.procs[f"web-{dep.web_ports[victim_index]}"]
    victim_addr = f"127.0.0.1:{dep.web_ports[victim_index]}"
    answers: list[Answer] = []
    client.count = False  # the metrics were checked; a killed process's own counts die with it
    started = time.monotonic()
    stop_at = started + sizes.load_seconds
    kill: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)

    async def stream_forever(loader: Client) -> None:
        while time.monotonic() < stop_at:
            answers.append(await loader.chat(dep.nginx_url, key, max_tokens=100, stream=True))

    def open_holds() -> int:
        return Hold.objects.filter(lease__owner__endswith=f":{victim.pid}", status=HoldStatus.OPEN).count()

    async def killer() -> None:
        await asyncio.sleep(sizes.kill_after)
        kill["at"] = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)  # kill -9
        await asyncio.to_thread(victim.wait, 10)
        kill["dead"] = time.monotonic()
        kill["open_at"] = await adb(open_holds)
        deadline = time.monotonic() + HOLD_LEASE_SECONDS + HOLD_SWEEP_SECONDS + 20
        while time.monotonic() < deadline:
            if await adb(open_holds) == 0:
                kill["released"] = time.monotonic() - kill["at"]
                return
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        loader = Client(session)
        loader.count = False
        await asyncio.gather(killer(), *(stream_forever(loader) for _ in range(sizes.load_clients)))
    at, dead = kill.get("at", 0.0), kill.get("dead", 0.0)
    ok_answers = [a for a in answers if a.status == 200 and a.complete]
    failed = [a for a in answers if not (a.status == 200 and a.complete)]
    # Its open requests: those nginx had passed to it when it died (sent before it was gone: one nginx connects to
    # in the moment between the signal and the process's end lands in its listen backlog and dies with it).
    on_victim = [a for a in answers if a.upstream == victim_addr and a.started <= dead and a.ended >= at]
    stray = [a for a in failed if all(a is not b for b in on_victim)]
    after_kill = Counter(a.upstream for a in ok_answers if a.started > dead)
    survivors = [f"127.0.0.1:{p}" for i, p in enumerate(dep.web_ports) if i != victim_index]
    report.check(
        "kill -9 under load: the others keep serving",
        not stray and all(after_kill[s] > 0 for s in survivors) and after_kill[victim_addr] == 0,
        f"{len(answers)} streams by {sizes.load_clients} clients in {sizes.load_seconds:.0f} s, process 2 killed at "
        f"{sizes.kill_after:.1f} s (gone {(dead - at) * 1000:.0f} ms later): {len(failed)} failed, of the "
        f"{len(on_victim)} open on it; "
        f"after the kill {' / '.join(str(after_kill[s]) for s in survivors)} served by the other two"
        + (
            f"; {len(stray)} OTHER FAILURES, e.g. {stray[0].status} {stray[0].error} via {stray[0].upstream}"
            if stray
            else ""
        ),
        "errors only on the killed process's open requests",
    )
    released = kill.get("released")
    promise = HOLD_LEASE_SECONDS + HOLD_SWEEP_SECONDS
    report.check(
        "kill -9: its holds released",
        released is not None and released <= promise + 1.0 and kill.get("open_at", 0) > 0,
        f"{int(kill.get('open_at', 0))} holds open when it died, all released "
        + (f"{released:.1f} s after" if released is not None else "NOT within the wait"),
        f"≤ HOLD_LEASE_SECONDS + HOLD_SWEEP_SECONDS = {HOLD_LEASE_SECONDS} + {HOLD_SWEEP_SECONDS} s "
        "(+1 s for the sweep task's trip)",
    )
    after = await settled(tk.team)
    clean, said = await adb(check_ledger)
    said = "check_ledger clean" if clean else said
    open_anywhere = await adb(lambda: Hold.objects.filter(status=HoldStatus.OPEN).count())
    report.check(
        "kill -9: books exact, check_ledger clean",
        clean
        and open_anywhere == 0
        and after["balance"] == after["ledger"] == after["credited"] - after["receipts_charged"]
        and after["debited"] == after["receipts_charged"],
        f"{after['receipts']} receipts = {after['receipts_charged']} nusd = ledger debits {after['debited']}; "
        f"no hold open; {said}",
        "wallet = ledger, receipts = debit",
    )


# --- main ------------------------------------------------------------------------------------------------------


def _interrupted(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def admin_sql(pg: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True, application_name="prove-admin") as conn:
        conn.execute(sql.encode())  # built here from our own names, never from input


def versions(pg: str) -> str:
    import psycopg
    import redis

    with psycopg.connect(f"{pg}/postgres", autocommit=True, application_name="prove-admin") as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0].split()[0] if row else "?"
        row = conn.execute("SHOW max_connections").fetchone()
        max_connections = row[0] if row else "?"
    info = redis.Redis.from_url("redis://127.0.0.1:6379/0").info("server")
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    return (
        f"PostgreSQL {pg_version} (max_connections {max_connections}), Redis {info.get('redis_version')}, nginx "
        f"{nginx}, Python {platform.python_version()}, {os.cpu_count()} cores"
    )


async def run(dep: Deployment, sizes: Sizes, report: Report, children: Children, sampler: ConnectionSampler) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        took = await wait_until_up(session, [*dep.web_urls, dep.nginx_url], children)
        log(f"3 web processes, worker, beat and nginx up ({took:.1f} s); PIDs " + ", ".join(
            f"{name} {proc.pid}" for name, proc in children.procs.items()
        ))  # fmt: skip
        sampler.start()
        client = Client(session)
        checks: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("rate limit", lambda: prove_rate_limit(dep, client, report, sizes)),
            ("revocation", lambda: prove_revocation(dep, client, report)),
            ("wallet race", lambda: prove_wallet_race(dep, client, report, sizes)),
            ("websocket", lambda: prove_websocket(dep, client, report)),
            ("Django views", lambda: prove_django_views(dep, client, report, sizes, sampler)),
            ("metrics", lambda: prove_metrics(dep, client, report)),  # before the kill: a killed process's counts die
            ("kill -9 under load", lambda: prove_kill(dep, client, report, children, sizes)),
        ]
        for title, check in checks:
            log(title)
            try:
                await check()
            except Exception as exc:  # noqa: BLE001 - a check that broke failed; the others still run
                report.check(title, False, f"{type(exc).__name__}: {exc}")
        sampler.stop()
    if sampler.error:
        report.check("PostgreSQL connections", False, f"sampling failed: {sampler.error}")
        return
    bound = THREADS + DB_ASYNC_POOL_SIZE + 2 + READ_CONCURRENCY
    web = {name: n for name, n in sampler.peak.items() if name.startswith("web-")}
    others = ", ".join(f"{name} {n}" for name, n in sorted(sampler.peak.items()) if not name.startswith("web-"))
    report.check(
        "PostgreSQL connections stay bounded",
        bool(web) and max(web.values()) <= bound,
        f"peak {sampler.peak_total} in all; per web process {' / '.join(str(n) for _k, n in sorted(web.items()))}; "
        f"{others}",
        f"per web process ≤ {THREADS} loop threads + pool {DB_ASYNC_POOL_SIZE} + lease + websocket + Django views in "
        f"flight (≤ {READ_CONCURRENCY}) = {bound}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller numbers (CI)")
    parser.add_argument("--redis-db", type=int, default=14, help="an empty Redis db on 127.0.0.1:6379 (flushed after)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server (superuser)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) for a look")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    wall = time.monotonic()
    report = Report()
    if shutil.which("nginx") is None:
        print("nginx is not installed (apt-get install nginx); deploy/prove.sh installs it", file=sys.stderr)
        return 2
    import redis

    r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{args.redis_db}")
    if r.dbsize():
        print(f"Redis db {args.redis_db} is not empty: choose an empty one with --redis-db", file=sys.stderr)
        return 2
    dep = Deployment(
        pg=args.pg.rstrip("/"),
        db=f"tollgate_prove_{os.getpid()}",
        redis_db=args.redis_db,
        dir=Path(tempfile.mkdtemp(prefix="tollgate_prove_")),
        web_ports=[free_port() for _ in range(WEB_PROCESSES)],
        nginx_port=free_port(),
    )
    children = Children(dep.dir)
    created = False
    sampler = ConnectionSampler(f"{dep.pg}/postgres", dep.db)
    log(f"prove ({'quick' if args.quick else 'full'}): {versions(dep.pg)}")
    try:
        (dep.dir / "var").mkdir()
        dep.secret_files = dep.write_secrets()
        admin_sql(dep.pg, f'CREATE DATABASE "{dep.db}"')
        created = True
        log(f"database {dep.db}, Redis db {dep.redis_db}, directory {dep.dir}")
        setup = dep.env("setup", metrics=False)
        for command in (["migrate", "--noinput"], ["seed_catalog"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=setup, check=True, capture_output=True)
        log("migrated and seeded")
        os.environ.update(dep.env("prove", metrics=False))
        import django

        django.setup()
        for port in dep.web_ports:  # as tollgate-web@.service runs them
            children.start(
                f"web-{port}",
                [PYTHON, "-m", "config.serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                dep.env(f"web-{port}"),
            )
        celery = str(Path(PYTHON).with_name("celery"))
        children.start(
            "worker",
            [celery, "-A", "config", "worker", "--loglevel", "WARNING", "--concurrency", str(WORKER_CONCURRENCY)],
            dep.env("worker"),
        )
        children.start(
            "beat",
            [
                celery,
                "-A",
                "config",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(dep.dir / "celerybeat-schedule"),
            ],
            dep.env("beat", metrics=False),
        )
        conf = nginx_config(dep)
        children.start(
            "nginx",
            ["nginx", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
            {"PATH": os.environ.get("PATH", "")},
        )
        asyncio.run(run(dep, sizes, report, children, sampler))
    except Exception as exc:  # noqa: BLE001 - reported, and the prove fails
        report.check("the prove ran to its end", False, f"{type(exc).__name__}: {exc}")
        for name in children.procs:
            print(f"--- {name} (last lines) ---\n{children.tail(name)}", file=sys.stderr)
    finally:
        log("cleaning up")
        sampler.stop()
        children.stop_all()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if created:
            try:
                admin_sql(dep.pg, f'DROP DATABASE IF EXISTS "{dep.db}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001
                report.check("clean-up", False, f"could not drop {dep.db}: {exc}")
        with contextlib.suppress(Exception):
            r.flushdb()
        if args.keep:
            log(f"kept {dep.dir}")
        else:
            shutil.rmtree(dep.dir, ignore_errors=True)
    seconds = time.monotonic() - wall
    print()
    print(f"Tollgate prove, {'quick' if args.quick else 'full'} mode, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{seconds:.0f} s wall time")  # fmt: skip
    print(report.table())
    if report.failures:
        print(f"\nFAILED: {len(report.failures)} of {len(report.rows)} checks", file=sys.stderr)
        return 1
    print(f"\n{len(report.rows)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
