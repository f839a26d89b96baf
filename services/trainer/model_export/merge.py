"""Folding a job's LoRA adapter into its base model: ``export/merged/`` (config.json, generation_config.json,
model.safetensors, the tokenizer files), loadable with ``AutoModelForCausalLM.from_pretrained``.

The merge runs on the CPU in float32 (W' = W + scale * B @ A for every adapted module, peft's
``merge_and_unload``) and the merged weights are saved in the base model's own dtype (``torch_dtype`` of its
config.json; float32 when it says none). Before writing, the merged model's logits on a few probe prompts are
compared with base + adapter (unmerged) in the same process; the largest absolute difference is reported
(``max_abs_logit_diff``) and a merge that drifts by more than ``MERGE_TOLERANCE`` fails instead of writing.

A QLoRA job (4-bit NF4 base) trained its adapter against the quantized base, so its adapter merges into the
*dequantized* base: the base is loaded with the same bitsandbytes config the worker used and dequantized
(``model.dequantize()``), which gives the exact weights the adapter was trained on, in full precision. 8-bit
(LLM.int8) works the same way. Where bitsandbytes cannot load it here, the full-precision base is used and a
warning says so (the job itself trained in full precision in that case, see its metrics.json).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MERGE_TOLERANCE = 1e-3
"""The largest absolute logit difference (float32) allowed between the merged model and base + adapter."""
PROBE_PROMPTS = (
    "Should the court uphold the contract clause?",
    "Summarize the debate in one sentence.",
    "The strongest argument against the claim is",
)

Progress = Callable[[str, int, int, str], None]
"""progress(phase, done, total, message)"""


class ExportError(Exception):
    """An export cannot be made; the message says why (shown to the user)."""


@dataclass
class JobFiles:
    """What an export needs from a completed job's folder."""

    job_dir: Path
    name: str
    base_model: str
    base_path: Path
    adapter_dir: Path
    quantization: str  # what the job actually trained against: "4bit", "8bit" or "none"

    @classmethod
    def load(cls, job_dir: Path) -> JobFiles:
        try:
            spec = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"the job folder has no readable job.json: {exc}") from None
        adapter = job_dir / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise ExportError("the job has no final adapter (adapter/adapter_config.json)")
        base_path = Path(spec.get("model_path") or "")
        if not (base_path / "config.json").is_file():
            raise ExportError(f"the base model {spec.get('base_model')!r} is not on this server ({base_path})")
        quantization = str((spec.get("training_config") or {}).get("quantization") or "none")
        try:  # what the worker really used (it falls back to full precision where bitsandbytes cannot load)
            quantization = json.loads((job_dir / "metrics.json").read_text(encoding="utf-8")).get(
                "quantization") or quantization
        except (OSError, ValueError):
            pass
        return cls(job_dir, str(spec.get("name") or spec.get("job_id") or "model"), str(spec.get("base_model") or ""),
                   base_path, adapter, quantization)


def _load_base(files: JobFiles, warn: Callable[[str], None]):
    import torch
    from transformers import AutoModelForCausalLM

    if files.quantization in ("4bit", "8bit"):
        try:
            from transformers import BitsAndBytesConfig

            bnb = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.float32)
                   if files.quantization == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
            model = AutoModelForCausalLM.from_pretrained(files.base_path, quantization_config=bnb,
                                                         dtype=torch.float32, device_map={"": "cpu"})
            model = model.dequantize()
            return model.float()
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            warn(f"cannot load the {files.quantization} base here ({reason}); merging into the full-precision base")
    return AutoModelForCausalLM.from_pretrained(files.base_path, dtype=torch.float32)


def _probe_logits(model, tokenizer):
    import torch

    out = []
    with torch.no_grad():
        for prompt in PROBE_PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            out.append(model(input_ids=ids).logits.float())
    return out


def _save_dtype(base_path: Path):
    import torch

    try:
        config = json.loads((base_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return torch.float32
    name = config.get("torch_dtype") or config.get("dtype") or "float32"
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(name), torch.float32)


def merge(files: JobFiles, target: Path, progress: Progress, warn: Callable[[str], None]) -> dict:
    """Writes the merged model to ``target`` (atomically: ``.<name>.tmp`` then rename) and returns its check
    figures: ``max_abs_logit_diff`` against base + adapter and the dtype written."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    steps = 5
    progress("merge", 0, steps, f"loading the base model {files.base_model} ({files.quantization})")
    tokenizer_dir = files.adapter_dir if (files.adapter_dir / "tokenizer_config.json").is_file() else files.base_path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = _load_base(files, warn)
    base.eval()
    progress("merge", 1, steps, "attaching the adapter")
    try:
        model = PeftModel.from_pretrained(base, files.adapter_dir, is_trainable=False)
    except Exception as exc:
        raise ExportError(f"cannot load the adapter: {exc}") from None
    model.eval()
    reference = _probe_logits(model, tokenizer)
    progress("merge", 2, steps, "folding the adapter into the base weights")
    merged = model.merge_and_unload()
    merged.eval()
    diff = max(float((a - b).abs().max()) for a, b in zip(reference, _probe_logits(merged, tokenizer)))
    if not diff <= MERGE_TOLERANCE:
        raise ExportError(f"the merged model's logits differ from base + adapter by {diff:.3g} "
                          f"(> {MERGE_TOLERANCE}); nothing was written")
    dtype = _save_dtype(files.base_path)
    progress("merge", 3, steps, f"writing model.safetensors ({str(dtype).removeprefix('torch.')})")
    if dtype != torch.float32:
        merged = merged.to(dtype)
    merged.config.use_cache = True
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(merged.config, attr):
            try:
                delattr(merged.config, attr)
            except AttributeError:
                pass
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        # One file however big (the product promises model.safetensors).
        merged.save_pretrained(tmp, safe_serialization=True, max_shard_size="10000GB")
        tokenizer.save_pretrained(tmp)
        progress("merge", 4, steps, "publishing")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress("merge", steps, steps, "merged model written")
    return {"max_abs_logit_diff": diff, "tolerance": MERGE_TOLERANCE,
            "dtype": str(dtype).removeprefix("torch."), "merged_into": files.quantization}
