"""Fuzzing the served OpenAPI documents with schemathesis against the live server (tests/live_server.py): every
operation of /v1/openapi.json and /api/v1/schema/ gets a fixed, deterministic budget of generated requests
(hypothesis derandomized: the same examples on every run), and every response must be no 5xx, of a status and
content type the document declares, and of the declared schema."""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class FuzzRun:
    operations: int = 0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def show(self) -> str:
        return f"{self.operations} operations, {self.requests} requests, statuses {sorted(self.statuses.items())}\n" + (
            "\n\n".join(self.failures)
        )


def fuzz(
    schema_url: str,
    base_url: str,
    headers: dict[str, str],
    *,
    budget: int,
    known: Mapping[str, str] | None = None,
    exclude=(),
) -> FuzzRun:
    """Every operation of the document at `schema_url`, `budget` examples each, sent to `base_url`. Path
    parameters named in `known` take that real id in three examples of four (the others stay generated, mostly
    404s), so the operations are reached beyond their lookups."""
    known = known or {}
    schema = schemathesis.openapi.from_url(schema_url, headers=headers)
    run = FuzzRun()
    for result in schema.get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" in exclude:
            continue
        run.operations += 1

        @given(case=operation.as_strategy(), real=st.integers(0, 3))
        @hsettings(
            max_examples=budget,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def one(case, real: int) -> None:
            for name in case.path_parameters or {}:
                if real and name in known:
                    case.path_parameters[name] = known[name]
            response = case.call(base_url=base_url, headers=headers)
            run.requests += 1
            run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=CHECKS)

        try:
            one()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation's failures are reported
            run.failures.append(f"{operation.method.upper()} {operation.path}: {_summary(exc)}")
    return run


def _summary(exc: BaseException) -> str:
    text = str(exc)
    return text[:2500]


_LOOPBACK = ("localhost", "testserver")


def _is_loopback(host) -> bool:
    if host is None or host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Generated webhook URLs must never make this process look a name up or connect anywhere but loopback
    (the live server runs in this process, so its webhook deliveries are held here too)."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host.decode() if isinstance(host, bytes) else host):
            raise socket.gaierror(socket.EAI_NONAME, "fuzz tests resolve loopback names only")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise ConnectionRefusedError("fuzz tests connect to loopback only")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


def report(name: str, run: FuzzRun) -> None:
    """The figures the README's Reliability table quotes (shown with pytest -s)."""
    print(f"\n[reliability] {name}: operations={run.operations}, requests={run.requests}, statuses={run.statuses}")


def csrf_token() -> str:
    return secrets.token_hex(16)  # 32 characters: what Django accepts as an unmasked CSRF secret
