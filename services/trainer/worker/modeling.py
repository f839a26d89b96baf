"""Loading the base model for LoRA training: device and dtype, bitsandbytes quantization, gradient checkpointing.

- CUDA: bf16 where the GPU supports it (else fp32); CPU: fp32, because CPUs without bf16 matrix units run bf16
  matmuls ~100x slower than fp32 (this machine's included).
- ``quantization`` 4bit/8bit loads the base with bitsandbytes (NF4 + double quantization, or LLM.int8) and
  prepares it with peft's ``prepare_model_for_kbit_training`` (QLoRA). bitsandbytes >= 0.45 runs on CPUs too.
  The loaded model must hold bitsandbytes layers (``Linear4bit`` / ``Linear8bitLt``): their count is reported in
  the "model ready" log event and in metrics.json (``quantized_layers``).
  Where bitsandbytes cannot run here (not installed, no backend for this device, a missing kernel at the first
  forward, or no layer it could quantize), the job trains in full precision and says why (a warning) rather
  than failing. Any other failure (a missing or corrupt model file, out of memory, a bug) fails the job.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.trainer.worker import fused_lora
from services.trainer.worker.cpu_linear import use_onednn_linears
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import WorkerError


@dataclass
class Loaded:
    model: object          # the PeftModel
    tokenizer: object
    device: object         # torch.device
    dtype: object          # torch dtype of the compute
    quantization: str      # what was actually used: "4bit", "8bit" or "none"
    trainable_parameters: int
    total_parameters: int
    quantized_layers: dict = field(default_factory=dict)
    """bitsandbytes layers of the base model by class name (``{"Linear4bit": 14}``); empty in full precision."""
    cpu_linear: dict = field(default_factory=dict)
    """How the frozen linear layers compute on a CPU (``cpu_linear.use_onednn_linears``); empty on a GPU."""
    lora_path: dict = field(default_factory=dict)
    """How the LoRA layers compute on a CPU (``fused_lora.install``); empty on a GPU."""
    grouped_attention: bool = False
    """A CPU job's grouped-query attention grouped by torch's kernel (``group_gqa_attention``)."""

    @property
    def causal_lm(self):
        """The transformers model under the adapter (its decoder and LM head compute the loss)."""
        return self.model.get_base_model()


def other_running(samples: int = 10, interval: float = 0.02) -> float:
    """How many threads of OTHER processes are running or runnable on the machine right now: the mean over
    ``samples`` readings of ``/proc/stat``'s ``procs_running`` (which counts this one too), 0.0 where there is
    no ``/proc``."""
    readings = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as f:
                line = next(x for x in f if x.startswith("procs_running"))
        except (OSError, StopIteration):
            return 0.0
        readings.append(int(line.split()[1]) - 1)
        if i + 1 < samples:
            time.sleep(interval)
    return sum(readings) / len(readings)


def configure_threads(num_threads: int | None) -> int:
    """Torch threads = the CPUs this process may use (affinity/cgroup-aware), one inter-op thread, and the
    OpenMP wait policy for how busy the machine is.

    Call it before anything imports torch: libgomp reads ``OMP_WAIT_POLICY`` once, when torch loads it.
    Unless the environment sets a policy: idle OpenMP threads wait PASSIVELY when other processes are running
    on at least half the CPUs this process may use, and spin (libgomp's default) otherwise.
    """
    import sys

    n = num_threads or len(os.sched_getaffinity(0)) or 1
    if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        # By default an OpenMP thread spins between parallel regions. When other processes share the cores,
        # it burns the time slices the partner thread of the same region needs: on the shared 2-core dev box
        # (load 5-8) a step ran 2.4x faster with passive waiting. On a quiet machine spinning is faster: each
        # of a step's ~10,000 operations wakes the sleeping threads again (an SFT step 1.2x faster spinning
        # there). Measured in benchmarks/train_bench.py; docs/performance.md.
        if other_running() >= max(1.0, n / 2):
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (only possible once per process)
    return n


def pick_device():
    """(device, dtype): CUDA with bf16 when supported, else CPU fp32."""
    import torch

    if torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())  # a data-parallel rank's own GPU
        return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.device("cpu"), torch.float32


def load_tokenizer(model_path: Path):
    from transformers import AutoTokenizer

    if not (Path(model_path) / "config.json").is_file():
        raise WorkerError(f"base model folder {model_path} has no config.json (was it provisioned?)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except Exception as exc:
        raise WorkerError(f"cannot load the tokenizer of {model_path}: {exc}") from None
    if tokenizer.pad_token_id is None:
        # Padding positions never reach the loss (labels -100, attention mask 0), so any id will do.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _bnb_config(quantization: str, dtype):
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def _smoke_forward(model, device) -> None:
    """A 4-token forward+backward-free pass: a missing bitsandbytes kernel fails here, not at step 1."""
    import torch

    kwargs = {"use_cache": False} if getattr(model.config, "use_cache", None) is not None else {}
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3, 4]], device=device), **kwargs)


class QuantizationUnavailable(Exception):
    """bitsandbytes cannot quantize this model here; the message says why."""


QUANTIZED_LAYER_CLASSES = {"4bit": "Linear4bit", "8bit": "Linear8bitLt"}


def quantized_layers(model) -> dict[str, int]:
    """The model's bitsandbytes layers by class name (``{}`` without bitsandbytes or without any)."""
    import sys

    bnb = sys.modules.get("bitsandbytes")
    if bnb is None:
        return {}
    classes = tuple(getattr(bnb.nn, name) for name in QUANTIZED_LAYER_CLASSES.values())
    out: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, classes):
            out[type(module).__name__] = out.get(type(module).__name__, 0) + 1
    return out


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc)


