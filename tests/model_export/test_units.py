"""The pieces of merge/export that need no trainer: the QLoRA merge into the dequantized 4-bit base, Range header
parsing, Llama 3.1 RoPE factors, the pre-tokenizer names, and the manifest a restarted trainer reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from services.gateway.routers.jobs import parse_range
from services.trainer.model_export.gguf_export import _pre_tokenizer_name, llama3_rope_factors


@pytest.fixture(scope="module")
def adapter_job(tmp_path_factory, tiny_models_dir) -> Path:
    """A job folder (job.json asking for 4-bit, an adapter with random non-zero LoRA weights) over the tiny base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_models_dir / "test--tiny-llama"
    job = tmp_path_factory.mktemp("qlora") / "job-q"
    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(job / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(job / "adapter")
    (job / "job.json").write_text(json.dumps({"job_id": "job-q", "name": "q", "base_model": "test/tiny-llama",
                                              "model_path": str(base), "training_config": {"quantization": "4bit"}}))
    return job


def test_a_qlora_adapter_merges_into_the_dequantized_4bit_base(adapter_job):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from services.trainer.model_export.merge import JobFiles, merge

    warnings = []
    checks = merge(JobFiles.load(adapter_job), adapter_job / "export" / "merged", lambda *a: None, warnings.append)
    assert warnings == [] and checks["merged_into"] == "4bit"
    merged = AutoModelForCausalLM.from_pretrained(adapter_job / "export" / "merged").eval()
    assert getattr(merged.config, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(adapter_job / "export" / "merged")
    base_path = Path(json.loads((adapter_job / "job.json").read_text())["model_path"])
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.float32)
    base_4bit = AutoModelForCausalLM.from_pretrained(base_path, quantization_config=bnb, dtype=torch.float32,
                                                     device_map={"": "cpu"})
    qlora = PeftModel.from_pretrained(base_4bit, adapter_job / "adapter").eval()
    full = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), adapter_job / "adapter").eval()
    ids = torch.tensor([tok("Should the court uphold the contract clause? The risk is").input_ids])
    with torch.no_grad():
        m, q, f = (x(input_ids=ids).logits for x in (merged, qlora, full))
    to_qlora, to_full = float((m - q).abs().max()), float((m - f).abs().max())
    # The merged model is the model the adapter was trained as (4-bit base + adapter), not the original base's.
    assert to_qlora < 1e-2 and to_qlora * 5 < to_full


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-", (0, None)), ("bytes=10-19", (10, 19)), ("bytes=-5", (None, 5)),
    ("BYTES = 7 - ", None), ("bytes= 7-", (7, None)), ("bytes=9-3", None), ("bytes=0-1,4-5", None), ("items=0-", None),
    ("bytes=-0", None), ("bytes=-", None), ("bytes=a-b", None), ("bytes=" + "9" * 19 + "-", None),
])
def test_range_header_parsing(header, expected):
    assert parse_range(header) == expected


def test_llama3_rope_factors_follow_the_scaling_rule():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    config = {"rope_theta": 500000.0, "rope_scaling": scaling}
    factors = llama3_rope_factors(config, 128)
    assert len(factors) == 64 and factors[0] == 1.0 and factors[-1] == 8.0
    assert factors == sorted(factors) and any(1.0 < f < 8.0 for f in factors)
    assert llama3_rope_factors({"rope_theta": 10000.0}, 64) is None


def test_pre_tokenizer_names():
    assert _pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}) == "gpt-2"
    assert _pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "use_regex": True}]}}) == "smollm"
    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    assert _pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": llama3}}, {"type": "ByteLevel", "use_regex": False}]}}) == "llama-bpe"
    assert _pre_tokenizer_name({"pre_tokenizer": None}) == "default"


async def test_a_restarted_trainer_lists_what_the_manifest_says(trained_job):
    from services.trainer.model_export.manager import STOPPED_REASON, ExportManager

    job_id, folder = trained_job["job"].id, trained_job["folder"]
    manifest = folder / "export" / "manifest.json"
    saved = manifest.read_text() if manifest.exists() else None
    try:
        data = json.loads(saved) if saved else {}
        data["gguf_q8_0"] = {"status": "running", "progress": 0.4, "phase": "gguf_q8_0", "files": []}
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(data))
        leftover = folder / "export" / ".leftover-q8_0.gguf.tmp"
        leftover.write_bytes(b"half")
        fresh = ExportManager(trained_job["running"].manager)  # what a restarted trainer builds
        states = {s.kind: s for s in await fresh.list(job_id)}
        assert states["gguf_q8_0"].status == "cancelled" and states["gguf_q8_0"].error == STOPPED_REASON
        assert not leftover.exists()
        assert json.loads(manifest.read_text())["gguf_q8_0"]["status"] == "cancelled"
    finally:
        if saved is not None:
            manifest.write_text(saved)
