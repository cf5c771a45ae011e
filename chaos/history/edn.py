"""Read and write the subset of EDN that Jepsen and Knossos histories use.

Covers nil/true/false, integers, floats, strings, characters, keywords, symbols, lists,
vectors, maps, sets, ``;`` comments, commas as whitespace, ``#_`` discard, and tagged
literals (``#inst "..."`` reads as the tagged value). Keywords read as :class:`Keyword`, a
``str`` subclass, so they compare equal to plain strings and serialise to JSON as strings.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

__all__ = ["Keyword", "Symbol", "EdnError", "loads", "loads_all", "iter_forms", "iter_elements", "dumps"]


class Keyword(str):
    """An EDN keyword, held without its leading colon."""

    __slots__ = ()

    def __repr__(self) -> str:
        return ":" + str(self)


class Symbol(str):
    """An EDN symbol other than nil, true and false."""

    __slots__ = ()


class EdnError(ValueError):
    """Raised for text that is not valid EDN; ``line`` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = message


_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,]+|;[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<open>\#\{|[\[({])
  | (?P<close>[\])}])
  | (?P<discard>\#_)
  | (?P<tag>\#[A-Za-z][^\s,\[\](){}"]*)
  | (?P<char>\\(?:newline|space|tab|return|u[0-9a-fA-F]{4}|.))
  | (?P<atom>[^\s,\[\](){}";]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+N?$")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "/": "/"}
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r"}
_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_END = object()


def _unescape(body: str, line: int) -> str:
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            raise EdnError(f"bad string escape \\{nxt}", line)
    return "".join(out)


def _atom(text: str, line: int) -> Any:
    if text == "nil":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    if text[0] == ":":
        if len(text) == 1:
            raise EdnError("empty keyword", line)
        return Keyword(text[1:])
    if _INT.match(text):
        return int(text.rstrip("N"))
    if _FLOAT.match(text):
        return float(text.rstrip("M"))
    if text[0].isdigit():
        raise EdnError(f"bad number {text!r}", line)
    return Symbol(text)


class _Reader:
    """Turns EDN text into Python values with an explicit stack (no recursion limit)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def _tokens(self) -> Iterator[tuple[str, str, int]]:
        text, match = self.text, _TOKEN.match
        while self.pos < len(text):
            m = match(text, self.pos)
            if m is None:
                raise EdnError(f"unexpected character {text[self.pos]!r}", self.line)
            kind, value = m.lastgroup or "", m.group()
            line = self.line
            self.line += value.count("\n")
            self.pos = m.end()
            if kind != "ws":
                yield kind, value, line

    def forms(self) -> Iterator[tuple[Any, int]]:
        """Yield each top-level form with the line it starts on."""
        stack: list[tuple[str, list[Any], int]] = []  # (opener, items, line)
        pending: list[tuple[str, int]] = []  # modifiers (#_ or a tag) waiting for a form
        start_line = element_line = 1
        self.element_lines: list[int] = []  # start lines of the top-level collection's elements
        for kind, value, line in self._tokens():
            if not stack and not pending:
                start_line = line
                self.element_lines = []
            elif len(stack) == 1 and (not pending or pending[-1][1] != 1):
                element_line = line  # a new element of the top-level collection starts here
            if kind == "open":
                stack.append((value, [], line))
                continue
            if kind in ("discard", "tag"):
                pending.append((kind, len(stack)))
                continue
            if kind == "close":
                if not stack:
                    raise EdnError(f"unexpected {value!r}", line)
                opener, items, open_line = stack.pop()
                if _CLOSERS[opener] != value:
                    raise EdnError(f"{opener!r} opened on line {open_line} closed by {value!r}", line)
                form = self._collection(opener, items, open_line)
            elif kind == "str":
                form = _unescape(value[1:-1], line)
            elif kind == "char":
                name = value[1:]
                form = _CHARS.get(name) or (chr(int(name[1:], 16)) if len(name) == 5 and name[0] == "u" else name)
            else:
                form = _atom(value, line)
            # Apply modifiers that were waiting at this depth.
            while pending and pending[-1][1] == len(stack):
                modifier, _ = pending.pop()
                if modifier == "discard":
                    form = _END
                    break
            if form is _END:
                continue
            if stack:
                stack[-1][1].append(form)
                if len(stack) == 1:
                    self.element_lines.append(element_line)
            else:
                yield form, start_line
        if stack:
            raise EdnError(f"{stack[-1][0]!r} opened on line {stack[-1][2]} is never closed", self.line)

    @staticmethod
    def _collection(opener: str, items: list[Any], line: int) -> Any:
        if opener == "{":
            if len(items) % 2:
                raise EdnError("map with an odd number of forms", line)
            return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}
        if opener == "#{":
            return frozenset(_hashable(x) for x in items)
        if opener == "(":
            return tuple(items)
        return items


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(x) for x in value)
    if isinstance(value, dict):
        return tuple(sorted(((k, _hashable(v)) for k, v in value.items()), key=repr))
    return value


def iter_forms(text: str) -> Iterator[tuple[Any, int]]:
    """Yield ``(value, line)`` for each top-level form in ``text``."""
    return _Reader(text).forms()


def iter_elements(text: str) -> Iterator[tuple[Any, int]]:
    """Yield ``(value, line)`` for each element of a top-level vector or list, or else for each
    top-level form (a bare sequence), so each op of a history gets the line it starts on."""
    reader = _Reader(text)
    for form, line in reader.forms():
        if isinstance(form, (list, tuple)):
            yield from zip(form, reader.element_lines)
        else:
            yield form, line


def loads_all(text: str) -> list[Any]:
    """Return every top-level form in ``text``."""
    return [form for form, _ in iter_forms(text)]


def loads(text: str) -> Any:
    """Return the single top-level form in ``text``."""
    forms = loads_all(text)
    if len(forms) != 1:
        raise EdnError(f"expected one form, found {len(forms)}", 1)
    return forms[0]


def dumps(value: Any) -> str:
    """Return ``value`` as EDN text; strings that are :class:`Keyword` print as keywords."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Keyword):
        return ":" + value
    if isinstance(value, Symbol):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dumps(k)} {dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (set, frozenset)):
        return "#{" + " ".join(dumps(x) for x in sorted(value, key=repr)) + "}"
    if isinstance(value, tuple):
        return "(" + " ".join(dumps(x) for x in value) + ")"
    if isinstance(value, list):
        return "[" + " ".join(dumps(x) for x in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as EDN")
