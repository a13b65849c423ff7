"""`tollgate keys list|create|rotate|revoke`: the management API (`/api/v1/`) for the team of the key in
use, which needs the `keys:write` scope (and can never mint a key with more than it has itself).

A new secret (create, rotate) is printed once, alone on stdout, so `KEY=$(tollgate keys create ci)` works;
what it is goes to stderr. Rotating the key this profile is logged in with stores the new secret.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from tollgate_cli import config
from tollgate_cli.client import EXIT_OK, CliError
from tollgate_cli.render import NUSD_PER_USD, when

if TYPE_CHECKING:
    from tollgate_cli.main import Context

PAGE = 100
MAX_PAGES = 100  # 10,000 keys: far beyond any team; the loop stays bounded
_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _own_key(ctx: Context) -> dict:
    return ctx.client.get("/v1/key")["data"]


def _key_path(key_id: str, action: str = "") -> str:
    if not key_id.startswith("key_") or "/" in key_id:
        raise CliError(f"Invalid key id {key_id[:60]!r}: expected key_… (see `tollgate keys list`).")
    return f"/api/v1/keys/{key_id}/" + (f"{action}/" if action else "")


def cmd_list(ctx: Context) -> int:
    team = _own_key(ctx)["team"]["id"]
    keys: list[dict] = []
    for page in range(MAX_PAGES):
        body = ctx.client.get(f"/api/v1/teams/{team}/keys/", limit=PAGE, offset=page * PAGE)
        keys.extend(body["results"])
        if not body.get("next"):
            break
    if ctx.json:
        ctx.out.json({"team": team, "data": keys})
        return EXIT_OK
    ctx.out.table(
        ["ID", "Name", "Key", "Mode", "Scopes", "Status", "Created (UTC)", "Last used"],
        (
            [
                k["id"],
                k["name"],
                k["prefix"],
                k["mode"],
                ", ".join(k["scopes"]),
                k["status"],
                when(k["created_at"]),
                when(k["last_used_at"]) if k.get("last_used_at") else "never",
            ]
            for k in keys
        ),
    )
    return EXIT_OK


def _secret_out(ctx: Context, minted: dict, what: str) -> None:
    if ctx.json:
        ctx.out.json(minted)
    else:
        ctx.out.stdout.write(minted["key"] + "\n")
        ctx.out.stdout.flush()
        ctx.out.note(
            f"{what} {minted['id']} ({minted['name']}): {minted['mode']}, scopes {', '.join(minted['scopes'])}."
        )
        ctx.out.warn("The secret above is shown once and never again: store it now.")


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def _spend_cap_nusd(value: str) -> int:
    try:
        amount = Decimal(value.strip().removeprefix("$"))
    except InvalidOperation:
        raise CliError(f"Invalid --spend-cap {value[:40]!r}: expected dollars, e.g. 25 or 2.50.") from None
    nusd = amount * NUSD_PER_USD
    if not amount.is_finite() or amount < 0 or nusd != nusd.to_integral_value():
        raise CliError(f"Invalid --spend-cap {value[:40]!r}: dollars, at least 0, at most 9 decimals.")
    return int(nusd)


def cmd_create(ctx: Context) -> int:
    args = ctx.args
    team = _own_key(ctx)["team"]["id"]
    body: dict[str, Any] = {"name": args.name}
    if args.mode:
        body["mode"] = args.mode
    optional = {
        "scopes": _csv(args.scopes),
        "allowed_models": _csv(args.models),
        "rpm_limit": args.rpm,
        "tpm_limit": args.tpm,
        "monthly_spend_cap_nusd": None if args.spend_cap is None else _spend_cap_nusd(args.spend_cap),
        "ip_allowlist": args.ip,
        "expires_at": args.expires_at,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    minted = ctx.client.post(f"/api/v1/teams/{team}/keys/", body)
    _secret_out(ctx, minted, "Created")
    return EXIT_OK


def _grace_seconds(value: str) -> int:
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 0, 90s, 30m, 24h or 7d, got {value!r}")
    return int(match[1]) * _UNITS[match[2]]


def cmd_rotate(ctx: Context) -> int:
    args = ctx.args
    own = _own_key(ctx)
    body = {} if args.grace is None else {"grace_seconds": args.grace}
    minted = ctx.client.post(_key_path(args.id, "rotate"), body)
    _secret_out(ctx, minted, "Rotated")
    if minted.get("grace_ends_at"):
        ctx.out.note(f"The old secret keeps working until {when(minted['grace_ends_at'])}.")
    if minted["id"] == own["id"]:
        if ctx.settings.key_from_env:
            ctx.out.warn("That is the key in TOLLGATE_API_KEY: put the new secret there.")
        else:
            path = config.store_login(ctx.settings.profile, base_url=ctx.settings.base_url, api_key=minted["key"])
            ctx.out.note(f"That is this profile's key: the new secret is saved in {path}.")
    return EXIT_OK


def cmd_revoke(ctx: Context) -> int:
    args = ctx.args
    path = _key_path(args.id, "revoke")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("Revoking cannot be undone: pass --yes to revoke without a prompt.")
        answer = input(f"Revoke {args.id}? Requests with it fail at once. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            ctx.out.note("Nothing revoked.")
            return EXIT_OK
    own = _own_key(ctx)
    key = ctx.client.post(path)
    if ctx.json:
        ctx.out.json(key)
    else:
        ctx.out.line(f"Revoked {key['id']} ({key['name']}) at {when(key['revoked_at'])}.")
    if key["id"] == own["id"]:
        ctx.out.warn("That was the key this command used: log in with another one (tollgate login).")
    return EXIT_OK


def add_commands(command: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    keys = command("keys", None, "list, create, rotate and revoke API keys (needs a keys:write key)")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True, parser_class=type(keys))

    def action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        parser.set_defaults(handler=handler)
        return parser

    action("list", cmd_list, "the team's keys (no secrets)")
    create = action("create", cmd_create, "mint a key; its secret is printed once")
    create.add_argument("name")
    create.add_argument("--mode", choices=["live", "test"], help="default live")
    create.add_argument("--scopes", help="comma-separated: inference,models:read,billing:read,keys:write")
    create.add_argument("--models", help="comma-separated model ids the key may use (default all)")
    create.add_argument("--rpm", type=int, help="requests per minute (never above the plan)")
    create.add_argument("--tpm", type=int, help="tokens per minute (never above the plan)")
    create.add_argument("--spend-cap", help="monthly spend cap in dollars, e.g. 25")
    create.add_argument("--ip", action="append", metavar="CIDR", help="allow only this network (repeatable)")
    create.add_argument("--expires-at", help="ISO datetime, e.g. 2026-12-31T00:00:00Z")
    rotate = action("rotate", cmd_rotate, "a new secret now; the old one keeps working for the grace window")
    rotate.add_argument("id", help="key_…")
    rotate.add_argument("--grace", type=_grace_seconds, help="how long the old secret works: 0 to 7d (default 24h)")
    revoke = action("revoke", cmd_revoke, "revoke a key immediately")
    revoke.add_argument("id", help="key_…")
    revoke.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
