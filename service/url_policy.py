"""Which remote URLs the server may fetch (FUSIONSERVE_URL_ALLOW_HOSTS), and the address it connects to.

An entry is `host` (https on 443), `host:port` (https on that port), `http://host` (plain http on 80) or
`http://host:port`; `https://host[:port]` says the default outright. A URL is allowed only when its scheme,
host and port are one entry's. Its host name is then resolved here, and an address that is not public
(private, loopback, link-local, shared, reserved, multicast, unspecified, or one of those inside an IPv6
transition address) is refused unless some entry names that address itself: an allow-listed name that an
attacker's DNS, or a stale record, points at 169.254.169.254 or 127.0.0.1 reaches nothing. The caller connects
to the address checked here, so a name cannot resolve to one address for the check and another for the connect.
Pure (no settings, no HTTP client): settings.py validates the entries with `parse_entry`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"https": 443, "http": 80}
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the IPv4 address is the last 32 bits


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # lower case; an IPv6 address without brackets, compressed
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _canonical_host(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower().rstrip(".")


def parse_entry(entry: str) -> Origin:
    """One allow-list entry as an Origin; ValueError saying what is wrong with it."""
    text = entry.strip()
    parts = urlsplit(text if "://" in text else "https://" + text)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{entry!r}: only http:// or https:// hosts can be allowed")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{entry!r}: name a host, optionally with a scheme and a port, nothing else")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"{entry!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{entry!r}: no host")
    return Origin(parts.scheme, _canonical_host(parts.hostname), port)


def origin_of(scheme: str, host: str, port: int | None) -> Origin:
    return Origin(scheme, _canonical_host(host), port or DEFAULT_PORTS[scheme])


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)


def public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not ip.is_global or ip.is_multicast:
        return False
    inner = _embedded_ipv4(ip) if ip.version == 6 else None
    return inner is None or public_address(inner)


class AddressRefused(Exception):
    """The host resolved only to addresses that may not be fetched; the message is for the log."""


async def pinned_address(host: str, port: int, named: set[str]) -> str:
    """The first address `host` resolves to that is public or named in the allow-list (`named`: the entries'
    literal addresses); AddressRefused when none is, OSError when the name does not resolve."""
    loop = asyncio.get_running_loop()
    answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [ipaddress.ip_address(sockaddr[0].split("%")[0]) for *_, sockaddr in answers]
    for ip in addresses:
        if ip.compressed in named or public_address(ip):
            return ip.compressed
    raise AddressRefused(f"{host} resolves only to non-public addresses ({', '.join(map(str, addresses))})")


def literal_addresses(origins: list[Origin]) -> set[str]:
    named = set()
    for origin in origins:
        try:
            named.add(ipaddress.ip_address(origin.host).compressed)
        except ValueError:
            continue  # a host name: it names no address
    return named


@functools.lru_cache(maxsize=16)
def allowed_origins(entries: tuple[str, ...]) -> tuple[Origin, ...]:
    """An allow-list parsed once per distinct list (every remote URL of every request is checked against it)."""
    return tuple(parse_entry(entry) for entry in entries)


@functools.lru_cache(maxsize=16)
def allowed_literal_addresses(entries: tuple[str, ...]) -> frozenset[str]:
    return frozenset(literal_addresses(list(allowed_origins(entries))))
