"""Writes the sample debates that `make up` loads on first start: services/exporter/samples/debates.jsonl.

    python scripts/generate_samples.py                      # the committed file (750 debates, 200 gauntlet runs)
    python scripts/generate_samples.py --debates 50000 --out /tmp/big.jsonl

The content and why it is learnable are described in scripts/samples/generate.py; the topics are data, in
scripts/samples/cases.json. Output is deterministic for a given --seed, so regenerating the committed file gives
the same bytes (tests/exporter/test_samples.py checks it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a plain script from a checkout

from scripts.samples.generate import generate

DEFAULT_OUT = REPO / "services" / "exporter" / "samples" / "debates.jsonl"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debates", type=int, default=750, help="debates to generate (default 750)")
    p.add_argument("--gauntlet", type=int, default=200, help="gauntlet runs to generate (default 200)")
    p.add_argument("--seed", type=int, default=20240501)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(args.out, "wb") as fh:
        for record in generate(args.debates, args.gauntlet, args.seed):
            fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    print(f"wrote {n} records to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
