"""Writes the gateway's schemas into web/src/api/: openapi.json (the source of the generated API types) and
trainingConfig.schema.json (the training parameters' JSON Schema, served at GET /api/training/config-schema,
that the New Job form is built from).

Run by scripts/build_dashboard.sh before `npm run gen:api`; tests/browser/test_api_types.py checks both files
still match the gateway.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "web" / "src" / "api"
OUT = API / "openapi.json"
CONFIG_SCHEMA = API / "trainingConfig.schema.json"


def schema() -> dict:
    sys.path.insert(0, str(ROOT))
    from services.gateway.app import create_app

    return create_app().openapi()


def config_schema() -> dict:
    sys.path.insert(0, str(ROOT))
    from services.common.training_spec import config_json_schema

    return config_json_schema()


def main() -> None:
    OUT.write_text(json.dumps(schema(), indent=1, sort_keys=True) + "\n")
    # Key order kept: the form shows the parameters in the spec's order.
    CONFIG_SCHEMA.write_text(json.dumps(config_schema(), indent=1) + "\n")
    for path in (OUT, CONFIG_SCHEMA):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
