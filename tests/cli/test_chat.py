"""`tollgate chat`: the reply streams to stdout and nothing else goes there; tokens and the exact cost go
to stderr; --json is one parsed completion; Ctrl-C stops a stream cleanly and the server charges what was
produced; on a terminal without a prompt it is a conversation with history."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from decimal import Decimal

import pytest

from billing import money
from billing.models import Hold, Receipt, Wallet
from billing.reconcile import find_discrepancies
from gateway import catalog
from gateway.models import Provider, Route
from gateway.price_book import create_model
from tests.cli.conftest import SCRIPT, cli_env, settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_streamed_chat_prints_exactly_the_reply_and_its_exact_cost_on_stderr(cli, acme, logged_in):
    done = cli("chat", "-m", "demo-chat", "echo: Hello, CLI! Ünïcode too.")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, CLI! Ünïcode too."  # byte for byte: no banner, no newline added on a pipe
    settled()
    receipt = Receipt.objects.get(team=acme)
    assert receipt.streamed
    assert receipt.public_id in done.stderr
    assert money.usd(receipt.total_cost_nusd) in done.stderr
    assert f"{receipt.completion_tokens} completion" in done.stderr
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * money.NUSD_PER_USD - receipt.total_cost_nusd


def test_the_prompt_is_read_from_stdin_with_the_system_prompt_and_max_tokens(cli, acme, logged_in):
    done = cli("chat", "-m", "demo-chat-mini", "--system", "Be brief.", "--max-tokens", "12", input="Tell me a story\n")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('You said: "Tell me a story"')  # the simulator quotes the last user message
    settled()
    receipt = Receipt.objects.get(team=acme)
    assert receipt.completion_tokens == 12
    assert receipt.model_requested == "demo-chat-mini"

    shorter = cli("chat", "-m", "demo-chat-mini", "--max-tokens", "12", input="Tell me a story\n")
    settled()
    without_system = Receipt.objects.filter(team=acme).latest("created_at")
    assert shorter.returncode == 0
    assert without_system.prompt_tokens < receipt.prompt_tokens  # the system prompt was sent


def test_chat_json_is_one_completion_with_exact_costs(cli, acme, logged_in):
    done = cli("chat", "-m", "demo-chat", "--json", "echo: forty-two")

    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout, parse_float=Decimal)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "forty-two"}
    assert body["choices"][0]["finish_reason"] == "stop"
    settled()
    receipt = Receipt.objects.get(public_id=body["usage"]["receipt_id"])
    assert body["usage"]["total_cost_usd"] == Decimal(money.exact(receipt.total_cost_nusd))
    assert body["usage"]["completion_tokens"] == receipt.completion_tokens
    assert body["routing"]["provider"] == "simulator"


def test_an_unknown_model_exits_1_with_the_envelopes_message(cli, acme, logged_in):
    done = cli("chat", "-m", "no-such-model", "hi")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no-such-model" in done.stderr
    assert "model_not_found" in done.stderr
    assert not Receipt.objects.filter(team=acme, total_cost_nusd__gt=0).exists()


def test_usage_errors_exit_1(cli, logged_in):
    assert cli("chat", "hi").returncode == 1  # no -m
    assert cli("chat", "-m", "demo-chat", "--max-tokens", "0", "hi").returncode == 1
    assert cli("no-such-command").returncode == 1
    empty = cli("chat", "-m", "demo-chat", input="\n")
    assert empty.returncode == 1
    assert "empty" in empty.stderr


@pytest.fixture
def slow_model(acme) -> str:
    """A chat model on a simulator that produces 2 tokens a second: its reply (15 to 50 tokens) takes 7 s or more,
    long enough to interrupt even on a loaded machine."""
    provider = Provider.objects.create(slug="slow-simulator", kind="simulator", options={"tokens_per_second": 2})
    model = create_model("slow-chat", input_price_nusd=1_000, output_price_nusd=2_000)
    Route.objects.create(model=model, provider=provider, upstream_model="sim", priority="primary")
    catalog.invalidate()
    return model.public_id


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_stream_cleanly_and_the_server_charges_what_was_produced(home, acme, logged_in, slow_model):
    proc = subprocess.Popen(
        [str(SCRIPT), "chat", "-m", slow_model, "--max-tokens", "400", "Tell me everything"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(home),
        # As at a terminal: a suite run in the background by a non-interactive shell inherits SIGINT ignored, and
        # a process started with SIGINT ignored gets no KeyboardInterrupt (two CI runs saw the stream end, exit 0).
        preexec_fn=_default_sigint,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no reply began within 20 s"
        first = os.read(proc.stdout.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    stdout, stderr = (first + rest).decode(), err.decode()

    assert proc.returncode == 130
    opening = 'You said: "Tell me everything".'
    assert stdout and stdout[: len(opening)] == opening[: len(stdout)]  # what arrived before Ctrl-C, as it came
    assert "Traceback" not in stderr
    assert "Stopped" in stderr
    receipt = None
    for _ in range(100):  # bounded: 10 s for the server to notice the disconnect and settle
        receipt = Receipt.objects.filter(team=acme, model_requested=slow_model).first()
        if receipt is not None:
            break
        time.sleep(0.1)
    assert receipt is not None and receipt.status == "partial"
    assert 0 < receipt.completion_tokens < 400
    assert not Hold.objects.filter(wallet__team=acme, status="open").exists()
    assert find_discrepancies() == []


def _read_until(fd: int, buffer: bytearray, marker: bytes, count: int, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while buffer.count(marker) < count:
        left = deadline - time.monotonic()
        assert left > 0, (
            f"waited {timeout} s for {marker!r} x{count}; the terminal shows:\n{buffer.decode(errors='replace')}"
        )
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the program ended and closed the terminal
                chunk = b""
            if not chunk:
                break
            buffer.extend(chunk)
    return buffer.decode(errors="replace")


def test_without_a_prompt_on_a_terminal_it_is_a_conversation_with_history(home, acme, logged_in):
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(SCRIPT), "chat", "-m", "demo-chat"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=cli_env(home, TERM="dumb"),
        close_fds=True,
    )
    os.close(terminal)
    screen = bytearray()
    try:
        _read_until(controller, screen, b"> ", 1)
        os.write(controller, b"echo: the first answer\n")
        _read_until(controller, screen, b"> ", 2)
        os.write(controller, b"echo: the second answer\n")
        _read_until(controller, screen, b"> ", 3)
        os.write(controller, b"\x04")  # Ctrl-D at the prompt ends the conversation
        text = _read_until(controller, screen, b"2 replies", 1)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)

    assert "the first answer" in text and "the second answer" in text
    settled()
    first, second = Receipt.objects.filter(team=acme).order_by("created_at")
    # The second request carried the whole conversation: both questions and the first answer.
    assert second.prompt_tokens > first.prompt_tokens + 5
    assert money.usd(first.total_cost_nusd + second.total_cost_nusd) in text
