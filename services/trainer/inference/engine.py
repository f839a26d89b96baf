"""Loaded models and their decoding.

One base model is loaded once and every adapter of it is attached to that same copy (PEFT multi-adapter).
The streams of one base are decoded together by its ``Batcher`` (``batching.py``): continuous batching, one
forward per step over every running stream, rows of different adapters (and of the base) in the same forward
with PEFT's per-row adapter selection. Loaded bases are kept under a memory budget
(``TRAINER_INFERENCE_MEMORY_BYTES``): loading one more evicts the least recently used idle ones, and a model
larger than the budget is refused.

Everything here runs in worker threads (never on the event loop): a stream's own thread renders its prompt,
hands it to the batcher and waits; the batcher's thread runs the forwards. A stream's cancel flag is read
before every step, so a client that goes away costs at most the step under way. torch's intra-op threads in
this process are bounded by ``TRAINER_INFERENCE_THREADS`` so that a training worker on the same machine keeps
the rest.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.trainer import models
from services.trainer.inference.batching import BASE, CANCELLED, LENGTH, STOP, Batcher, Outcome, Row
from services.trainer.inference.lora import LeanLora
from services.trainer.inference.planner import Plan, Sampling, Target

log = logging.getLogger(__name__)

__all__ = ["CANCELLED", "LENGTH", "STOP", "Engine", "Loaded", "Outcome"]


@dataclass
class Loaded:
    """A base model in memory, its tokenizer, and the adapters attached to it."""

    model_id: str
    path: Path
    model: object            # the transformers model (LoRA layers injected once an adapter is attached)
    tokenizer: object
    device: object
    nbytes: int
    context: int
    eos_ids: frozenset
    peft: object | None = None  # the PeftModel over ``model`` once an adapter is attached
    adapters: dict[str, Path] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held for every forward (and while adapters are attached)."""
    render_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while a prompt is encoded: a fast tokenizer must not encode in two threads at once. Not ``lock``:
    the batcher takes that back at once after each step, so a new stream waiting for it to render its prompt
    could wait many steps before joining the batch."""
    users: int = 0
    active: str | None = None
    adapters_on: bool = True
    """Whether PEFT's LoRA layers are enabled, for the forwards PEFT runs itself (``lean`` deferred: DoRA and
    other variants). Switched only when a forward for the base alone follows one with an adapter (or the other
    way round): PEFT's ``disable_adapter()`` context walks every layer twice per step,
    which made a base-model stream ~40% slower than plain ``generate``. A forward mixing adapters per row
    needs them enabled (the base's rows are ``"__base__"``)."""
    batcher: Batcher | None = None
    lean: LeanLora | None = None
    """The lean LoRA forward on ``peft``'s layers (``lora.py``); PEFT's own forward runs only for adapters it
    does not implement, under the ``adapters_on`` / ``active`` switching."""


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def estimate_bytes(folder: Path, bytes_per_param: int) -> int:
    params = models.count_parameters(folder)
    if params:
        return params * bytes_per_param
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) or 1


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


