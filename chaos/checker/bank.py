"""The bank checker: money is neither made nor lost, and no account goes negative.

A bank history has ``transfer [from, to, amount]`` ops and ``read`` ops whose ok value is every
account's balance, in account order (``[b0, b1, ...]``), all read in one transaction. Transfers
move money between accounts and never create or destroy it, so whatever order they happened in,
every consistent snapshot of all accounts sums to the initial total. A read that sums to
anything else saw a transaction half applied (or a write lost or invented); a negative balance
means two transfers spent the same money. Neither needs to know which transfers happened, so
transfers whose outcome is unknown (``info``) need no special care.

The final read is the last ok read invoked after every transfer was invoked (the read after the
final heal): it must exist and sum to the total too, or the verdict is unknown (nothing shows
the money all came back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..history.ops import INVOKE, OK, Op, as_ops
from ..verdict import Verdict

__all__ = ["BankResult", "check_bank"]


@dataclass(frozen=True)
class BankResult:
    """``errors``: each a dict with the offending ``op`` (the read's ok completion), what is wrong
    (``problem``: ``wrong-total``, ``negative`` or ``malformed``) and the read's ``balances``,
    ``sum`` and ``total``. ``final``: the final read's completion, or None if there was none."""

    valid: Verdict
    total: int
    accounts: int
    reads: int
    transfers: int  # acknowledged
    errors: tuple[dict[str, Any], ...]
    final: Op | None
    final_balances: tuple[int, ...] | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (ops as their JSON form)."""
        return {"valid": self.valid.json(), "total": self.total, "accounts": self.accounts, "reads": self.reads,
                "transfers": self.transfers, "errors": [_error_json(e) for e in self.errors],
                "final": self.final.to_dict() if self.final else None,
                "final_balances": list(self.final_balances) if self.final_balances is not None else None}

    def summary(self) -> str:
        word = self.valid.value if self.valid is not Verdict.INVALID else "INVALID"
        text = f"{word} ({self.reads} full reads, {self.transfers} acknowledged transfers, total {self.total}" + \
               (", no final read)" if self.final is None else f", final read {list(self.final_balances or ())})")
        for e in self.errors[:3]:
            op = e["op"]
            where = f" (line {op.line})" if op.line else ""
            text += f"\n    {e['problem']}: read {e['balances']!r} sums to {e['sum']}, total {self.total}{where}"
        return text


def _error_json(error: dict[str, Any]) -> dict[str, Any]:
    return {**error, "op": error["op"].to_dict()}


def _problem(balances: Any, accounts: int, total: int) -> tuple[str | None, int | None]:
    """Return what is wrong with one read's balances (None: nothing) and their sum."""
    if not isinstance(balances, (list, tuple)) or len(balances) != accounts or \
            not all(isinstance(b, int) and not isinstance(b, bool) for b in balances):
        return "malformed", None
    found = sum(balances)
    if any(b < 0 for b in balances):
        return "negative", found
    if found != total:
        return "wrong-total", found
    return None, found


def check_bank(history: Sequence[Any], *, init: Sequence[int]) -> BankResult:
    """Check a bank history against the initial balances ``init`` (one per account).

    Invalid if any ok read has a negative balance, does not sum to ``sum(init)``, or is not one
    int per account; unknown if there is no final read (see the module's docstring); else valid.
    """
    total, accounts = sum(init), len(init)
    ops = [op for op in as_ops(history) if op.is_client]
    last_transfer_invoke = max((i for i, op in enumerate(ops) if op.f == "transfer" and op.type == INVOKE),
                               default=-1)
    pending: dict[Any, int] = {}  # process -> the position of its pending invoke
    errors: list[dict[str, Any]] = []
    reads = transfers = 0
    final: Op | None = None
    for i, op in enumerate(ops):
        if op.type == INVOKE:
            pending[op.process] = i
            continue
        invoked = pending.pop(op.process, None)
        if op.type != OK:
            continue
        if op.f == "transfer":
            transfers += 1
        elif op.f == "read":
            reads += 1
            problem, found = _problem(op.value, accounts, total)
            if problem is not None:
                errors.append({"op": op, "problem": problem, "balances": op.value, "sum": found, "total": total})
            if invoked is not None and invoked > last_transfer_invoke:
                final = op
    valid = Verdict.INVALID if errors else (Verdict.UNKNOWN if final is None else Verdict.VALID)
    return BankResult(valid=valid, total=total, accounts=accounts, reads=reads, transfers=transfers,
                      errors=tuple(errors), final=final,
                      final_balances=tuple(final.value) if final is not None and isinstance(final.value, list) else None)