def _load_quantized(model_path: Path, quantization: str, dtype, device, auto_class=None, **model_kwargs):
    """The base model loaded with bitsandbytes, its quantized layers checked and a first forward run.

    Raises ``QuantizationUnavailable`` for what means bitsandbytes cannot work here: an ``ImportError``
    (bitsandbytes or accelerate missing or broken), a ``RuntimeError`` other than out-of-memory (no backend for
    this device, a kernel missing at the first forward; ``NotImplementedError`` included), or a model in which
    no layer was quantized. Everything else propagates.
    """
    import torch
    from transformers import AutoModelForCausalLM

    stage = "loading the model quantized"
    try:
        model = (auto_class or AutoModelForCausalLM).from_pretrained(
            model_path, quantization_config=_bnb_config(quantization, dtype), dtype=dtype, device_map={"": device},
            **model_kwargs)
        layers = quantized_layers(model)
        wanted = QUANTIZED_LAYER_CLASSES[quantization]
        if not layers.get(wanted):
            raise QuantizationUnavailable(f"no layer of {Path(model_path).name} was quantized (no bitsandbytes "
                                          f"{wanted} in the loaded model)")
        if quantization == "4bit" and torch.device(device).type == "cpu":
            # bitsandbytes' CPU path passes no gradient once its inference layout is in use (quantized.py).
            from services.trainer.worker.quantized import use_dequantized_forward

            model.dequantized_forward = use_dequantized_forward(model, dtype)
        stage = "the first quantized forward"
        _smoke_forward(model, device)
    except (ImportError, RuntimeError) as exc:
        if _is_out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise QuantizationUnavailable(f"{stage} failed: {type(exc).__name__}"
                                      + (f": {first}" if first else "")) from exc
    return model, layers


