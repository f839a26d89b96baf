"""The hash of the dashboard's sources: what tests/browser/test_bundle_fresh.py compares with the hash that
scripts/build_dashboard.sh wrote into the served bundle (services/gateway/static/dashboard/build-info.json).

Every file under web/ counts except installed packages, build output and unit tests (a test changes no byte of
the bundle). Plain Python, so the check runs where Node.js is not installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

WEB = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"node_modules", "dist", "coverage", "__pycache__", ".vite", "__tests__"}
SKIP_SUFFIXES = (".test.ts", ".test.tsx", ".tsbuildinfo", ".pyc")


def source_files(web: Path = WEB) -> list[Path]:
    out = []
    for path in web.rglob("*"):
        rel = path.relative_to(web)
        if any(part in SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        if path.name.endswith(SKIP_SUFFIXES):
            continue
        out.append(path)
    return sorted(out, key=lambda p: p.relative_to(web).as_posix())


def source_hash(web: Path = WEB) -> str:
    h = hashlib.sha256()
    for path in source_files(web):
        h.update(path.relative_to(web).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="write build-info JSON with the hash to this file")
    args = parser.parse_args()
    digest = source_hash()
    if args.write:
        info = {"source_hash": digest, "source_files": len(source_files()),
                "rebuild": "scripts/build_dashboard.sh"}
        args.write.write_text(json.dumps(info, indent=2) + "\n")
    print(digest)


if __name__ == "__main__":
    main()
