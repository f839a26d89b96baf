"""Writes the gateway's OpenAPI schema to web/src/api/openapi.json (the source of the generated API types).

Run by scripts/build_dashboard.sh before `npm run gen:api`; tests/browser/test_api_types.py checks the file
still matches the gateway's schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "web" / "src" / "api" / "openapi.json"


def schema() -> dict:
    sys.path.insert(0, str(ROOT))
    from services.gateway.app import create_app

    return create_app().openapi()


def main() -> None:
    OUT.write_text(json.dumps(schema(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
