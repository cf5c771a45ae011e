"""The one verdict type, its JSON form and its exit codes (Jepsen's: 0 valid, 1 invalid, 2
unknown, 255 crashed), and the result protocol every checker's result follows.

::

    Verdict.merge([Verdict.VALID, Verdict.UNKNOWN])   # Verdict.UNKNOWN
    Verdict.INVALID.exit_code                         # 1
    Verdict.from_json(True)                           # Verdict.VALID (results.json keeps Jepsen's :valid?)

A verdict is not a bool: ``if verdict:`` raises ``TypeError``, because "unknown" is neither.
"""

from __future__ import annotations

import enum
from typing import Any, Iterable, Protocol

__all__ = ["Verdict", "CheckResult", "EXIT_CRASHED", "EXIT_INTERRUPTED", "worst_exit"]

EXIT_CRASHED = 255  # the harness itself failed, or the input could not be read
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM


class Verdict(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return _EXIT[self]

    def json(self) -> Any:
        """Return the verdict as ``results.json`` spells it: true, false or "unknown"."""
        return {Verdict.VALID: True, Verdict.INVALID: False}.get(self, "unknown")

    @classmethod
    def from_json(cls, value: Any) -> "Verdict":
        """Read a stored verdict (true, false, "unknown", or a Verdict name); anything else is unknown."""
        if value is True or value == "valid":
            return cls.VALID
        if value is False or value == "invalid":
            return cls.INVALID
        return cls.UNKNOWN

    @classmethod
    def of(cls, ok: bool) -> "Verdict":
        """Return VALID for True, INVALID for False (for checkers that always decide)."""
        return cls.VALID if ok else cls.INVALID

    @classmethod
    def merge(cls, verdicts: Iterable["Verdict"]) -> "Verdict":
        """Fold verdicts Jepsen's way: invalid if any is, else unknown if any is, else valid."""
        found = set(verdicts)
        if cls.INVALID in found:
            return cls.INVALID
        if cls.UNKNOWN in found:
            return cls.UNKNOWN
        return cls.VALID

    def __bool__(self) -> bool:
        raise TypeError("a Verdict is not a bool: compare it with Verdict.VALID (unknown is neither)")

    def __str__(self) -> str:
        return self.name


_EXIT = {Verdict.VALID: 0, Verdict.INVALID: 1, Verdict.UNKNOWN: 2}
_SEVERITY = {EXIT_CRASHED: 3, 1: 2, 2: 1, 0: 0}


def worst_exit(codes: Iterable[int]) -> int:
    """Return the worst exit code: crashed over invalid over unknown over valid."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 3), default=0)


class CheckResult(Protocol):
    """What every checker returns: a verdict, JSON for ``results.json``, and a summary for people."""

    @property
    def valid(self) -> Verdict: ...

    def to_dict(self) -> dict[str, Any]: ...

    def summary(self) -> str:
        """Return one line (more lines, indented, for what went wrong)."""
        ...
