"""`tollgate images generate|get`: image generation is an asynchronous job.

`POST /v1/images` {model, prompt, n, size} answers 202 with a job `{"id": "img_…", "status": "pending" |
"processing", …}`; `GET /v1/images/{id}` is polled until a terminal status: `succeeded` (with
`output_urls`, links readable without a key), `failed` (with `error`), `cancelled`, `expired` or
`moderation_rejected`. The images are downloaded to `-o FILE` (default `<id>.png`; with several images
the second is `<stem>-2.png` and so on). A spinner shows the job's status on a terminal while waiting.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tollgate_cli.client import EXIT_INTERRUPTED, EXIT_OK, CliError
from tollgate_cli.render import usage_line, usd

if TYPE_CHECKING:
    from tollgate_cli.main import Context

TERMINAL = {"succeeded", "failed", "cancelled", "expired", "moderation_rejected"}
POLL_FIRST, POLL_MAX = 0.5, 3.0  # seconds between polls: quick for fast jobs, gentle for slow ones


def _job_path(job_id: str) -> str:
    if not job_id.startswith("img_") or "/" in job_id:
        raise CliError(f"Invalid image job id {job_id[:60]!r}: expected img_….")
    return f"/v1/images/{job_id}"


def _status_text(job: dict, started: float) -> str:
    progress = job.get("progress")
    shown = f" {progress}%" if isinstance(progress, int | float) else ""
    return f"{job['id']}: {job.get('status', '?')}{shown} ({time.monotonic() - started:.0f} s)"


def wait_for(ctx: Context, job: dict, *, timeout: float) -> dict:
    """Poll until the job ends (bounded by `timeout` seconds)."""
    started = time.monotonic()
    deadline = started + timeout
    interval = POLL_FIRST
    show = ctx.out.err.is_terminal and not ctx.json
    last_status = None
    status = ctx.out.err.status(_status_text(job, started)) if show else None
    try:
        if status is not None:
            status.start()
        while job.get("status") not in TERMINAL:
            if not show and job.get("status") != last_status:
                last_status = job.get("status")
                ctx.out.note(_status_text(job, started))
            if time.monotonic() + interval > deadline:
                raise CliError(
                    f"{job['id']} is still {job.get('status')} after {timeout:.0f} s; "
                    f"fetch it later with `tollgate images get {job['id']}`."
                )
            time.sleep(interval)
            interval = min(POLL_MAX, interval * 1.5)
            job = ctx.client.get(_job_path(job["id"]))
            if status is not None:
                status.update(_status_text(job, started))
    finally:
        if status is not None:
            status.stop()
    return job


def _destinations(job: dict, output: str | None, count: int) -> list[Path]:
    first = Path(output) if output else Path(f"{job['id']}.png")
    suffix = first.suffix or ".png"
    return [first] + [first.with_name(f"{first.stem}-{i}{suffix}") for i in range(2, count + 1)]


def _failure(job: dict) -> CliError:
    error = job.get("error")
    detail = error.get("message") if isinstance(error, dict) else error
    reasons = {
        "failed": "failed",
        "cancelled": "was cancelled",
        "expired": "expired before it finished",
        "moderation_rejected": "was rejected by moderation",
    }
    message = f"{job['id']} {reasons.get(job['status'], job['status'])}"
    return CliError(f"{message}: {detail}" if detail else f"{message}.", body=job)


def finish(ctx: Context, job: dict) -> int:
    try:
        job = wait_for(ctx, job, timeout=ctx.args.timeout)
    except KeyboardInterrupt:
        ctx.out.note(f"Stopped waiting. The job goes on: `tollgate images get {job['id']}` fetches it later.")
        return EXIT_INTERRUPTED
    if job["status"] != "succeeded":
        raise _failure(job)
    urls = job.get("output_urls") or []
    if not urls:
        raise CliError(f"{job['id']} succeeded but lists no output_urls.", body=job)
    files = []
    for url, dest in zip(urls, _destinations(job, ctx.args.output, len(urls)), strict=True):
        size = ctx.client.download(url, dest)
        files.append({"path": str(dest), "bytes": size})
    if ctx.json:
        ctx.out.json({**job, "files": files})
        return EXIT_OK
    for saved in files:
        ctx.out.line(saved["path"])
    cost = job.get("usage") or ({"total_cost_usd": job["total_cost_usd"]} if "total_cost_usd" in job else None)
    summary = usage_line(cost) if cost and "prompt_tokens" in cost else (usd(cost["total_cost_usd"]) if cost else "")
    ctx.out.note(f"{job['id']} succeeded: {len(files)} image(s) saved" + (f" · {summary}" if summary else ""))
    return EXIT_OK


def cmd_generate(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {"model": args.model, "prompt": " ".join(args.prompt), "n": args.n}
    if args.size:
        body["size"] = args.size
    job = ctx.client.post("/v1/images", body)
    if not isinstance(job, dict) or not str(job.get("id", "")).startswith("img_"):
        raise CliError("POST /v1/images did not answer with an image job.", body=job)
    return finish(ctx, job)


def cmd_get(ctx: Context) -> int:
    return finish(ctx, ctx.client.get(_job_path(ctx.args.id)))


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not 1 <= number <= 86_400:
        raise argparse.ArgumentTypeError("expected 1 to 86400 seconds")
    return number


def add_commands(command: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    images = command("images", None, "generate images (asynchronous jobs)")
    sub = images.add_subparsers(dest="images_command", metavar="ACTION", required=True, parser_class=type(images))

    def action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        parser.set_defaults(handler=handler)
        parser.add_argument("-o", "--output", help="where to write the PNG (default <job id>.png)")
        parser.add_argument("--timeout", type=_seconds, default=600.0, help="give up waiting after this many seconds")
        return parser

    generate = action("generate", cmd_generate, "start a job, wait for it, download the image")
    generate.add_argument("-m", "--model", required=True)
    generate.add_argument("prompt", nargs="+")
    generate.add_argument("-n", type=int, choices=range(1, 11), default=1, metavar="N", help="images (1-10)")
    generate.add_argument("--size", help="e.g. 1024x1024")
    get = action("get", cmd_get, "wait for a job started earlier and download its image")
    get.add_argument("id", help="an image job id (img_…)")
