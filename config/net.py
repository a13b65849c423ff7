"""Client addresses: the one rule every part of Tollgate uses (key IP allow-lists, rate limits on log-ins,
audit rows, the metrics allow-list). X-Forwarded-For is believed only from the proxies in TRUSTED_PROXIES."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.conf import settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs or bare addresses (IPv4 and IPv6); raises ValueError on a bad entry."""
    return tuple(ipaddress.ip_network(str(entry).strip(), strict=False) for entry in entries)


@lru_cache(maxsize=8)
def _trusted_networks(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return parse_networks(p for p in proxies if p)


def _is_trusted_proxy(ip: str) -> bool:
    proxies = tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ())
    if not proxies:
        return False
    try:
        address = normalise(ipaddress.ip_address(ip))
    except ValueError:
        return False
    return any(address in net for net in _trusted_networks(proxies))


def _client_ip(remote: str | None, forwarded_for: str | None) -> str | None:
    """Walk X-Forwarded-For from the right while hops are trusted proxies; the first other hop is the client."""
    if not remote or not forwarded_for or not _is_trusted_proxy(remote):
        return remote
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    client = remote
    for hop in reversed(hops):
        client = hop
        if not _is_trusted_proxy(hop):
            break
    return client


def client_ip_from_request(request) -> str | None:
    return _client_ip(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def client_ip_from_scope(asgi_scope: dict) -> str | None:
    client = asgi_scope.get("client")
    remote = client[0] if client else None
    forwarded = None
    for name, value in asgi_scope.get("headers", ()):
        if name.lower() == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
            break
    return _client_ip(remote, forwarded)


def normalise(address: ipaddress.IPv4Address | ipaddress.IPv6Address):
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
