"""The user guide's React example is compiled unchanged: web/src/examples/GuideExample.tsx holds it verbatim
(tsc --noEmit in the dashboard's build type-checks it against the real hook)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO.parent / "shared" / "USER_GUIDE.md"
EXAMPLE = REPO / "web" / "src" / "examples" / "GuideExample.tsx"


def test_the_guide_example_is_compiled_verbatim():
    if not GUIDE.is_file():
        pytest.skip(f"the user guide is not at {GUIDE}")
    guide = GUIDE.read_text()
    section = guide[guide.index("## React Hook"):]
    snippet = re.search(r"```tsx\n(.*?)```", section, re.S).group(1)
    text = EXAMPLE.read_text()
    body = text.split("// --- guide example: begin ---\n", 1)[1].split("// --- guide example: end ---", 1)[0]
    assert body == snippet
    # And it imports the hook from where the guide says.
    assert "import { useFineTuning } from '@/hooks/useFineTuning';" in body
    assert (REPO / "web" / "src" / "hooks" / "useFineTuning.ts").is_file()
