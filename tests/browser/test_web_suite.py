"""The dashboard's own checks, run where the rest of the suite runs: `tsc --noEmit` (the API types, the schema
check and the guide's example compiled against the real hook) and the Vitest suite (the hook, the event stream,
the job card, the New Job form built from the training spec).

Needs Node.js >= 20.19 with npm and `npm ci` done in web/ (.ci/run installs Node from Debian's packages and runs
`npm ci`); skipped, saying which is missing, otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
MIN_NODE = (20, 19)


def _node_problem() -> str | None:
    node, npx = shutil.which("node"), shutil.which("npx")
    if not node or not npx:
        return "Node.js and npm are not installed (apt-get install nodejs npm)"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    m = re.match(r"v(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_NODE:
        return f"Node.js {out or '?'} is older than {MIN_NODE[0]}.{MIN_NODE[1]} (vite and vitest need it)"
    if not (WEB / "node_modules" / ".bin" / "vitest").exists():
        return "web/node_modules is missing: run `npm ci` in web/"
    return None


PROBLEM = _node_problem()
pytestmark = [pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or ""), pytest.mark.timeout(600)]


def _run(*cmd: str) -> None:
    env = dict(os.environ, CI="1", NO_COLOR="1", FORCE_COLOR="0")
    proc = subprocess.run(cmd, cwd=WEB, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"


def test_typescript_compiles():
    _run("npx", "tsc", "--noEmit", "-p", "tsconfig.json")


def test_vitest_suite_passes():
    _run("npx", "vitest", "run")
