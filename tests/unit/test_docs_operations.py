"""docs/operations.md tells the truth: its secret recipe makes a secret with 256 bits of entropy,
and every `consensus serve` flag it names exists with the default it states."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from consensus.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docs" / "operations.md").read_text()


def test_the_secret_recipe_runs_and_makes_a_strong_secret(tmp_path):
    command = re.search(r"^\s*(python -c '[^']+') > secret && chmod 600 secret$", TEXT, re.M)
    assert command, "docs/operations.md lost its secret recipe"
    code = re.search(r"-c '([^']+)'", command.group(1)).group(1)
    secrets = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
               for _ in range(2)}
    assert len(secrets) == 2  # random each time
    for secret in secrets:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # 32 bytes, urlsafe base64: 256 bits


def serve_parser():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices["serve"]  # the registered subcommand


def test_every_limit_in_the_table_is_a_serve_flag_with_that_default():
    actions = {a.option_strings[0]: a for a in serve_parser()._actions if a.option_strings}
    rows = re.findall(r"^\| `(--[a-z-]+) [A-Z]+` \| (\d+) \|", TEXT, re.M)
    assert {flag for flag, _ in rows} == {"--header-timeout", "--idle-timeout", "--max-connections", "--max-in-flight"}
    for flag, default in rows:
        assert flag in actions and float(actions[flag].default) == float(default), flag


def test_every_serve_flag_named_in_the_doc_exists():
    actions = {s for a in serve_parser()._actions for s in a.option_strings}
    named = set(re.findall(r"`(--[a-z-]+)", TEXT))
    serve_only = {"--base-port", "--http-base-port", "--endpoints", "--timeout", "--json", "--to", "--nodes"}
    assert named - serve_only <= actions | {"--log-level"}, named - serve_only - actions
