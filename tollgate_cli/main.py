"""`tollgate`: the command line for a Tollgate installation. Every command is a function taking a `Context`;
`build_parser()` wires them to argparse, `main()` turns errors into messages and exit codes (see client.py).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote

from tollgate_cli import __version__, chat, config, images, keys
from tollgate_cli.client import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, Client, CliError
from tollgate_cli.render import Output, exact, nusd_as_usd, usage_line, usd, when


@dataclass
class Context:
    args: argparse.Namespace
    out: Output
    settings: config.Settings
    _client: Client | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.out.json_mode

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.settings.base_url, self.settings.api_key)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (argparse's own 2 means "authentication" here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


# --- account: login, logout, whoami ------------------------------------------------------------------


def _read_key() -> str:
    if sys.stdin.isatty():
        try:
            return getpass.getpass("Tollgate API key (tg_live_… or tg_test_…, input hidden): ").strip()
        except EOFError:
            return ""
    return sys.stdin.readline().strip()


def cmd_login(ctx: Context) -> int:
    base_url = config.normalize_base_url(ctx.args.base_url) if ctx.args.base_url else ctx.settings.base_url
    key = _read_key()
    if not key:
        raise CliError("No API key given: type it at the prompt or pipe it on stdin.")
    with Client(base_url, key) as client:
        info = client.get("/v1/key")["data"]
    path = config.store_login(ctx.settings.profile, base_url=base_url, api_key=key)
    if ctx.json:
        ctx.out.json({"profile": ctx.settings.profile, "base_url": base_url, "config_file": str(path), "key": info})
    else:
        ctx.out.line(
            f"Logged in to {base_url} with {info['label']} ({info['name']}): team {info['team']['id']}, "
            f"{info['mode']} key, scopes {', '.join(info['scopes']) or 'none'}."
        )
        ctx.out.note(f"Saved to {path} (profile {ctx.settings.profile}, readable only by you).")
    if ctx.settings.key_from_env:
        ctx.out.warn("TOLLGATE_API_KEY is set in this shell and overrides the key just saved.")
    return EXIT_OK


def cmd_logout(ctx: Context) -> int:
    removed = config.remove_profile(ctx.settings.profile)
    if ctx.json:
        ctx.out.json({"profile": ctx.settings.profile, "logged_out": removed})
    elif removed:
        ctx.out.line(f"Logged out: profile {ctx.settings.profile} removed from {config.config_path()}.")
        ctx.out.note("The key itself still works; revoke it with `tollgate keys revoke` or in the dashboard.")
    else:
        ctx.out.line(f"Profile {ctx.settings.profile} was not logged in.")
    if ctx.settings.key_from_env:
        ctx.out.warn("TOLLGATE_API_KEY is still set in this shell: commands keep using it.")
    return EXIT_OK


def _limit(value: Any, unit: str = "") -> str:
    return "plan default" if value is None else f"{value:,}{unit}"


def cmd_whoami(ctx: Context) -> int:
    info = ctx.client.get("/v1/key")["data"]
    if ctx.json:
        ctx.out.json({"profile": ctx.settings.profile, "base_url": ctx.settings.base_url, "key": info})
        return EXIT_OK
    limits = info["limits"]
    cap = limits.get("monthly_spend_cap_nusd")
    ctx.out.fields(
        [
            ("Base URL", ctx.settings.base_url),
            ("Key", f"{info['label']} ({info['name']}, {info['id']})"),
            ("Key from", "TOLLGATE_API_KEY" if ctx.settings.key_from_env else f"profile {ctx.settings.profile}"),
            ("Team", f"{info['team']['id']} (plan {info['team']['plan']})"),
            ("Mode", info["mode"] + (" (simulator only, no money moves)" if info["mode"] == "test" else "")),
            ("Scopes", ", ".join(info["scopes"]) or "none"),
            ("Models", ", ".join(limits.get("allowed_models") or []) or "all"),
            ("Requests/min", _limit(limits.get("rpm_limit"))),
            ("Tokens/min", _limit(limits.get("tpm_limit"))),
            ("Spend cap", "none" if cap is None else f"{usd(nusd_as_usd(cap))} a month"),
            ("IP allow-list", ", ".join(limits.get("ip_allowlist") or []) or "any address"),
            ("Expires", when(info.get("expires_at")) if info.get("expires_at") else "never"),
        ]
        + ([("Old secret until", when(info["grace_ends_at"]))] if info.get("grace_ends_at") else [])
    )
    return EXIT_OK


# --- catalog: models, embed ------------------------------------------------------------------------------


def _image_price(pricing: dict) -> Any:
    return pricing.get("per_image", pricing.get("image"))


def cmd_models(ctx: Context) -> int:
    body = ctx.client.get("/v1/models")
    if ctx.json:
        ctx.out.json(body)
        return EXIT_OK
    models = body.get("data") or []
    images = any(_image_price(m.get("pricing") or {}) is not None for m in models)
    headers = ["Model", "Type", "Context", "Input $/M", "Cached $/M", "Output $/M"] + (["Per image"] if images else [])
    rows = []
    for model in models:
        pricing = model.get("pricing") or {}
        row = [
            model["id"],
            model.get("type", ""),
            f"{model['context_length']:,}" if model.get("context_length") else "—",
            usd(pricing.get("input")),
            usd(pricing.get("cached_input")),
            usd(pricing.get("output")),
        ]
        if images:
            row.append(usd(_image_price(pricing)))
        rows.append(row)
    ctx.out.table(headers, rows, right=headers[2:])
    return EXIT_OK


def cmd_embed(ctx: Context) -> int:
    texts = list(ctx.args.text)
    if not texts and not sys.stdin.isatty():
        texts = [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not texts:
        raise CliError("Nothing to embed: give TEXT arguments or pipe lines on stdin.")
    body: dict[str, Any] = {"model": ctx.args.model, "input": texts}
    if ctx.args.dimensions:
        body["dimensions"] = ctx.args.dimensions
    reply = ctx.client.post("/v1/embeddings", body)
    if ctx.json:
        ctx.out.json(reply)
        return EXIT_OK
    data = sorted(reply.get("data") or [], key=lambda item: item.get("index", 0))
    for item in data:  # one JSON array per input, in input order: pipes into jq, numpy.loadtxt and friends
        ctx.out.stdout.write("[" + ", ".join(exact(v) for v in item["embedding"]) + "]\n")
    ctx.out.stdout.flush()
    dims = len(data[0]["embedding"]) if data else 0
    ctx.out.note(f"{len(data)} vector(s) of {dims} dimensions · {usage_line(reply.get('usage'))}")
    return EXIT_OK


# --- billing: balance, receipts, receipt -------------------------------------------------------------------


def cmd_balance(ctx: Context) -> int:
    body = ctx.client.get("/v1/balance")
    if ctx.json:
        ctx.out.json(body)
        return EXIT_OK
    ctx.out.fields(
        [
            ("Balance", usd(body["credits"])),
            ("Held", f"{usd(body['held_credits'])} (reserved by requests in flight)"),
            ("Available", usd(body["available_credits"])),
        ]
    )
    return EXIT_OK


PAGE_MAX = 100  # the API's largest page
CSV_COLUMNS = [
    "id",
    "created_at",
    "request_id",
    "status",
    "mode",
    "test",
    "key_id",
    "key_label",
    "endpoint",
    "model",
    "model_routed",
    "provider",
    "streamed",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "total_tokens",
    "input_cost_usd",
    "output_cost_usd",
    "total_cost_usd",
    "latency_ms",
]


def _receipts(ctx: Context) -> tuple[list[dict], bool]:
    """Up to --limit receipts, newest first, following the API's `after` cursor page by page."""
    wanted, found, after, has_more = ctx.args.limit, [], None, True
    for _ in range(wanted // PAGE_MAX + 1):  # bounded: one page per hundred receipts asked for
        page = ctx.client.get(
            "/v1/receipts",
            limit=min(PAGE_MAX, wanted - len(found)),
            after=after,
            since=ctx.args.since,
            until=ctx.args.until,
            key=ctx.args.key,
        )
        found.extend(page["data"])
        has_more, after = page["has_more"], page["last_id"]
        if not has_more or len(found) >= wanted:
            break
    return found, has_more


def _csv_row(receipt: dict) -> list[Any]:
    usage = receipt["usage"]
    flat = {**receipt, **usage}
    row = []
    for column in CSV_COLUMNS:
        value = flat.get(column)
        if column.endswith("_usd"):
            value = exact(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        row.append("" if value is None else value)
    return row


def cmd_receipts(ctx: Context) -> int:
    if ctx.args.csv and ctx.json:
        raise CliError("Choose one of --json and --csv.")
    if not 1 <= ctx.args.limit <= 10_000:
        raise CliError("--limit must be between 1 and 10000.")
    receipts, has_more = _receipts(ctx)
    if ctx.json:
        ctx.out.json({"object": "list", "data": receipts, "has_more": has_more})
        return EXIT_OK
    if ctx.args.csv:
        writer = csv.writer(ctx.out.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_csv_row(r) for r in receipts)
        ctx.out.stdout.flush()
        return EXIT_OK
    if not receipts:
        ctx.out.note("No receipts.")
        return EXIT_OK
    headers = ["Receipt", "Created (UTC)", "Model", "Status", "Tokens in/out", "Cost", "Key"]
    ctx.out.table(
        headers,
        (
            [
                r["id"],
                when(r["created_at"]),
                r["model"],
                r["status"] + (" (test)" if r["test"] else ""),
                f"{r['usage']['prompt_tokens'] + r['usage']['cached_tokens']:,}/{r['usage']['completion_tokens']:,}",
                usd(r["total_cost_usd"]),
                r["key_label"],
            ]
            for r in receipts
        ),
        right=["Tokens in/out", "Cost"],
    )
    if has_more:
        ctx.out.note(f"The newest {len(receipts)} shown; there are more (--limit, --since, --until).")
    return EXIT_OK


def cmd_receipt(ctx: Context) -> int:
    r = ctx.client.get(f"/v1/receipts/{quote(ctx.args.id, safe='')}")
    if ctx.json:
        ctx.out.json(r)
        return EXIT_OK
    usage, prices = r["usage"], r["prices_usd_per_million_tokens"]
    routed = r["model_routed"] or r["model"]
    ttft = f", first token {r['ttft_ms']} ms" if r.get("ttft_ms") is not None else ""
    ctx.out.fields(
        [
            ("Receipt", r["id"]),
            ("Created", when(r["created_at"])),
            ("Request", r["request_id"]),
            (
                "Status",
                r["status"]
                + (f" ({r['error_code']})" if r.get("error_code") else "")
                + (" · test" if r["test"] else ""),
            ),
            ("Key", r["key_label"] + (f" ({r['key_id']})" if r.get("key_id") else "")),
            ("Endpoint", r["endpoint"] + (" (streamed)" if r["streamed"] else "")),
            ("Model", f"{r['model']} → {routed} via {r['provider'] or '—'} ({r['attempts']} attempt(s))"),
            ("Prompt", f"{usage['prompt_tokens']:,} tokens × {usd(prices['input'])}/M"),
            ("Cached prompt", f"{usage['cached_tokens']:,} tokens × {usd(prices['cached'])}/M"),
            ("Input cost", usd(r["input_cost_usd"])),
            ("Completion", f"{usage['completion_tokens']:,} tokens × {usd(prices['output'])}/M"),
            ("Output cost", usd(r["output_cost_usd"])),
            ("Total", usd(r["total_cost_usd"])),
            ("Held", usd(r["hold_usd"])),
            ("Latency", f"{r['latency_ms']} ms{ttft}"),
        ]
    )
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the subcommand is not reset by the subcommand's own default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile", default=argparse.SUPPRESS, help="config profile (default: TOLLGATE_PROFILE or 'default')"
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts")
    return common


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = Parser(
        prog="tollgate",
        description="Command line for a Tollgate installation: models, chat, embeddings, images, balance, "
        "receipts and API keys, through its public API.",
        epilog="Exit codes: 0 ok, 1 usage or API error, 2 authentication, 3 insufficient balance, 130 interrupted. "
        "TOLLGATE_API_KEY and TOLLGATE_BASE_URL override the config file.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tollgate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(name: str, handler: Callable[[Context], int], help_text: str, **kwargs) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common], **kwargs)
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", cmd_login, "verify an API key and store it (read from stdin or a hidden prompt)")
    login.add_argument("--base-url", help=f"the installation's URL (default {config.DEFAULT_BASE_URL})")
    command("logout", cmd_logout, "forget the stored key of this profile")
    command("whoami", cmd_whoami, "the key's team, mode, scopes and limits")
    command("models", cmd_models, "models with their prices per million tokens")

    chat_cmd = command("chat", chat.cmd_chat, "chat with a model; streams the reply (interactive without a prompt)")
    chat_cmd.add_argument("-m", "--model", required=True)
    chat_cmd.add_argument(
        "prompt", nargs="*", help="the message (default: stdin, or an interactive chat on a terminal)"
    )
    chat_cmd.add_argument("-s", "--system", help="a system prompt")
    chat_cmd.add_argument("-t", "--temperature", type=float)
    chat_cmd.add_argument("--max-tokens", type=_positive)

    embed = command("embed", cmd_embed, "embed texts; prints one JSON array per text")
    embed.add_argument("-m", "--model", required=True)
    embed.add_argument("text", nargs="*", help="texts to embed (default: one per line on stdin)")
    embed.add_argument("--dimensions", type=_positive)

    images.add_commands(command, common)

    command("balance", cmd_balance, "the team's balance, held and available credit")
    receipts = command("receipts", cmd_receipts, "recent receipts, newest first")
    receipts.add_argument("--since", help="ISO date or datetime (UTC)")
    receipts.add_argument("--until", help="ISO date (that whole day included) or datetime")
    receipts.add_argument("--limit", type=_positive, default=20, help="how many (default 20, at most 10000)")
    receipts.add_argument("--key", help="only this API key's receipts (key_…)")
    receipts.add_argument("--csv", action="store_true", help="print CSV (exact amounts)")
    receipt = command("receipt", cmd_receipt, "one receipt: tokens × unit prices, cost, routing")
    receipt.add_argument("id", help="a receipt id (rcpt_…)")

    keys.add_commands(command, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    out = Output(json_mode=getattr(args, "json", False))
    ctx: Context | None = None
    try:
        ctx = Context(args=args, out=out, settings=config.resolve(getattr(args, "profile", None)))
        code = args.handler(ctx)
        if ctx._client is not None and ctx._client.grace_ends_at:
            out.warn(
                f"This key's old secret stops working at {ctx._client.grace_ends_at}: "
                "log in with the new one (tollgate login)."
            )
        return code
    except config.ConfigError as exc:
        out.error(str(exc))
        return EXIT_ERROR
    except CliError as exc:
        if out.json_mode and exc.body is not None:
            out.json(exc.body)
        out.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        out.err.print()
        out.note("Interrupted.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tollgate receipts | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_OK
    finally:
        if ctx is not None:
            ctx.close()


if __name__ == "__main__":
    sys.exit(main())