class Engine:
    """The model cache and the decoding loop (thread-safe; call from worker threads)."""

    def __init__(self, memory_bytes: int, threads: int = 0) -> None:
        import torch

        self.memory_bytes = int(memory_bytes)
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        if torch.cuda.is_available():
            self.device = torch.device("cuda", 0)
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        else:
            self.device, self.dtype = torch.device("cpu"), torch.float32
        self._models: OrderedDict[str, Loaded] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self.running = 0
        """Generations in their decoding loop now (tests wait for it to drop after a cancel)."""
        self.finished: list[tuple[str, int]] = []
        """(finish reason, completion tokens) of the latest generations, newest last (at most 100)."""
        self.steps = 0
        """Decoding forwards run (each over a whole batch)."""
        self.largest_batch = 0
        """The most streams decoded by one forward so far."""
        self.mixed_steps = 0
        """Decoding forwards whose rows used different adapters (or the base and an adapter)."""

    # -- the cache -----------------------------------------------------------------------------------------

    def loaded(self) -> dict[str, list[str]]:
        """Base model id -> its attached adapters."""
        with self._cache_lock:
            return {k: sorted(v.adapters) for k, v in self._models.items()}

    def used_bytes(self) -> int:
        with self._cache_lock:
            return sum(m.nbytes for m in self._models.values())

    def acquire(self, target: Target) -> Loaded:
        """The loaded base of ``target`` with its adapter attached, marked in use until ``release``."""
        with self._cache_lock:  # the common case: nothing to load, no wait behind another model's loading
            loaded = self._models.get(target.base_model)
            if loaded is not None and (target.adapter_key is None or target.adapter_key in loaded.adapters):
                self._models.move_to_end(target.base_model)
                loaded.users += 1
                return loaded
        with self._load_lock:
            with self._cache_lock:
                loaded = self._models.get(target.base_model)
                if loaded is not None:
                    self._models.move_to_end(target.base_model)
                    loaded.users += 1
            if loaded is None:
                loaded = self._load_base(target)
            try:
                if target.adapter_key is not None and target.adapter_key not in loaded.adapters:
                    self._attach(loaded, target)
            except BaseException:
                self.release(loaded)
                raise
            return loaded

    def release(self, loaded: Loaded) -> None:
        with self._cache_lock:
            loaded.users -= 1

    def _make_room(self, need: int, model_id: str) -> None:
        if need > self.memory_bytes:
            raise FailedPrecondition(
                f"model {model_id} needs about {need} bytes, more than the inference memory budget "
                f"({self.memory_bytes} bytes, TRAINER_INFERENCE_MEMORY_BYTES)")
        with self._cache_lock:
            used = sum(m.nbytes for m in self._models.values())
            for key in list(self._models):
                if used + need <= self.memory_bytes:
                    break
                victim = self._models[key]
                if victim.users == 0:
                    del self._models[key]
                    used -= victim.nbytes
                    log.info("inference: unloaded %s to make room for %s", key, model_id)
            if used + need > self.memory_bytes:
                raise Unavailable(f"the inference memory budget ({self.memory_bytes} bytes) is taken by models "
                                  f"in use; retry when their generations end")
        import gc

        gc.collect()

    def _load_base(self, target: Target) -> Loaded:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        bytes_per_param = torch.tensor([], dtype=self.dtype).element_size()
        need = estimate_bytes(target.base_path, bytes_per_param)
        self._make_room(need, target.base_model)
        started = time.monotonic()
        tokenizer = AutoTokenizer.from_pretrained(target.base_path)
        model = AutoModelForCausalLM.from_pretrained(target.base_path, dtype=self.dtype).to(self.device)
        model.eval()
        config = model.config
        context = int(getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length or 2048)
        eos: set[int] = set()
        for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif source:
                eos.update(int(x) for x in source)
        nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        loaded = Loaded(target.base_model, target.base_path, model, tokenizer, self.device, nbytes, context,
                        frozenset(eos), users=1)
        loaded.batcher = Batcher(loaded, self._forward, self._pick, self._on_step)
        with self._cache_lock:
            self._models[target.base_model] = loaded
        log.info("inference: loaded %s (%d bytes) in %.1fs", target.base_model, nbytes, time.monotonic() - started)
        return loaded

    def _attach(self, loaded: Loaded, target: Target) -> None:
        from peft import PeftModel

        key, path = target.adapter_key, target.adapter_path
        with loaded.lock:  # no step of another generation while the layers change
            if loaded.peft is None:
                loaded.peft = PeftModel.from_pretrained(loaded.model, path, adapter_name=key, is_trainable=False)
                loaded.active = key
            else:  # attached beside the others; the active adapter stays what it was
                loaded.peft.load_adapter(path, adapter_name=key, is_trainable=False)
            loaded.peft.to(self.device)
            loaded.peft.eval()
            if not loaded.adapters_on:  # a new adapter's layers start enabled: keep one state for all
                loaded.peft.base_model.disable_adapter_layers()
            if loaded.lean is None:
                loaded.lean = LeanLora(loaded.peft)
            else:
                loaded.lean.install()
            loaded.adapters[key] = path
        with self._cache_lock:
            loaded.nbytes += _folder_bytes(path)

    # -- prompts -------------------------------------------------------------------------------------------

    def prompt_ids(self, loaded: Loaded, messages: list[dict]) -> list[int]:
        with loaded.render_lock:  # a fast tokenizer must not encode in two threads at once ("Already borrowed")
            ids = self._render(loaded, messages)
        if len(ids) >= loaded.context:
            raise InvalidArgument(f"the prompt is {len(ids)} tokens; the model's context is {loaded.context} "
                                  "tokens (shorten the messages)", field="messages")
        return ids

    @staticmethod
    def _render(loaded: Loaded, messages: list[dict]) -> list[int]:
        tok = loaded.tokenizer
        if getattr(tok, "chat_template", None):
            out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
            ids = list(out["input_ids"])
        else:  # a model without a chat template: the contents, one per line, then the answer
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            ids = tok(text)["input_ids"]
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return [int(i) for i in ids]

    # -- decoding ------------------------------------------------------------------------------------------

    @staticmethod
    def _forward(loaded: Loaded, keys: list[str | None], **kwargs):
        """The model over a batch whose row i uses the adapter ``keys[i]`` (None: the base)."""
        import torch

        with loaded.lock, torch.inference_mode():
            if loaded.peft is None:
                return loaded.model(**kwargs)
            if loaded.lean.select(keys, loaded.device):  # the LoRA layers read the selection themselves
                return loaded.model(**kwargs)
            first = keys[0]
            if any(k != first for k in keys):  # rows of different adapters: PEFT selects per row
                if not loaded.adapters_on:
                    loaded.peft.base_model.enable_adapter_layers()
                    loaded.adapters_on = True
                return loaded.peft(**kwargs, adapter_names=[BASE if k is None else k for k in keys])
            if first is None:
                if loaded.adapters_on:
                    loaded.peft.base_model.disable_adapter_layers()
                    loaded.adapters_on = False
                return loaded.peft(**kwargs)
            if not loaded.adapters_on:
                loaded.peft.base_model.enable_adapter_layers()
                loaded.adapters_on = True
            if loaded.active != first:
                loaded.peft.set_adapter(first)
                loaded.active = first
            return loaded.peft(**kwargs)

    def _on_step(self, rows: list[Row]) -> None:
        with self._cache_lock:
            self.steps += 1
            self.largest_batch = max(self.largest_batch, len(rows))
            if len({r.key for r in rows}) > 1:
                self.mixed_steps += 1

    @staticmethod
    def _pick(logits, sampling: Sampling, generator) -> int:
        import torch

        if sampling.temperature == 0.0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            sorted_probs[(cumulative - sorted_probs) >= sampling.top_p] = 0.0
            choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
            return int(order[choice])
        return int(torch.multinomial(probs, 1, generator=generator))

    def generate(self, loaded: Loaded, target: Target, prompt: list[int], sampling: Sampling,
                 cancel: threading.Event, emit: Callable[[str, int], None]) -> Outcome:
        """Decodes until EOS, a stop string, max_new_tokens, a full context or ``cancel``, batched with the
        other streams of the same base; ``emit(text, completion_tokens)`` gets each new piece of text as soon
        as it cannot be part of a stop string (called from the batcher's thread)."""
        import torch

        row = Row(key=target.adapter_key, prompt=list(prompt), sampling=sampling,
                  budget=min(sampling.max_new_tokens, loaded.context - len(prompt)), cancel=cancel, emit=emit,
                  generator=torch.Generator(device="cpu").manual_seed(sampling.seed))
        with self._cache_lock:
            self.running += 1
        try:
            loaded.batcher.submit(row)
            row.done.wait()
            if row.error is not None:
                raise row.error
            return row.outcome
        finally:
            with self._cache_lock:
                self.running -= 1
                self.finished.append((row.reason or CANCELLED, len(row.out_ids)))
                del self.finished[:-100]

    def run(self, plan: Plan, cancel: threading.Event, on_start: Callable[[Target, int], None],
            emit: Callable[[str, int], None]) -> Outcome:
        """Loads (or reuses) the plan's model, renders the prompt and generates: the whole thing, in the
        calling (worker) thread."""
        loaded = self.acquire(plan.target)
        try:
            prompt = self.prompt_ids(loaded, plan.messages)
            on_start(plan.target, len(prompt))
            return self.generate(loaded, plan.target, prompt, plan.sampling, cancel, emit)
        finally:
            self.release(loaded)

