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
  header is replaced by a well-formed one (of a session that does not exist: a definite 409), in
  positive cases only (a negative case with a malformed header must be refused as it is).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import schemathesis

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


def _positive(case: Any) -> bool:
    """Tell whether the case is meant to be valid (a negative case must reach the server as generated)."""
    meta = getattr(case, "meta", None)
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    return mode is None or str(getattr(mode, "value", mode)) == "positive"


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    headers = case.headers
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key" and isinstance(headers[name], str) and _KEY.fullmatch(headers[name]):
                headers[name] = "st-" + uuid.uuid4().hex
            if name.lower() == "x-raft-session" and _positive(case):
                match = _SESSION.fullmatch(str(headers[name]))
                if match is None or int(match.group(2)) > int(match.group(1)):
                    headers[name] = "999999:2:1"
    return case
