"""Where a webhook may be sent (server-side request forgery protection).

In production an endpoint URL must be https and its host must resolve only to public addresses: never
loopback, private, link-local, multicast, reserved or otherwise non-global ones (including IPv6 forms that
embed such an IPv4 address). It is checked when the URL is registered and again at every delivery, because
DNS can change in between; the delivery then connects to the address it checked (webhooks.delivery pins the
connection to it), so a second lookup cannot swap in another one (DNS rebinding).

`WEBHOOKS_ALLOW_PRIVATE` (default: DEBUG) lifts the address rule and allows plain http, for local
development and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(Exception):
    """A URL webhooks may not call; `message` is safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str  # without brackets for IPv6 literals
    port: int


def allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE", False))


def parse(url: str) -> Target:
    """Check the URL's form (no lookup). Raises UnsafeURL."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURL("invalid_url", "Give the endpoint a URL, e.g. https://example.com/webhooks/tollgate.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL("invalid_url", f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("invalid_url", "That is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURL("invalid_url", "The URL must start with https:// and name a host.")
    if scheme == "http" and not allow_private():
        raise UnsafeURL("https_required", "Webhook URLs must use https://.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("invalid_url", "The URL must not contain a user name or password.")
    if parts.fragment:
        raise UnsafeURL("invalid_url", "The URL must not contain a #fragment.")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeURL("invalid_url", "The URL must not contain spaces or control characters.")
    return Target(url=url, scheme=scheme, host=parts.hostname, port=port or (443 if scheme == "https" else 80))


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv6Address):
        return address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not reach this address, or None when it is a public one."""
    for candidate in (_embedded_ipv4(address), address):  # an embedded IPv4 address says more than its wrapper
        if candidate is None:
            continue
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_reserved or candidate.is_unspecified:
            return "a reserved address"
        if candidate.is_private:
            return "a private address"
        if not candidate.is_global:
            return "a reserved address"
    return None


def resolve(target: Target) -> str:
    """The address to connect to: every address the host resolves to must be allowed. Raises UnsafeURL."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeURL("unresolvable_host", f"The host {target.host} does not resolve.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeURL("unresolvable_host", f"The host {target.host} does not resolve.")
    if not allow_private():
        for raw in addresses:
            why = refusal(ipaddress.ip_address(raw.split("%", 1)[0]))
            if why:
                raise UnsafeURL(
                    "forbidden_address",
                    f"The host {target.host} resolves to {why} ({raw}), which webhooks may not call.",
                )
    return addresses[0]


def check(url: str) -> Target:
    """Registration: the URL's form, then its addresses."""
    target = parse(url)
    resolve(target)
    return target
