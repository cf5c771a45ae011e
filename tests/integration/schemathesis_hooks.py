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
  header is replaced by a well-formed one (of a session that does not exist: a definite 409).
- Config-store keys and values are limited in UTF-8 bytes (512 and 32 KiB), which a schema
  cannot say (it counts characters): a valid case's keys and values are cut to the byte limit
  (over it is a documented 400). Hooks change valid cases only: an invalid case stays invalid.
- ``unknown_headers_are_allowed``: the coverage phase counts a request with one header the
  operation does not name (``x-schemathesis-unknown-property``) as invalid; HTTP says a
  recipient ignores header fields it does not recognize (RFC 9110 section 5.1), so the node
  accepting it is right, and that one failure is dropped; so is the acceptance of a "negative"
  case in which schemathesis says it made nothing invalid ("default positive test case").
- ``wait_ms`` of a lock acquire is cut to at most ``MAX_FUZZ_WAIT_MS``: a valid wait of up to 60 s
  on a held lock is answered after that wait, by design, which would only make the run slow.
- ``GET /v1/watch`` waits up to ``timeout_ms`` for an event; a long-poll that waits its whole
  time tells the fuzzer nothing, so valid cases wait at most ``WATCH_MS``.
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


WATCH_MS = 50
MAX_FUZZ_WAIT_MS = 50
KEY_BYTES, VALUE_BYTES = 512, 32 * 1024


def _fit(data: Any, field: str = "") -> Any:
    """Return ``data`` with every "key" (and "value") string cut to its limit in UTF-8 bytes."""
    if isinstance(data, dict):
        return {k: _fit(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [_fit(v, field) for v in data]
    if isinstance(data, str) and field in ("key", "value"):
        limit = KEY_BYTES if field == "key" else VALUE_BYTES
        while len(data.encode("utf-8", "surrogatepass")) > limit:
            data = data[: len(data) - 1]
    return data


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """``unknown_headers_are_allowed`` (see the module docstring): keep every other failure."""
    data = getattr(getattr(getattr(case, "meta", None), "phase", None), "data", None)
    unexpected_header = (getattr(getattr(data, "scenario", None), "value", None) == "object_unexpected_properties"
                         and getattr(getattr(data, "parameter_location", None), "value", None) == "header")
    if type(failure).__name__ != "AcceptedNegativeData":
        return True
    # Schemathesis names the component it made invalid; "default positive test case" means it
    # made none (a negative case it could not negate), so accepting it is right.
    nothing_invalid = str(getattr(data, "description", "")).lower() == "default positive test case"
    return not (unexpected_header or nothing_invalid)


def _positive(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    return meta is None or meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if case.operation.path == "/v1/watch":  # a valid wait is shortened; an invalid one stays invalid
        query = case.query if isinstance(case.query, dict) else {}
        timeout = query.get("timeout_ms")
        if timeout is None or (isinstance(timeout, int) and not isinstance(timeout, bool) and WATCH_MS < timeout <= 60_000):
            case.query = {**query, "timeout_ms": WATCH_MS}
    if not _positive(case):
        return case  # a case meant to be invalid stays invalid (the server must refuse it)
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("wait_ms"), int) and not isinstance(body["wait_ms"], bool):
        body["wait_ms"] = min(body["wait_ms"], MAX_FUZZ_WAIT_MS)
    if isinstance(case.path_parameters, dict):
        case.path_parameters = _fit(case.path_parameters)
    if isinstance(case.body, (dict, list)):
        case.body = _fit(case.body)
    headers = case.headers
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key" and isinstance(headers[name], str) and _KEY.fullmatch(headers[name]):
                headers[name] = "st-" + uuid.uuid4().hex
            if name.lower() == "x-raft-session":
                match = _SESSION.fullmatch(str(headers[name]))
                if match is None or int(match.group(2)) > int(match.group(1)):
                    headers[name] = "999999:2:1"
    return case
