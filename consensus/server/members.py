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
from consensus.server.schema import Schema, explain_format

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# A first octet a peer can listen on: not 0.0.0.0/8 ("this network", "0" is 0.0.0.0), not
# multicast (224/4), not reserved or broadcast (240/4).
_FIRST_OCTET = r"(22[0-3]|2[01][0-9]|1[0-9]{2}|[1-9][0-9]?)"
_IPV4 = rf"{_FIRST_OCTET}(\.{_OCTET}){{3}}"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The last label starts with a letter: the resolver reads "127.1" or "0x7f.1" as IPv4 addresses.
_NAME = rf"({_LABEL}\.)*[A-Za-z]([A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
MEMBER_PATTERN = rf"({_IPV4}|{_NAME}):{_PORT}"
_MEMBER = re.compile(MEMBER_PATTERN)

MEMBER_ADDRESS_SCHEMA: Schema = {
    "type": "string",
    "format": "raft-member",
    "maxLength": 255,  # so the host is at most 253 characters, as DNS allows
    "pattern": MEMBER_PATTERN,
    "description": "a new member's Raft address, HOST:PORT: an IPv4 address a peer can listen on (no 0.x, "
    "multicast or broadcast) or a DNS name; loopback unless the node has a peer secret",
}


def _why_not(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not re.fullmatch(_PORT, port):
        return "a member address is HOST:PORT with a port from 1 to 65535"
    if host.startswith("["):
        return "IPv6 members are not supported: the engine (pysyncobj) cannot dial a bracketed address"
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        if host.rsplit(".", 1)[-1][:1].isdigit():
            return "it is not a full IPv4 address, and the resolver reads it as one ('0' is 0.0.0.0): write all four parts"
        return "it does not name a host: use an IPv4 address or a DNS name"
    if ip.is_multicast:
        return "it is a multicast address"
    return "no peer can listen there (0.x is 'this network' and 0.0.0.0 the wildcard; 240.x and up are reserved or broadcast)"


explain_format("raft-member", _why_not)


def check_member_address(address: str) -> None:
    """Raise ``InvalidRequest`` unless ``address`` is ``host:port`` of a host a peer can listen on."""
    if len(address) > 255 or not _MEMBER.fullmatch(address):
        raise InvalidRequest(f"{address[:100]!r} cannot be a member: {_why_not(address)}")


def check_new_member(address: str, *, secret: str | None, members: set[str]) -> None:
    """Raise unless ``address`` may join: a reachable kind, not yet a member, loopback or secured."""
    check_member_address(address)
    if address in members:
        raise Rejected(f"{address} is already a member")
    if secret is None and not is_loopback(address):
        # Well-formed, refused as this node is configured: a definite refusal, not a bad request.
        raise Rejected(
            f"{address} is not a loopback address: this node has no peer secret (--secret-file), and the peer "
            "protocol without one lets whoever answers at that address run code on every member"
        )


def check_membership_caller(*, public: bool, token: str | None) -> None:
    """Refuse a membership change on a server beyond loopback that has no bearer token to check."""
    if public and token is None:
        raise Unauthorized(
            "membership changes over HTTP beyond loopback need --token-file; this node serves HTTP without one"
        )
