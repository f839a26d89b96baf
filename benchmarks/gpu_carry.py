"""Packs what ``benchmarks/gpu_bench.sh`` needs on a GPU machine that cannot reach a package index or the Hub.

    .venv/bin/python benchmarks/gpu_carry.py       # here: writes .gpu/ (ignored by git) and prints its size
    bash benchmarks/gpu_bench.sh                    # there, from the repository root, with .gpu/ copied along

``.gpu/`` holds:

- ``site.tar.gz``: the Python packages the rows import that such a machine's image may lack or hold at other
  versions, unpacked from their CPython wheels for that machine's Python (``--python-version``, 3.12 by default)
  at the versions of this checkout's environment (the ones the tests ran with), plus liger-kernel for TRL's
  kernel row. bitsandbytes keeps its CUDA 13 and CPU libraries only: its wheel carries ~110 MB more for other
  CUDA versions and ROCm. A PyTorch with CUDA is expected there (the rows import it, it is not carried).
- ``model/``: the configuration and tokenizer of the model folder (no weights: the rows random-initialise them,
  at its own shape and at ``train_bench --architecture smollm2-1.7b``).
- ``data/``: the sample debates' SFT records and DPO pairs, exported here through the real exporter code (its
  database packages stay on this side).

The folder and the checkout together must stay under what the GPU machine's transfer takes (64 MiB here); the
script prints both sizes.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CARRIED = (
    # the training stack at this checkout's versions
    "transformers", "peft", "trl", "datasets", "dill", "multiprocess", "bitsandbytes",
    # the product's spec and settings (pydantic) and its generated gRPC modules' runtimes, whose version checks
    # refuse an older runtime than the code was generated with
    "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "annotated-types", "typing-inspection",
    "protobuf", "grpcio", "googleapis-common-protos", "orjson",
)
EXTRA = {"liger-kernel": "0.8.5"}
"""Carried at a fixed version: not a dependency of this checkout (its Triton kernels run on a GPU only)."""
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux1_x86_64")
BNB_KEEP = ("libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so", "libbitsandbytes_cpu.so")


def download(names: dict[str, str], python_version: str, dest: Path) -> list[Path]:
    """Each ``name==version`` as a wheel for CPython ``python_version`` on x86-64 Linux, dependencies not
    followed (the list above is the closure the GPU image lacks)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, version in names.items():
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "--dest", str(dest),
               *[x for p in PLATFORMS for x in ("--platform", p)], f"{name}=={version}"]
        subprocess.run(cmd, check=True)
    return sorted(dest.glob("*.whl"))


def unpack(wheels: list[Path], site: Path) -> None:
    """Wheels unpacked into one folder for ``PYTHONPATH`` (what pip would install; no scripts needed)."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                top = member.split("/", 1)[0]
                if top.endswith(".data"):  # headers and scripts: nothing the rows import
                    continue
                if top == "bitsandbytes" and member.endswith(".so") and Path(member).name not in BNB_KEEP:
                    continue
                zf.extract(member, site)


def size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    from services.trainer.models import DEFAULT_MODEL_ID

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / ".gpu")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (major.minor)")
    parser.add_argument("--model-path", type=Path,
                        default=REPO / "var" / "models" / DEFAULT_MODEL_ID.replace("/", "--"))
    parser.add_argument("--sft-records", type=int, default=64)
    parser.add_argument("--dpo-pairs", type=int, default=32)
    args = parser.parse_args(argv)
    if not (args.model_path / "config.json").is_file():
        parser.error(f"--model-path: no config.json in {args.model_path} (run `make provision`)")
    versions = {name: metadata.version(name) for name in CARRIED} | EXTRA
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="gpu-carry-") as tmp:
        wheels = download(versions, args.python_version, Path(tmp) / "wheels")
        site = Path(tmp) / "site"
        unpack(wheels, site)
        with tarfile.open(out / "site.tar.gz", "w:gz", compresslevel=9) as tar:
            tar.add(site, arcname="site")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_bench import copy_model_files, export_samples

    (out / "model").mkdir()
    copy_model_files(args.model_path, out / "model")
    export_samples(out / "data", args.sft_records, args.dpo_pairs)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    tree = sum((REPO / p).stat().st_size for p in tracked.decode().split("\0") if p and (REPO / p).is_file())
    print("carried: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"{out}: {size_mib(out):.1f} MiB (site.tar.gz {(out / 'site.tar.gz').stat().st_size / 2**20:.1f}); "
          f"with the checkout's tracked files {size_mib(out) + tree / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