def load_model(model_path: Path, spec, tokenizer, events: EventSink, auto_class=None, lora_config=None,
               **model_kwargs) -> Loaded:
    """The base model with a fresh LoRA adapter (seeded), ready to train.

    ``auto_class`` (default ``AutoModelForCausalLM``), ``lora_config`` (default ``spec.to_lora_config()``; or a
    function of the loaded model returning one) and
    ``model_kwargs`` (to ``from_pretrained``) let a method load another head (the reward method: a
    sequence-classification model with one label, its head trained and saved with the adapter).
    """
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    device, dtype = pick_device()
    quantization = spec.quantization
    model, layers = None, {}
    if quantization in ("4bit", "8bit"):
        try:
            torch.manual_seed(spec.seed)  # a head the checkpoint lacks is drawn here: same seed, same head
            model, layers = _load_quantized(model_path, quantization, dtype, device, auto_class, **model_kwargs)
        except QuantizationUnavailable as exc:
            events.warning(f"bitsandbytes {quantization} unavailable here ({exc}); training in full precision")
            model, quantization = None, "none"
        except Exception as exc:
            if _is_out_of_memory(exc):
                raise
            raise WorkerError(f"cannot load the base model from {model_path} ({quantization}): {exc}") from None
    if model is None:
        quantization = "none"
        try:
            torch.manual_seed(spec.seed)
            model = (auto_class or AutoModelForCausalLM).from_pretrained(model_path, dtype=dtype,
                                                                         **model_kwargs).to(device)
        except Exception as exc:
            raise WorkerError(f"cannot load the base model from {model_path}: {exc}") from None
    dequantized = getattr(model, "dequantized_forward", None)
    if dequantized and dequantized["layers"]:
        events.log(f"4-bit layers on the CPU: NF4 weights dequantized to {str(dtype).removeprefix('torch.')} "
                   + (f"once and kept ({dequantized['cache_bytes'] / 2**20:.0f} MiB, fits in memory)"
                      if dequantized["cached"] else "at each matmul (copies would not fit in memory)"))
    if getattr(model.config, "use_cache", None) is not None:
        model.config.use_cache = False
    total = model.num_parameters()  # counts 4-bit packed weights as their real parameter count

    ckpt_kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen inputs, no input grads needed
    if quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=ckpt_kwargs)
    elif spec.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(ckpt_kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)

    missing = [m for m in spec.target_modules if not any(n.split(".")[-1] == m or n.endswith("." + m)
                                                         for n, _ in model.named_modules())]
    if missing:
        raise WorkerError(f"training_config.target_modules: {', '.join(missing)} not found in "
                          f"{Path(model_path).name} (its linear layers include: {_linear_names(model)})")
    torch.manual_seed(spec.seed)  # the LoRA A matrices are drawn here: same seed, same initial adapter
    if callable(lora_config):
        lora_config = lora_config(model)
    peft_model = get_peft_model(model, lora_config or spec.to_lora_config())
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    on_cpu = torch.device(device).type == "cpu"
    cpu = use_onednn_linears(peft_model) if on_cpu else {}
    lora_path = fused_lora.install(peft_model) if on_cpu else {}
    grouped = group_gqa_attention(model.config) if on_cpu else False
    return Loaded(peft_model, tokenizer, device, dtype, quantization, trainable, total, layers, cpu, lora_path,
                  grouped)


GQA_ENV = "TRANSFORMERS_SDPA_FORCE_GQA"


def group_gqa_attention(config) -> bool:
    """On a CPU: whether a grouped-query-attention model's SDPA attention lets torch's kernel group the query heads
    (``enable_gqa``) instead of transformers repeating the key/value heads into a copy first.

    transformers' own switch (``TRANSFORMERS_SDPA_FORCE_GQA=1``, read at each attention call; its default uses
    ``enable_gqa`` only without a mask, for CUDA's kernels). torch's CPU flash kernel takes it with a mask: the
    same attention without the copies and the backward's sums over them, 1.06x an SFT step of SmolLM2 (9 query
    heads on 3 key/value heads; 24 steps interleaved in one process, distinct and long data alike). This process
    is one job's worker, and the setting is made only for a CPU job; an explicit value in the environment wins
    (``0`` keeps transformers' default)."""
    heads, kv_heads = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    if not heads or not kv_heads or kv_heads == heads:
        return False
    os.environ.setdefault(GQA_ENV, "1")
    return os.environ[GQA_ENV] == "1"


def _linear_names(model) -> str:
    import torch

    names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    return ", ".join(names[:12])
