"""The static shard map: which Raft group holds a key, and who the members of each group are.

Every node and every client loads the same map (``consensus serve --shards FILE``,
``ShardMap.load(FILE)``). The file is JSON::

    {
      "groups": {
        "g1": [{"raft": "127.0.0.1:7001", "http": "http://127.0.0.1:8001"}, ...],
        "g2": [...]
      },
      "prefixes": {"users/": "g1", "orders/": "g2"},   # optional: the longest matching prefix wins
      "hash": ["g1", "g2"]                             # optional: a key no prefix matches goes to
    }                                                  # hash[crc32(key) % len(hash)]; default: all groups

A key's group depends only on the key and the map, so every node routes a key the same way, and
keys move only when the map changes (the map is static: changing it means a new cluster).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["GROUP_NAME_PATTERN", "DEFAULT_GROUP", "GroupMember", "ShardMap", "ShardMapError"]

GROUP_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"
DEFAULT_GROUP = "default"  # the name of the only group of a node started without --group
_ADDRESS = re.compile(r"[A-Za-z0-9.-]{1,253}:\d{1,5}")
_URL = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(:\d{1,5})?/?")


class ShardMapError(ValueError):
    """The shard map is malformed; the message names what is wrong."""


@dataclass(frozen=True)
class GroupMember:
    raft: str  # the member's Raft address (its identity in the group)
    http: str  # the HTTP base URL of the process hosting it


@dataclass(frozen=True)
class ShardMap:
    groups: Mapping[str, tuple[GroupMember, ...]]  # in the file's order
    prefixes: tuple[tuple[str, str], ...] = ()  # (prefix, group), longest prefix first
    hash_groups: tuple[str, ...] = ()

    # -- routing -----------------------------------------------------------------------------

    def group_of(self, key: str) -> str:
        """Return the group that holds ``key``."""
        for prefix, group in self.prefixes:
            if key.startswith(prefix):
                return group
        return self.hash_groups[zlib.crc32(key.encode("utf-8")) % len(self.hash_groups)]

    def groups_of_prefix(self, prefix: str) -> list[str]:
        """Return every group that may hold a key starting with ``prefix`` (in map order)."""
        found: set[str] = set()
        covering = next((g for p, g in self.prefixes if prefix.startswith(p)), None)
        found.update([covering] if covering is not None else self.hash_groups)
        found.update(g for p, g in self.prefixes if p.startswith(prefix))  # longer rules inside it
        return [g for g in self.groups if g in found]

    def members(self, group: str) -> tuple[GroupMember, ...]:
        if group not in self.groups:
            raise KeyError(group)
        return self.groups[group]

    def peers(self, group: str) -> dict[str, str]:
        """Return ``{raft address: HTTP URL}`` of ``group``'s members."""
        return {m.raft: m.http for m in self.members(group)}

    # -- files -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> "ShardMap":
        """Check and build a map from its JSON form; raise ``ShardMapError`` naming the first fault."""
        if not isinstance(data, dict) or set(data) - {"groups", "prefixes", "hash"}:
            raise ShardMapError('a shard map is an object with "groups" and optionally "prefixes" and "hash"')
        raw_groups = data.get("groups")
        if not isinstance(raw_groups, dict) or not raw_groups:
            raise ShardMapError('"groups" must map at least one group name to its members')
        groups: dict[str, tuple[GroupMember, ...]] = {}
        seen: set[str] = set()
        for name, members in raw_groups.items():
            if not re.fullmatch(GROUP_NAME_PATTERN, name):
                raise ShardMapError(f"group name {name!r} must match {GROUP_NAME_PATTERN}")
            if not isinstance(members, list) or not members:
                raise ShardMapError(f"group {name} needs a list of members")
            parsed = []
            for member in members:
                if not isinstance(member, dict) or set(member) != {"raft", "http"}:
                    raise ShardMapError(f'each member of group {name} is {{"raft": "HOST:PORT", "http": "http://HOST:PORT"}}')
                raft, http = member["raft"], member["http"]
                if not isinstance(raft, str) or not _ADDRESS.fullmatch(raft):
                    raise ShardMapError(f"member {raft!r} of group {name}: raft must be HOST:PORT")
                if not isinstance(http, str) or not _URL.fullmatch(http):
                    raise ShardMapError(f"member {raft} of group {name}: http must be http://HOST:PORT")
                if raft in seen:  # one Raft port is one engine of one group
                    raise ShardMapError(f"Raft address {raft} appears twice in the map")
                seen.add(raft)
                parsed.append(GroupMember(raft, http.rstrip("/")))
            groups[name] = tuple(parsed)
        raw_prefixes = data.get("prefixes", {})
        if not isinstance(raw_prefixes, dict):
            raise ShardMapError('"prefixes" must map key prefixes to group names')
        for prefix, group in raw_prefixes.items():
            if group not in groups:
                raise ShardMapError(f"prefix {prefix!r} names unknown group {group!r}")
        prefixes = tuple(sorted(raw_prefixes.items(), key=lambda item: (-len(item[0]), item[0])))
        hash_groups = data.get("hash", list(groups))
        if not isinstance(hash_groups, list) or not hash_groups or any(g not in groups for g in hash_groups):
            raise ShardMapError('"hash" must be a non-empty list of group names from "groups"')
        return cls(groups=groups, prefixes=prefixes, hash_groups=tuple(hash_groups))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "groups": {name: [{"raft": m.raft, "http": m.http} for m in members] for name, members in self.groups.items()},
            "hash": list(self.hash_groups),
        }
        if self.prefixes:
            data["prefixes"] = dict(self.prefixes)
        return data

    @classmethod
    def load(cls, path: str | Path) -> "ShardMap":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ShardMapError(f"cannot read shard map {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ShardMapError(f"shard map {path} is not JSON: {exc}") from None
        return cls.from_dict(data)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def single(cls, peers: Mapping[str, str], group: str = DEFAULT_GROUP) -> "ShardMap":
        """Return the map of one group (every key in it): what a node without --shards uses."""
        return cls(groups={group: tuple(GroupMember(r, h) for r, h in peers.items())}, hash_groups=(group,))

    def group_names(self) -> Sequence[str]:
        return list(self.groups)
