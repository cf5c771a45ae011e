"""The static shard map: routing is a pure function of the key and the map; bad maps are refused."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import pytest

from consensus.shards import ShardMap, ShardMapError

ROOT = Path(__file__).resolve().parents[2]


def _doc_map() -> ShardMap:
    text = (ROOT / "docs" / "sharding.md").read_text()
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block is not None
    return ShardMap.from_dict(json.loads(block.group(1)))


def test_the_documented_map_routes_prefixes_first_then_by_hash():
    shards = _doc_map()
    assert shards.group_of("users/alice") == "g1"
    for key in ("a", "b", "orders/1", "usersx"):
        assert shards.group_of(key) == ["g1", "g2"][zlib.crc32(key.encode()) % 2]
    assert shards.peers("g2") == {"127.0.0.1:7003": "http://127.0.0.1:8001", "127.0.0.1:7004": "http://127.0.0.1:8002"}
    assert ShardMap.from_dict(shards.to_dict()) == shards


def test_longest_prefix_wins_and_prefix_scans_name_every_group_they_may_touch():
    members = {g: [{"raft": f"127.0.0.1:{7000 + i}", "http": "http://127.0.0.1:8001"}] for i, g in enumerate("abc")}
    shards = ShardMap.from_dict({"groups": members, "prefixes": {"x/": "a", "x/y/": "b"}, "hash": ["c"]})
    assert [shards.group_of(k) for k in ("x/1", "x/y/1", "x/yz", "z")] == ["a", "b", "a", "c"]
    assert shards.groups_of_prefix("x/y/") == ["b"]
    assert shards.groups_of_prefix("x/") == ["a", "b"]
    assert shards.groups_of_prefix("") == ["a", "b", "c"]


@pytest.mark.parametrize("data, phrase", [
    ([], "an object"),
    ({"groups": {}}, "at least one group"),
    ({"groups": {"bad name": [{"raft": "127.0.0.1:1", "http": "http://127.0.0.1:2"}]}}, "group name"),
    ({"groups": {"g": [{"raft": "nope", "http": "http://127.0.0.1:2"}]}}, "HOST:PORT"),
    ({"groups": {"g": [{"raft": "127.0.0.1:1", "http": "ftp://x"}]}}, "http://"),
    ({"groups": {"g": [{"raft": "127.0.0.1:1", "http": "http://h:2"}], "h": [{"raft": "127.0.0.1:1", "http": "http://h:2"}]}},
     "twice"),
    ({"groups": {"g": [{"raft": "127.0.0.1:1", "http": "http://h:2"}]}, "prefixes": {"a": "nosuch"}}, "unknown group"),
    ({"groups": {"g": [{"raft": "127.0.0.1:1", "http": "http://h:2"}]}, "hash": []}, '"hash"'),
])
def test_bad_maps_are_refused_with_a_reason(data, phrase):
    with pytest.raises(ShardMapError, match=re.escape(phrase)):
        ShardMap.from_dict(data)
