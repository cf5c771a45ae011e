"""Seeded fault schedules: a pure function of a random stream, printed with every failing seed.

A schedule is a list of ``Fault(time, kind, args)``. ``random_schedule`` draws one from the
seed; named scenarios (``scenarios.py``) write theirs by hand. ``apply_fault`` performs one on a
world. Kinds:

- ``partition [group, group]``: cut every link between the groups (silently; noticed later);
- ``isolate_leader``: cut the current leader from everyone;
- ``one_way [src, dst]``: drop messages from src to dst only;
- ``heal``: restore every link;
- ``crash [node, torn]``, ``crash_leader [torn]``: kill a node; unsynced writes are lost, and
  ``torn`` bytes of an unsynced tail survive (a torn write);
- ``restart [node]``: start a crashed node from its storage;
- ``transfer``: the leader hands leadership to a follower (pysyncobj's TimeoutNow);
- ``skew [node, seconds]``: set a node's wall clock that far from true time;
- ``disk [node, failing]``: the node's disk starts or stops failing every write.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consensus.testing.sim.world import World


@dataclass(frozen=True)
class Fault:
    time: float
    kind: str
    args: tuple[Any, ...] = ()

    def __str__(self) -> str:
        args = " ".join(str(a) for a in self.args)
        return f"{self.time:8.3f} {self.kind} {args}".rstrip()


def random_schedule(rng: random.Random, nodes: list[str], duration: float) -> list[Fault]:
    """Draw faults until ``duration``: about one every 0.2 to 1.5 seconds."""
    faults: list[Fault] = []
    t = rng.uniform(0.5, 1.5)
    down: set[str] = set()
    while t < duration:
        kind = rng.choices(
            ["partition", "isolate_leader", "one_way", "heal", "crash", "crash_leader", "restart", "transfer", "skew", "disk"],
            weights=[3, 2, 1, 4, 2, 2, 4, 2, 1, 1],
        )[0]
        if kind == "partition":
            shuffled = nodes[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(nodes) - 1)
            faults.append(Fault(t, kind, (tuple(sorted(shuffled[:cut])), tuple(sorted(shuffled[cut:])))))
        elif kind == "one_way":
            src, dst = rng.sample(nodes, 2)
            faults.append(Fault(t, kind, (src, dst)))
        elif kind == "crash":
            candidates = [n for n in nodes if n not in down]
            if len(down) + 1 < len(nodes) and candidates:
                node = rng.choice(candidates)
                down.add(node)
                faults.append(Fault(t, kind, (node, rng.choice([0, 0, 7, 40]))))
        elif kind == "crash_leader":
            if len(down) + 1 < len(nodes):
                faults.append(Fault(t, kind, (rng.choice([0, 0, 7, 40]),)))
                down.add("?")  # whoever led; a later restart brings back every node that is down
        elif kind == "restart":
            if down:
                down.clear()
                faults.append(Fault(t, "restart_all"))
        elif kind == "skew":
            faults.append(Fault(t, kind, (rng.choice(nodes), rng.choice([-30.0, -2.0, 0.0, 2.0, 3600.0]))))
        elif kind == "disk":
            faults.append(Fault(t, kind, (rng.choice(nodes), rng.random() < 0.6)))
        else:
            faults.append(Fault(t, kind))
        t += rng.uniform(0.2, 1.5)
    return faults


def apply_fault(world: "World", fault: Fault) -> None:
    """Perform ``fault`` on ``world`` now."""
    kind, args = fault.kind, fault.args
    network = world.network
    if kind == "partition":
        for a in args[0]:
            for b in args[1]:
                network.block(a, b)
                network.block(b, a)
    elif kind == "isolate_leader":
        leaders = world.leaders()
        if leaders:
            leader = leaders[0]
            for other in world.nodes:
                if other != leader:
                    network.block(leader, other)
                    network.block(other, leader)
    elif kind == "one_way":
        network.block(args[0], args[1])
    elif kind == "heal":
        for src, dst in sorted(network.blocked):
            network.unblock(src, dst)
    elif kind == "crash":
        world.crash(args[0], args[1])
    elif kind == "crash_leader":
        leaders = world.leaders()
        if leaders:
            world.crash(leaders[0], args[0])
    elif kind in ("restart", "restart_all"):
        targets = [args[0]] if args else [n for n in world.nodes if not world.nodes[n].alive]
        for node_id in targets:
            world.nodes[node_id].storage.failing = False
            world.start(node_id)
    elif kind == "transfer":
        leaders = world.leaders()
        if leaders:
            world.core(leaders[0]).transfer_leadership(None, lambda *_: None)
            world.touched[leaders[0]] = None
    elif kind == "skew":
        world.nodes[args[0]].skew_ns = int(args[1] * 1e9)
    elif kind == "disk":
        world.nodes[args[0]].storage.failing = args[1]
    else:
        raise ValueError(f"unknown fault {kind!r}")
