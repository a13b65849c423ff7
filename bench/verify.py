"""After the load: a fixed batch of requests must write exactly one receipt each, leave no hold
open, and keep every wallet reconciled (check_ledger). Bounded: --requests at --concurrency."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from billing.models import Hold, HoldStatus, Receipt  # noqa: E402

BODY = {"model": "fake", "messages": [{"role": "user", "content": "Say hello in five words please."}], "max_tokens": 20}


async def fire(base: str, key: str, total: int, concurrency: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    queue = iter(range(total))
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=60)

    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            for i in queue:
                body = dict(BODY, stream=bool(i % 2))
                if body["stream"]:
                    body["stream_options"] = {"include_usage": True}
                try:
                    async with session.post(f"{base}/chat/completions", json=body, headers=headers) as r:
                        data = await r.read()
                        ok = r.status == 200 and (not body["stream"] or data.rstrip().endswith(b"data: [DONE]"))
                        name = "ok" if ok else f"http_{r.status}"
                except Exception as exc:  # noqa: BLE001 - counted, reported
                    name = type(exc).__name__
                counts[name] = counts.get(name, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    a = ap.parse_args()

    before = Receipt.objects.count()
    started = time.monotonic()
    counts = asyncio.run(fire(a.base, a.key, a.requests, a.concurrency))
    time.sleep(0.5)  # settlement of the last streams happens right after their final frame
    written = Receipt.objects.count() - before
    open_holds = Hold.objects.filter(status=HoldStatus.OPEN).count()
    served = counts.get("ok", 0)
    print(f"requests sent: {a.requests} in {time.monotonic() - started:.1f} s; responses: {counts}")
    print(f"receipts written: {written}; requests served: {served}; open holds: {open_holds}")
    failures = []
    if written != served:
        failures.append("receipts written != requests served")
    if open_holds:
        failures.append("holds left open")
    try:
        call_command("check_ledger")
    except SystemExit as exc:
        if exc.code:
            failures.append("check_ledger failed")
    if failures:
        sys.exit("VERIFY FAILED: " + "; ".join(failures))
    print("verify: ok (receipts == requests served, no open holds, check_ledger clean)")


if __name__ == "__main__":
    main()
