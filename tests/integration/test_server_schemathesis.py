"""An independent fuzzer finds nothing: /openapi.json is valid OpenAPI, and schemathesis
(`--checks all`, coverage, fuzzing and stateful phases along the document's links) runs against a
real `consensus serve` with no failure.

The run is bounded (fixed seed, few examples per operation: about half a minute here). Its
config and hooks (tests/data/schemathesis/, tests/integration/schemathesis_hooks.py) say what
the fuzzer cannot know: a tiny X-Request-Timeout may run out (and must then say so honestly),
and a reused Idempotency-Key with a different request is a documented 400.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from openapi_spec_validator import validate

from consensus.server import load_apps
from consensus.server.apps import available_apps
from tests.integration.server_procs import ROOT, ServeProcess, env, pid_alive

pytestmark = pytest.mark.timeout(300)
TOKEN = "schemathesis-token"


def test_the_document_of_every_app_is_valid_openapi(tmp_path):
    from tests.integration.test_server_openapi import build

    server, _ = build(tmp_path)
    server.routes.extend(route for spec in load_apps([a for a in available_apps() if a != "counter"])
                         for route in spec.routes())
    from consensus.server.openapi import build_document

    for token_required in (False, True):
        validate(build_document(server.routes, token_required=token_required))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schemathesis")
    (tmp / "token").write_text(TOKEN)
    server = ServeProcess(tmp, "--token-file", str(tmp / "token"), "--apps", ",".join(available_apps()))
    try:
        yield server.start()
    finally:
        assert server.stop() == 0, server.log.read_text()[-2000:]
        assert not pid_alive(server.proc.pid)


def test_the_served_document_is_valid_openapi(node):
    document = requests.get(node.url + "/openapi.json", timeout=10).json()
    validate(document)  # raises on any error: 3.1 syntax in a 3.0.3 document was one
    timeout = next(p for p in document["paths"]["/v1/status"]["get"]["parameters"] if p["name"] == "X-Request-Timeout")
    assert timeout["schema"]["minimum"] == 0.001 and "exclusiveMinimum" not in timeout["schema"]
    for methods in document["paths"].values():
        for operation in methods.values():
            for parameter in operation["parameters"]:
                pattern = parameter["schema"].get("pattern")
                assert pattern is None or (pattern.startswith("^") and pattern.endswith("$")), parameter


def test_schemathesis_finds_no_failure(node, tmp_path):
    run_env = {**env(), "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks"}
    out = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "tests/data/schemathesis/schemathesis.toml"),
         "run", node.url + "/openapi.json", "--checks", "all", "--max-examples", "10", "--seed", "7",
         "--header", f"Authorization: Bearer {TOKEN}", "--request-timeout", "70", "--report", "junit",
         "--report-dir", str(tmp_path)],
        cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=280)  # its cache goes there, not in the repo
    summary = out.stdout[out.stdout.find("SUMMARY"):] if "SUMMARY" in out.stdout else out.stdout[-3000:]
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "Stateful" in out.stdout and " passed" in summary, summary
    assert "API Links:" in out.stdout and " 0 covered" not in out.stdout  # the document's links were followed
    status = requests.get(node.url + "/v1/status", timeout=5).json()
    assert status["role"] == "leader" and status["peers"] == []  # no member slipped in; the node still leads
    assert "Traceback" not in node.log.read_text()
