"""Who a request came from: REMOTE_ADDR, or X-Forwarded-For only as far as it came through TRUSTED_PROXIES (the
request log records it; jetsonsite.middleware believes X-Forwarded-Proto on the same terms)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def is_trusted_proxy(address: Address) -> bool:
    return any(address in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def parse_ip(value: str) -> Address | None:
    """An address as REMOTE_ADDR or a forwarded hop writes it ("1.2.3.4", "1.2.3.4:5", "[::1]:5"), or None."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[::1]:1234"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "1.2.3.4:1234"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_ip(meta: Mapping[str, Any]) -> str | None:
    """The client's address: REMOTE_ADDR, or X-Forwarded-For when (and only as far as) it came via trusted proxies."""
    remote = parse_ip(str(meta.get("REMOTE_ADDR") or ""))
    if remote is None:
        return None
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    if not forwarded or not is_trusted_proxy(remote):
        return str(remote)
    # Walk from the nearest hop outwards; the first address not one of our proxies is the client.
    # Anything further left was written by the client itself and cannot be believed.
    hop = remote
    for part in reversed(forwarded.split(",")):
        address = parse_ip(part)
        if address is None:
            break
        hop = address
        if not is_trusted_proxy(hop):
            break
    return str(hop)
