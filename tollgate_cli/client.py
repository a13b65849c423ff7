"""A small synchronous HTTP client for Tollgate's public APIs. Every body is parsed with
`parse_float=Decimal`, so money (exact JSON numbers on the server) stays exact here too; every failure
becomes a `CliError` carrying the exit code the command ends with.

Exit codes: 0 ok, 1 usage or API error, 2 authentication (the key is missing, refused or lacks the
permission), 3 insufficient balance (or the key's spend cap), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tollgate_cli import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_AUTH = 2
EXIT_BALANCE = 3
EXIT_INTERRUPTED = 130

GRACE_HEADER = "X-Tollgate-Key-Grace-Ends-At"
# Streams can be quiet while upstream thinks (the server sends keep-alive comments every 15 s); upstream
# calls themselves are capped at 300 s by default.
TIMEOUT = httpx.Timeout(connect=10.0, read=310.0, write=60.0, pool=10.0)


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


class CliError(Exception):
    """Ends the command: `message` goes to stderr, `exit_code` to the shell."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, *, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.body = body  # the server's error envelope, printed as JSON under --json


class ApiError(CliError):
    def __init__(
        self, status: int, message: str, *, code: str | None, request_id: str | None, body: Any = None
    ) -> None:
        super().__init__(message, exit_code_for(status, code), body=body)
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        detail = ", ".join(part for part in (self.code, self.request_id) if part)
        return f"{self.message} ({detail})" if detail else self.message


def exit_code_for(status: int, code: str | None = None) -> int:
    if status in (401, 403) or code in ("invalid_api_key", "key_expired", "insufficient_scope"):
        return EXIT_AUTH
    if status == 402 or code in ("insufficient_balance", "spend_cap_exceeded"):
        return EXIT_BALANCE
    return EXIT_ERROR


def error_from_body(status: int, body: Any, fallback: str) -> ApiError:
    """OpenAI's envelope (`/v1`: message, type, param, code) and the management API's (code, message,
    param) both carry `error.message`; anything else (a proxy's HTML page) is summarised."""
    error = body.get("error") if isinstance(body, dict) else None
    request_id = body.get("request_id") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or fallback)
        code = error.get("code") or error.get("type")
        return ApiError(status, message, code=str(code) if code else None, request_id=request_id, body=body)
    return ApiError(status, fallback, code=None, request_id=request_id, body=body)


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The `data` of each server-sent event (multi-line data joined with newlines); comments (the
    server's keep-alives) and other fields are skipped."""
    buffer: list[str] = []
    for line in lines:
        if line == "":
            if buffer:
                yield "\n".join(buffer)
                buffer = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            buffer.append(value.removeprefix(" "))
    if buffer:
        yield "\n".join(buffer)


class Client:
    def __init__(self, base_url: str, api_key: str | None, *, timeout: httpx.Timeout = TIMEOUT) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.grace_ends_at: str | None = None  # set when the key is an old secret in its rotation grace window
        headers = {"User-Agent": f"tollgate-cli/{__version__}", "Accept": "application/json"}
        self._http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        if not self.api_key:
            raise CliError("Not logged in: run `tollgate login` or set TOLLGATE_API_KEY.", EXIT_AUTH)
        return {"Authorization": f"Bearer {self.api_key}"}

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _unreachable(self, exc: httpx.HTTPError) -> CliError:
        if isinstance(exc, httpx.TimeoutException):
            return CliError(f"{self.base_url} did not answer in time ({type(exc).__name__}).")
        if isinstance(exc, httpx.ConnectError):
            return CliError(f"Cannot reach {self.base_url}: {exc}. Is the base URL right? (tollgate login --base-url)")
        return CliError(f"The connection to {self.base_url} failed: {exc or type(exc).__name__}.")

    def _error(self, response: httpx.Response) -> ApiError:
        fallback = f"HTTP {response.status_code} {response.reason_phrase} from {response.request.url}"
        try:
            body = loads(response.content)
        except ValueError:
            body = None
        return error_from_body(response.status_code, body, fallback)

    def _seen(self, response: httpx.Response) -> None:
        if GRACE_HEADER in response.headers:
            self.grace_ends_at = response.headers[GRACE_HEADER]

    def request(self, method: str, path: str, *, body: Any = None, params: dict | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, self._url(path), json=body, params=params, headers=self._auth())
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self._seen(response)
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return loads(response.content)
        except ValueError:
            raise CliError(f"{response.request.url} answered {response.status_code} with a body that is not JSON.")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body if body is not None else {})

    def stream(self, path: str, body: dict) -> Iterator[dict]:
        """POST a streaming request and yield each event's JSON until `[DONE]`. Closing the iterator
        (or Ctrl-C while it waits) closes the connection, which the server sees as the client leaving."""
        try:
            with self._http.stream(
                "POST", self._url(path), json=body, headers={**self._auth(), "Accept": "text/event-stream"}
            ) as response:
                self._seen(response)
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                for data in sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        return
                    try:
                        event = loads(data)
                    except ValueError:
                        raise CliError(f"The stream sent an event that is not JSON: {data[:80]!r}.") from None
                    if isinstance(event, dict) and "error" in event:
                        # An error after the stream began (e.g. upstream broke mid-way): the status is gone.
                        raise error_from_body(502, event, "The stream ended with an error.")
                    yield event
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        raise CliError("The stream ended before [DONE]: the reply may be incomplete.")

    def download(self, url: str, dest: Path) -> int:
        """Fetch a result link (anonymous-read: no key is sent, so it never leaks to a storage host) into
        `dest`, written whole or not at all. Returns the number of bytes."""
        absolute = urljoin(self.base_url + "/", url)
        if urlsplit(absolute).scheme not in ("http", "https"):
            raise CliError(f"Cannot download {url[:100]!r}: not an http(s) link.")
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        size = 0
        try:
            with self._http.stream("GET", absolute, headers={"Accept": "*/*"}) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response)
                with tmp.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        size += len(chunk)
            os.replace(tmp, dest)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        except OSError as exc:
            raise CliError(f"Cannot write {dest}: {exc.strerror}.") from None
        finally:
            tmp.unlink(missing_ok=True)
        return size
