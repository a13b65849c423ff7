"""`tollgate chat`: one streamed reply (prompt from the arguments or stdin), or an interactive chat with
history when there is no prompt and stdin is a terminal.

stdout carries the reply and nothing else (byte for byte when it is not a terminal); tokens, cost and
notes go to stderr. Ctrl-C during a reply closes the stream: the server sees the client leave and
charges for what it produced.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from tollgate_cli.client import EXIT_AUTH, EXIT_BALANCE, EXIT_INTERRUPTED, EXIT_OK, Client, CliError
from tollgate_cli.render import usage_line, usd

if TYPE_CHECKING:
    from tollgate_cli.main import Context

STOPPED = "Stopped. The server charges for what it produced (see `tollgate receipts`)."


@dataclass
class Reply:
    """What the stream has delivered so far (kept when it is interrupted)."""

    pieces: list[str] = field(default_factory=list)
    id: str | None = None
    model: str | None = None
    created: int | None = None
    finish_reason: str | None = None
    usage: dict | None = None
    routing: dict | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def as_completion(self) -> dict[str, Any]:
        """The streamed reply in the shape of a non-streamed chat.completion (what --json prints)."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text},
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage,
        }
        if self.routing is not None:
            body["routing"] = self.routing
        return body


def request_body(args: Any, messages: list[dict]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": args.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},  # the last chunk: usage with exact costs and the receipt
    }
    if args.temperature is not None:
        body["temperature"] = args.temperature
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    return body


def stream_reply(client: Client, body: dict, reply: Reply, write: Callable[[str], None] | None) -> Reply:
    events = client.stream("/v1/chat/completions", body)
    with contextlib.closing(events):  # an interrupt anywhere below still closes the connection at once
        for event in events:
            reply.id = event.get("id") or reply.id
            reply.model = event.get("model") or reply.model
            reply.created = event.get("created") or reply.created
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    reply.pieces.append(text)
                    if write is not None:
                        write(text)
                reply.finish_reason = choice.get("finish_reason") or reply.finish_reason
            if event.get("usage"):
                reply.usage = event["usage"]
            if event.get("routing"):
                reply.routing = event["routing"]
    return reply


def _writer(stream: TextIO) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


def _end_line(stream: TextIO, reply: Reply) -> None:
    """On a terminal, end the reply's last line so the shell prompt (or the next note) starts clean;
    a pipe gets the reply exactly."""
    if stream.isatty() and reply.pieces and not reply.text.endswith("\n"):
        stream.write("\n")
        stream.flush()


def _first_messages(args: Any) -> list[dict]:
    return [{"role": "system", "content": args.system}] if args.system else []


def cmd_chat(ctx: Context) -> int:
    args = ctx.args
    prompt = " ".join(args.prompt) if args.prompt else None
    if prompt is None:
        if sys.stdin.isatty():
            if ctx.json:
                raise CliError("--json needs a prompt, as an argument or on stdin.")
            return interactive(ctx)
        prompt = sys.stdin.read().rstrip("\r\n")
    if not prompt.strip():
        raise CliError("The prompt is empty.")
    messages = [*_first_messages(args), {"role": "user", "content": prompt}]
    reply = Reply()
    stdout = ctx.out.stdout
    try:
        stream_reply(ctx.client, request_body(args, messages), reply, None if ctx.json else _writer(stdout))
    except KeyboardInterrupt:
        _end_line(stdout, reply)
        ctx.out.note(STOPPED)
        return EXIT_INTERRUPTED
    except CliError:
        _end_line(stdout, reply)
        raise
    if ctx.json:
        ctx.out.json(reply.as_completion())
        return EXIT_OK
    _end_line(stdout, reply)
    ctx.out.note(usage_line(reply.usage))
    return EXIT_OK


def _ask(prompt: str, stdout: TextIO, stderr: TextIO) -> str:
    if stdout.isatty():
        return input(prompt)
    stderr.write(prompt)  # stdout is a file: it keeps only the replies
    stderr.flush()
    return input()


def interactive(ctx: Context) -> int:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and ↑ history for input())

    args, out = ctx.args, ctx.out
    messages = _first_messages(args)
    replies, stopped, tokens, cost = 0, 0, 0, Decimal(0)
    out.note(
        f"Chatting with {args.model} at {ctx.settings.base_url}. Enter sends; /reset forgets the conversation; "
        "Ctrl-C stops a reply; Ctrl-D, /exit or Ctrl-C at the prompt quits."
    )
    while True:
        try:
            line = _ask("> ", out.stdout, out.stderr)
        except (EOFError, KeyboardInterrupt):
            out.err.print()
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = _first_messages(args)
            out.note("Conversation forgotten.")
            continue
        messages.append({"role": "user", "content": line})
        reply = Reply()
        try:
            stream_reply(ctx.client, request_body(args, messages), reply, _writer(out.stdout))
        except KeyboardInterrupt:
            _end_line(out.stdout, reply)
            out.note(STOPPED)
            stopped += 1
        except CliError as exc:
            _end_line(out.stdout, reply)
            out.error(str(exc))
            if exc.exit_code in (EXIT_AUTH, EXIT_BALANCE):
                return exc.exit_code  # nothing more can be sent with this key or wallet
            if not reply.pieces:
                messages.pop()  # the message never got an answer; let it be typed again
                continue
        else:
            _end_line(out.stdout, reply)
            out.note(usage_line(reply.usage))
        if reply.pieces:  # what the person saw stays in the conversation, even a stopped reply
            messages.append({"role": "assistant", "content": reply.text})
        if reply.usage:
            replies += 1
            tokens += int(reply.usage.get("total_tokens") or 0)
            cost += Decimal(reply.usage.get("total_cost_usd") or 0)
    if replies:
        out.note(f"{replies} repl{'y' if replies == 1 else 'ies'} · {tokens:,} tokens · {usd(cost)}")
    if stopped:
        out.note(
            f"{stopped} stopped repl{'y' if stopped == 1 else 'ies'}, charged as produced (see `tollgate receipts`)"
        )
    return EXIT_OK
