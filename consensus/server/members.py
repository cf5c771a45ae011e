"""Who may change membership over HTTP, and which addresses can be members at all.

A member is dialed over the Raft peer protocol, which is pickle: dialing a stranger in cleartext
hands it code execution on the leader. So an address must be ``host:port`` of a kind a peer can
really listen on (no port 0, no wildcard, multicast or broadcast host, no half-numeric host
that the resolver would read as something else: ``0`` is ``0.0.0.0``), and a member beyond
loopback is accepted only when the node has a peer secret (``--secret-file``). On a server
that listens beyond loopback, membership changes need the bearer token: without
``--token-file`` they are refused outright, ``--insecure-http`` or not.
"""

from __future__ import annotations

import ipaddress
import re

from consensus.engine import is_loopback
from consensus.errors import InvalidRequest, Rejected, Unauthorized

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRequest(f"a member address is HOST:PORT with a port from 1 to 65535, not {address[:300]!r}")
    return host, int(port)


def _check_ip(address: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    mapped = getattr(ip, "ipv4_mapped", None)
    for candidate in (ip, mapped) if mapped is not None else (ip,):
        if candidate.is_unspecified or candidate.is_multicast or candidate == ipaddress.IPv4Address("255.255.255.255"):
            raise InvalidRequest(f"{address} is not an address a peer can listen on (wildcard, multicast or broadcast)")


def _check_name(address: str, host: str) -> None:
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidRequest(f"{address[:300]!r} does not name a host: use an IP address or a DNS name")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # The resolver reads "0", "127.1" or "0x7f.1" as IPv4 addresses ("0" is 0.0.0.0).
        raise InvalidRequest(f"{address} is not a full IPv4 address (write all four parts)")


def check_member_address(address: str) -> None:
    """Raise ``InvalidRequest`` unless ``address`` is ``host:port`` of a host a peer can listen on."""
    host, _ = _host_port(address)
    if host.startswith("[") and host.endswith("]"):
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidRequest(f"{address[:300]!r} has no valid IPv6 address in its brackets") from None
        _check_ip(address, ip)
        return
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        _check_name(address, host)
        return
    _check_ip(address, ip)


def check_new_member(address: str, *, secret: str | None, members: set[str]) -> None:
    """Raise unless ``address`` may join: a reachable kind, not yet a member, loopback or secured."""
    check_member_address(address)
    if address in members:
        raise Rejected(f"{address} is already a member")
    if secret is None and not is_loopback(address):
        raise InvalidRequest(
            f"{address} is not a loopback address: this node has no peer secret (--secret-file), and the peer "
            "protocol without one lets whoever answers at that address run code on every member"
        )


def check_membership_caller(*, public: bool, token: str | None) -> None:
    """Refuse a membership change on a server beyond loopback that has no bearer token to check."""
    if public and token is None:
        raise Unauthorized(
            "membership changes over HTTP beyond loopback need --token-file; this node serves HTTP without one"
        )
