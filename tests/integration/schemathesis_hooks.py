"""Schemathesis hooks for the run against a real node (``SCHEMATHESIS_HOOKS`` names this module).

- ``honest_deadline``: a healthy one-node cluster answers 503/504 only when the request's own
  ``X-Request-Timeout`` was too short to commit or read in (the bound is 1 ms, and a write takes
  about that long), and then with the right code: 504 ``indeterminate`` not definite, or 503
  ``unavailable`` definite (nothing submitted). The run's config lets ``not_a_server_error``
  pass 503 and 504 so that this check, which knows the deadline, judges them; a 500 always fails.
- ``unique_idempotency_keys``: a valid ``Idempotency-Key`` is made unique per generated case.
  Reusing a key with a different request is a documented 400, a rule about state the schema
  cannot express; without this the fuzzer would trip over its own repeated keys.
- ``X-Raft-Session``: the fuzzer's "valid" examples of this header ignore its pattern (it sent
  ``0``) and cannot know that the lowest number awaited may not exceed the request's own; such a
  header is replaced by a well-formed one (of a session that does not exist: a definite 409), unless
  the case is meant to be refused.
- A case whose only fault is an unknown header (HTTP servers ignore those, as ours does) keeps
  no ``X-Request-Timeout``: schemathesis re-checks the declared headers of such a case as JSON
  and takes the header's text "0.05" for a non-number, so a fast 2xx (a 1 ms deadline can be
  met) would count as "schema-violating request accepted".
- ``wait_ms`` of a lock acquire is cut to at most ``MAX_FUZZ_WAIT_MS``: a valid wait of up to 60 s
  on a held lock is answered after that wait, by design, which would only make the run slow.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import schemathesis

MAX_FUZZ_WAIT_MS = 200
_UNKNOWN_HEADERS = {"x-schemathesis-unknown-property", "schemathesis-unknown-property", "unknown-property-0"}
TINY_DEADLINE = 0.05  # seconds: below this a healthy node may run out of time
_KEY = re.compile(r"[\x21-\x7e]{1,256}")
_SESSION = re.compile(r"[1-9][0-9]{0,17}:([1-9][0-9]{0,17}):([1-9][0-9]{0,17})")


def _timeout(case: Any) -> float:
    headers = {k.lower(): v for k, v in (case.headers or {}).items()}
    try:
        return float(headers.get("x-request-timeout", "5"))
    except ValueError:
        return 5.0


@schemathesis.check
def honest_deadline(ctx: Any, response: Any, case: Any) -> None:
    status = response.status_code
    if status not in (503, 504):
        return None
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(f"a {status} without the JSON error body") from None
    expected = {504: ("indeterminate", False), 503: ("unavailable", True)}[status]
    if (error.get("code"), error.get("definite")) != expected:
        raise AssertionError(f"a {status} must be {expected}, not {error}")
    timeout = _timeout(case)
    if timeout >= TINY_DEADLINE:
        raise AssertionError(f"{status} {error.get('code')} with a deadline of {timeout}s on a healthy node: {error}")
    return None


def _negative(case: Any) -> bool:
    """Whether the case is meant to be refused (then a malformed header is its point: keep it)."""
    meta = getattr(case, "meta", None)
    generation = getattr(meta, "generation", None)
    mode = getattr(generation, "mode", None)
    return bool(getattr(mode, "is_negative", False))


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("wait_ms"), int) and not isinstance(body["wait_ms"], bool):
        body["wait_ms"] = min(body["wait_ms"], MAX_FUZZ_WAIT_MS)
    headers = case.headers
    if headers and any(name.lower() in _UNKNOWN_HEADERS for name in headers):
        for name in [n for n in headers if n.lower() == "x-request-timeout"]:
            del headers[name]
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key" and isinstance(headers[name], str) and _KEY.fullmatch(headers[name]):
                headers[name] = "st-" + uuid.uuid4().hex
            if name.lower() == "x-raft-session" and not _negative(case):
                match = _SESSION.fullmatch(str(headers[name]))
                if match is None or int(match.group(2)) > int(match.group(1)):
                    headers[name] = "999999:2:1"
    return case
