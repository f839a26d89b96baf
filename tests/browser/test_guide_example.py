"""The user guide's React example is compiled unchanged: web/src/examples/GuideExample.tsx holds it verbatim
between two markers, and `tsc --noEmit` (tests/browser/test_web_suite.py, and the dashboard's build)
type-checks it against the real hook.

What is checked lives in the repository: the example's text is pinned by the SHA-256 of the guide's "React
Hook" code block (taken from the user guide when the example was copied in), so an edit of the example, or a
hook change that would need one, fails here in any clone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "web" / "src" / "examples" / "GuideExample.tsx"
# sha256 of the ```tsx block under "## React Hook" in the user guide (USER_GUIDE.md).
GUIDE_SNIPPET_SHA256 = "3b5fe7793ac5ee9221305717c93771be765c064968e3013513984df5b148c840"


def _example_body() -> str:
    text = EXAMPLE.read_text()
    return text.split("// --- guide example: begin ---\n", 1)[1].split("// --- guide example: end ---", 1)[0]


def test_the_guide_example_is_kept_verbatim():
    body = _example_body()
    assert hashlib.sha256(body.encode()).hexdigest() == GUIDE_SNIPPET_SHA256, (
        "web/src/examples/GuideExample.tsx no longer holds the user guide's React example verbatim")
    # It imports the hook from where the guide says, and that module exists.
    assert "import { useFineTuning } from '@/hooks/useFineTuning';" in body
    assert (REPO / "web" / "src" / "hooks" / "useFineTuning.ts").is_file()


def test_the_example_is_type_checked():
    """tsc compiles every file under web/src, and '@/' resolves to web/src: the example is in the check."""
    tsconfig = json.loads((REPO / "web" / "tsconfig.json").read_text())
    assert "src" in tsconfig["include"]
    assert tsconfig["compilerOptions"]["paths"]["@/*"] == ["src/*"]
    assert tsconfig["compilerOptions"]["strict"] is True
