"""Which hosts may serve an output: a provider's answer must not point downloads inward.

Output hosts on loopback, link-local or private addresses are refused (every address the
name resolves to is checked, at every redirect: `check_host`) unless the provider's own base
URL is on those addresses (the emulator serves its videos itself: `trusted_addresses`) or
``ABEBEATS_LAB_ALLOW_PRIVATE_OUTPUTS=1`` opts in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import urllib.parse

from abebeats_lab.errors import DownloadError

__all__ = ["ALLOW_PRIVATE_ENV", "IPAddress", "check_host", "trusted_addresses"]

ALLOW_PRIVATE_ENV = "ABEBEATS_LAB_ALLOW_PRIVATE_OUTPUTS"
"""Set to 1 to fetch outputs from loopback, link-local or private addresses."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


async def _addresses(host: str, port: int) -> set[IPAddress]:
    """Every address ``host`` resolves to (a literal address is itself); empty if it does not
    resolve here (a proxy may resolve it: then the fetch decides)."""
    try:
        return {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return set()
    return {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}


def _internal(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


async def _internal_addresses(url: str) -> set[IPAddress]:
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return set()
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 443)
    return {a for a in await _addresses(parts.hostname, port) if _internal(a)}


async def trusted_addresses(origin: str | None) -> set[IPAddress] | None:
    """The internal addresses an output may come from: those of the provider's base URL
    ``origin`` (the emulator); None for any: no ``origin`` (the caller chose the URL itself),
    or ``ABEBEATS_LAB_ALLOW_PRIVATE_OUTPUTS=1``."""
    if origin is None or os.environ.get(ALLOW_PRIVATE_ENV, "").strip() in ("1", "true", "yes"):
        return None
    return await _internal_addresses(origin)


async def check_host(url: str, trusted: set[IPAddress] | None) -> None:
    """Refuse ``url`` when its host resolves to an internal address not in ``trusted``
    (None: every address is allowed)."""
    if trusted is None:
        return
    refused = await _internal_addresses(url) - trusted
    if refused:
        host = urllib.parse.urlsplit(url).hostname
        shown = ", ".join(sorted(str(a) for a in refused))
        raise DownloadError(
            f"refusing to fetch an output from {host} ({shown}): a loopback, link-local or "
            f"private address; set {ALLOW_PRIVATE_ENV}=1 to allow it"
        )
