"""The coordinator of ``POST /v1/txn`` across Raft groups: two-phase commit whose decision is replicated.

The node that takes the request drives the protocol; every state it relies on is replicated in
the groups (``apps.kv.twophase``), so when this process dies anyone can finish or abort the
transaction from the record. Steps, for transaction ``T`` on coordinator group ``C`` (the first
key's group):

1. **read**: one linearizable ``gets`` per group of every compared or read key: value and
   ``mod_revision``. The compares choose the branch (success or failure) here.
2. read-only: one ``txn_validate`` per group (every key still at the revision read, no other
   transaction's write intent on it): all reads then hold at one instant. Done.
3. ``txn_begin(T)`` on C: the record, ``pending``.
4. ``txn_prepare(T)`` on every participant (in parallel): validate the reads, read-lock them,
   write-lock the keys written; vote.
5. ``txn_decide(T, committed | aborted)`` on C: a compare-and-set on the record; the commit point.
6. ``txn_finish(T, decision)`` on every participant: apply or drop the writes, release the locks.
7. ``txn_forget(T)`` on C, in the background once every participant finished: the record may be
   dropped after the retention (``apps.kv.twophase``). Resolvers and client retries send it too.

Each step is retried under ``T`` until it has an outcome or the request's deadline passes (each
is idempotent). A transaction refused for a conflict or a moved revision is retried as
``T.1``, ``T.2``... A lock older than ``INTENT_TIMEOUT_MS`` is resolved through its record:
``txn_decide(aborted)`` (which wins only while it is pending), then ``txn_finish`` with the
record's final state on every participant.

With an ``Idempotency-Key`` (or a client session: its client id and request number) the ids are
derived from it, so a client's retry finds the attempts of the first try: a committed one is
finished again and its stored result returned; a pending one is aborted (or found committed)
before a new attempt starts.

A test hook, ``RAFTWORK_TEST_PAUSE_AFTER_PREPARE_MS``, makes the coordinator wait that long
between the last yes vote and the decision (logging one line), so a chaos run can kill the
coordinator group's leader, or the coordinating process, in exactly that window.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
import uuid
from typing import Any, Awaitable, Callable

from apps.kv.machine import MACHINE
from apps.kv.twophase import ABORTED, COMMITTED, PENDING
from consensus.errors import (
    ConsensusError,
    Indeterminate,
    IntentHeld,
    InvalidRequest,
    NotLeader,
    Rejected,
    TxnAborted,
    Unavailable,
    from_dict,
)
from consensus.node import Consistency

# A lock older than this may be resolved by anyone who meets it. Not a safety setting (the record's
# compare-and-swap decides every race); it trades how long a crashed coordinator blocks its keys
# against how soon a slow but live one is aborted. RAFTWORK_INTENT_TIMEOUT_MS overrides it.
INTENT_TIMEOUT_MS = int(os.environ.get("RAFTWORK_INTENT_TIMEOUT_MS", "1000"))
# The test hook (see the module docstring); 0: no pause.
PAUSE_AFTER_PREPARE_MS = int(os.environ.get("RAFTWORK_TEST_PAUSE_AFTER_PREPARE_MS", "0"))
# A broken resolver, for showing that the chaos checkers catch 2PC's classic bug: it aborts a lock
# where it meets it, without asking (or deciding) the record. Never set outside such a test.
UNSAFE_RESOLVE = os.environ.get("RAFTWORK_TEST_UNSAFE_RESOLVE") == "1"
FORGET_SECONDS = 5.0  # the budget of a background txn_forget
MAX_ATTEMPTS = 8
_RETRY_SECONDS = (0.02, 0.2)  # backoff range between retries of a step, and between attempts
_RETRYABLE = (Indeterminate, Unavailable, NotLeader)
log = logging.getLogger("apps.kv.txn")
_background: set[asyncio.Task[Any]] = set()  # forgets in flight (a task needs a reference until done)


class GroupCaller:
    """Proposes and reads on any group: through this process's member, or over HTTP to a member."""

    def __init__(self, host: Any, deadline: float) -> None:
        self.host = host
        self.shards = host.shards
        self.deadline = deadline

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def _once(self, group: str, kind: str, message: dict[str, Any], key: str | None) -> Any:
        server = self.host.servers.get(group)
        timeout = min(self.remaining(), 2.0)
        if timeout <= 0:
            raise Indeterminate("the transaction's deadline passed")
        if server is not None:
            if kind == "command":
                return await server.node.propose(MACHINE, message, idempotency_key=key, timeout=timeout)
            return await server.node.read(MACHINE, message, consistency=Consistency.LINEARIZABLE, timeout=timeout)
        return await self._remote(group, {kind: message, **({"idempotency_key": key} if key else {})}, timeout)

    async def _remote(self, group: str, body: dict[str, Any], timeout: float) -> Any:
        import aiohttp

        last: ConsensusError = Unavailable(f"no member of group {group} answered")
        session = await self.host.txn_session()
        for member in self.shards.members(group):
            try:
                async with session.post(member.http + "/v1/kv-internal", json=body, headers={"X-Raft-Group": group},
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    answer = await r.json()
            except aiohttp.ClientConnectorError:
                continue  # nothing was sent: try the next member
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                last = Indeterminate(f"lost a transaction step sent to group {group}")
                continue
            if r.status == 200:
                return answer["result"]
            raise from_dict(answer.get("error", {}))
        raise last

    async def step(self, group: str, kind: str, message: dict[str, Any], key: str | None = None) -> Any:
        """Run one idempotent step until it has an outcome; raise ``Indeterminate`` at the deadline."""
        while True:
            try:
                return await self._once(group, kind, message, key)
            except _RETRYABLE as exc:
                if self.remaining() <= _RETRY_SECONDS[1]:
                    raise Indeterminate(f"group {group} did not answer a transaction step in time: {exc.message}") from None
                await asyncio.sleep(random.uniform(*_RETRY_SECONDS))

    async def propose(self, group: str, command: dict[str, Any], key: str | None = None) -> Any:
        return await self.step(group, "command", command, key)

    async def read(self, group: str, query: dict[str, Any]) -> Any:
        return await self.step(group, "query", query)

    async def resolve(self, blocker: dict[str, Any]) -> str:
        """Finish the transaction holding ``blocker``'s lock through its record; return its state."""
        if UNSAFE_RESOLVE and blocker.get("group"):
            log.warning("txn %s: aborting its lock on %s without its record (RAFTWORK_TEST_UNSAFE_RESOLVE)",
                        blocker["txn"], blocker["group"])
            await self.propose(blocker["group"], {"op": "txn_finish", "id": blocker["txn"], "decision": ABORTED})
            return ABORTED
        record = await self.propose(blocker["coordinator"], {"op": "txn_decide", "id": blocker["txn"], "decision": ABORTED})
        groups = sorted(set(record["participants"]) | {g for g in [blocker.get("group")] if g})
        await asyncio.gather(*(self.propose(g, {"op": "txn_finish", "id": blocker["txn"], "decision": record["state"]})
                               for g in groups))
        forget_later(self.host, blocker["coordinator"], blocker["txn"])
        return str(record["state"])


def forget_later(host: Any, coordinator: str, txn: str) -> None:
    """Send ``txn_forget`` in the background: every participant has finished ``txn``.

    Best effort: if it never lands (this process dies first), the record is kept, never dropped
    too early."""
    async def forget() -> None:
        caller = GroupCaller(host, time.monotonic() + FORGET_SECONDS)
        try:
            await caller.propose(coordinator, {"op": "txn_forget", "id": txn})
        except ConsensusError as exc:
            log.info("txn %s: forget on %s not confirmed (%s); the record is kept", txn, coordinator, exc.code)

    task = asyncio.get_running_loop().create_task(forget())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def read_resolving_intent(call: Any, key: str) -> Any:
    """Read ``key`` linearizably; a write intent on it older than the timeout is resolved first.

    A young intent is not waited for: the read returns the last committed value (the prepared
    transaction is not visible until it commits in this group). An old one is finished through
    its record (committed or aborted), and the key read again, so a transaction whose
    coordinator died is settled by the next plain reader too."""
    caller = GroupCaller(call.server.host, call.deadline)
    found: dict[str, Any] = {}
    for _ in range(3):  # after a resolution, only a new (young) intent can be there
        found = await call.server.read(call, MACHINE, {"op": "get_intent", "key": key}, Consistency.LINEARIZABLE)
        intent = found["intent"]
        if intent is None or intent["age_ms"] < INTENT_TIMEOUT_MS:
            break
        state = await caller.resolve(dict(intent, group=call.server.config.group))
        log.info("read of a key on %s resolved transaction %s: %s", call.server.config.group, intent["txn"], state)
    return found["kv"]


def retry_identity(call: Any) -> str | None:
    """Return what a retry of this request has in common with its first try, or None (a new one each time).

    With a client session, that is the client id and the request's number in it (a retry carries
    both; the session itself lives in one group's log, so it cannot fence steps in the others);
    else the Idempotency-Key. The transaction ids are derived from it, and the records are kept
    for the retention, so a retry within it applies once."""
    if call.session is not None:
        client_id, seq, _ = call.session
        return f"session:{client_id}:{seq}"
    return call.idempotency_key  # type: ignore[no-any-return]


def txn_keys(body: dict[str, Any]) -> list[str]:
    """Return every key a transaction body names, first appearance first."""
    keys: list[str] = []
    for compare in body.get("compare", []):
        keys.append(compare["key"])
    for branch in ("success", "failure"):
        for op in body.get(branch, []):
            keys.extend(args["key"] for args in op.values())
    return list(dict.fromkeys(keys))


def _holds(compare: dict[str, Any], kv: dict[str, Any] | None) -> bool:
    """The kv machine's compare rule (a missing key: version and revisions 0, value compares fail)."""
    if compare["target"] == "value":
        if kv is None:
            return False
        actual: Any = kv["value"]
    else:
        actual = kv[compare["target"]] if kv is not None else 0
    expected = compare["value"]
    return {"==": actual == expected, "!=": actual != expected, "<": actual < expected, ">": actual > expected}[compare["op"]]


async def with_intents_resolved(caller: GroupCaller, group: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
    """Run a plain write; while it meets a lock, wait, and resolve the lock once it is old."""
    while True:
        try:
            return await attempt()
        except IntentHeld as exc:
            blocker = dict(exc.detail or {}, group=group)
            if blocker.get("age_ms", 0) >= INTENT_TIMEOUT_MS:
                await caller.resolve(blocker)
            elif caller.remaining() <= INTENT_TIMEOUT_MS / 1000:
                raise
            else:
                await asyncio.sleep(random.uniform(*_RETRY_SECONDS))


class CrossGroupTxn:
    """One ``POST /v1/txn`` whose keys live on several groups."""

    def __init__(self, caller: GroupCaller, body: dict[str, Any], idempotency_key: str | None) -> None:
        self.caller = caller
        self.body = body
        self.shards = caller.shards
        keys = txn_keys(body)
        self.coordinator = self.shards.group_of(keys[0])
        self.base = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32] if idempotency_key else uuid.uuid4().hex
        self.resumed = idempotency_key is not None

    async def run(self) -> dict[str, Any]:
        why: dict[str, Any] = {}
        for attempt in range(MAX_ATTEMPTS):
            txn = f"{self.base}.{attempt}"
            if self.resumed:
                found = await self._resume(txn)
                if found is not None:
                    return found
            result, why = await self._attempt(txn)
            if result is not None:
                return result
            blocker = why.get("blocker")
            if blocker is not None and blocker.get("age_ms", 0) >= INTENT_TIMEOUT_MS:
                await self.caller.resolve(blocker)
            if self.caller.remaining() <= _RETRY_SECONDS[1]:
                break
            await asyncio.sleep(random.uniform(_RETRY_SECONDS[0], _RETRY_SECONDS[1] * (attempt + 1) / 2))
        raise TxnAborted(f"the transaction was aborted: {why.get('reason', 'conflict')}", detail=why)

    async def _resume(self, txn: str) -> dict[str, Any] | None:
        """With an idempotency key: return the stored result of a committed earlier attempt."""
        record = await self.caller.read(self.coordinator, {"op": "txn_record", "id": txn})
        if record is None:
            self.resumed = False  # no attempt got this far: nothing later exists either
            return None
        if record["state"] == PENDING:
            record = await self.caller.propose(self.coordinator, {"op": "txn_decide", "id": txn, "decision": ABORTED})
        if record["state"] == COMMITTED:
            return self._with_revisions(record["result"], await self._finish(txn, record["participants"], COMMITTED))
        await self._finish(txn, record["participants"], ABORTED)
        return None

    async def _pause_after_prepare(self, txn: str, participants: list[str]) -> None:
        """The test hook: hold a fully prepared transaction before its decision."""
        if PAUSE_AFTER_PREPARE_MS > 0:
            log.warning("txn %s prepared on %s; pausing %d ms before the decision on %s "
                        "(RAFTWORK_TEST_PAUSE_AFTER_PREPARE_MS)", txn, ",".join(participants), PAUSE_AFTER_PREPARE_MS,
                        self.coordinator)
            await asyncio.sleep(PAUSE_AFTER_PREPARE_MS / 1000)

    async def _attempt(self, txn: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        body = self.body
        read_keys = list(dict.fromkeys([c["key"] for c in body.get("compare", [])] +
                                       [op["get"]["key"] for b in ("success", "failure") for op in body.get(b, []) if "get" in op]))
        seen = await self._read(read_keys)
        succeeded = all(_holds(c, seen[c["key"]]) for c in body.get("compare", []))
        ops = body.get("success" if succeeded else "failure", [])
        used = [k for k in read_keys if k in {c["key"] for c in body.get("compare", [])} or
                any("get" in op and op["get"]["key"] == k for op in ops)]
        reads: dict[str, list[list[Any]]] = {}
        for key in used:
            kv = seen[key]
            reads.setdefault(self.shards.group_of(key), []).append([key, kv["mod_revision"] if kv else 0])
        writes: dict[str, list[dict[str, Any]]] = {}
        for op in ops:
            if "get" not in op:
                key = next(iter(op.values()))["key"]
                writes.setdefault(self.shards.group_of(key), []).append(op)
        if not writes:
            return await self._read_only(reads, succeeded, ops, seen)
        participants = sorted(set(reads) | set(writes))
        record = await self.caller.propose(self.coordinator, {"op": "txn_begin", "id": txn, "participants": participants})
        if record["state"] != PENDING:
            return None, {"reason": "aborted by a resolver", "txn": txn}
        votes = await asyncio.gather(*(self.caller.propose(g, {"op": "txn_prepare", "id": txn, "coordinator": self.coordinator,
                                                              "reads": reads.get(g, []), "writes": writes.get(g, [])})
                                       for g in participants))
        refusal = next((dict(v, group=g) for g, v in zip(participants, votes) if v["vote"] != "yes"), None)
        if refusal is None:
            await self._pause_after_prepare(txn, participants)
        result = None if refusal else self._result(succeeded, ops, seen)
        decision = ABORTED if refusal else COMMITTED
        record = await self.caller.propose(self.coordinator, {"op": "txn_decide", "id": txn, "decision": decision,
                                                              **({"result": result} if result else {})})
        finished = await self._finish(txn, participants, record["state"])
        if record["state"] != COMMITTED:
            why = {"reason": (refusal or {}).get("reason", "aborted by a resolver"), "txn": txn}
            if refusal and "txn" in refusal:
                why["blocker"] = {k: refusal[k] for k in ("key", "txn", "coordinator", "age_ms", "group") if k in refusal}
            return None, why
        return self._with_revisions(record["result"], finished), {}

    async def _read(self, keys: list[str]) -> dict[str, dict[str, Any] | None]:
        by_group: dict[str, list[str]] = {}
        for key in keys:
            by_group.setdefault(self.shards.group_of(key), []).append(key)
        answers = await asyncio.gather(*(self.caller.read(g, {"op": "gets", "keys": ks}) for g, ks in by_group.items()))
        seen: dict[str, dict[str, Any] | None] = {}
        for ks, answer in zip(by_group.values(), answers):
            seen.update(zip(ks, answer["kvs"]))
        return seen

    async def _read_only(self, reads: dict[str, list[list[Any]]], succeeded: bool, ops: list[dict[str, Any]],
                         seen: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        groups = list(reads)
        checks = await asyncio.gather(*(self.caller.read(g, {"op": "txn_validate", "reads": reads[g]}) for g in groups))
        for group, check in zip(groups, checks):
            if not check["ok"]:
                why: dict[str, Any] = {"reason": check["reason"]}
                if "txn" in check:
                    why["blocker"] = dict(check, group=group)
                return None, why
        revision = max((kv["mod_revision"] for kv in seen.values() if kv), default=0)
        return dict(self._result(succeeded, ops, seen), revision=revision), {}

    def _result(self, succeeded: bool, ops: list[dict[str, Any]], seen: dict[str, Any]) -> dict[str, Any]:
        """The etcd-shaped answer; a get sees the writes before it in the branch, as in one group."""
        current = dict(seen)
        responses: list[dict[str, Any]] = []
        for op in ops:
            kind, args = next(iter(op.items()))
            key = args["key"]
            if kind == "get":
                responses.append({"get": current.get(key)})
            elif kind == "put":
                prev = current.get(key)
                responses.append({"put": {"prev": prev}})
                # What a later get in this branch sees (its revisions are only known at commit).
                current[key] = {"key": key, "value": args["value"], "create_revision": prev["create_revision"] if prev else 0,
                                "mod_revision": 0, "version": prev["version"] + 1 if prev else 1}
            else:
                responses.append({"delete": {"deleted": 0 if current.get(key) is None else 1}})
                current[key] = None
        return {"succeeded": succeeded, "responses": responses}

    def _with_revisions(self, result: dict[str, Any], revisions: dict[str, int]) -> dict[str, Any]:
        """Fill in each write's revision: the revision its group committed the transaction at."""
        responses = []
        for response in result["responses"]:
            kind, args = next(iter(response.items()))
            responses.append({kind: dict(args) if isinstance(args, dict) else args})
        ops = self.body.get("success" if result["succeeded"] else "failure", [])
        for response, op in zip(responses, ops):
            kind, args = next(iter(op.items()))
            if kind != "get":
                response[kind]["revision"] = revisions.get(self.shards.group_of(args["key"]), 0)
        return {"succeeded": result["succeeded"], "responses": responses,
                "revision": revisions.get(self.coordinator, max(revisions.values(), default=0))}

    async def _finish(self, txn: str, groups: list[str], decision: str) -> dict[str, int]:
        answers = await asyncio.gather(*(self.caller.propose(g, {"op": "txn_finish", "id": txn, "decision": decision})
                                         for g in groups))
        forget_later(self.caller.host, self.coordinator, txn)
        return {g: a["revision"] for g, a in zip(groups, answers)}


async def run_txn(call: Any) -> Any:
    """Answer ``POST /v1/txn``: one group's txn command, or two-phase commit across groups."""
    host = call.server.host
    body = call.body
    keys = txn_keys(body)
    if host is None or not keys:
        return await call.server.propose(call, MACHINE, {"op": "txn", **body})
    caller = GroupCaller(host, call.deadline)
    groups = {host.shards.group_of(k) for k in keys}
    if len(groups) == 1:
        group = groups.pop()
        command = {"op": "txn", **body}
        if group == call.server.config.group:
            return await with_intents_resolved(caller, group, lambda: call.server.propose(call, MACHINE, command))
        return await with_intents_resolved(caller, group, lambda: caller._once(group, "command", command, retry_identity(call)))
    try:
        return await CrossGroupTxn(caller, body, retry_identity(call)).run()
    except Rejected:
        raise
    except ConsensusError as exc:
        if exc.definite and not isinstance(exc, InvalidRequest):
            # A step failed definitely, but earlier steps may have been replicated: unknown, not "nothing".
            raise Indeterminate(f"the transaction's outcome is unknown: {exc.message}") from None
        raise
