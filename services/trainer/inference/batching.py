"""Continuous batching: the streams of one loaded base model decoded together, one forward per step.

A stream (a ``Row``) is handed to its base model's ``Batcher``; the batcher's own thread runs every forward
of that base. At each step boundary it first takes the streams that arrived since the last step: each is
prefilled alone (its prompt, batch of one, exactly as a lone stream would be), its first token picked, and it
joins the running batch. Then one forward decodes the next token of every row of the batch:

- **KV cache per batch, left-padded.** The rows share one cache of ``width`` positions; a row with fewer
  tokens than that has zero keys/values on its left, masked out by the attention mask, and its own position
  ids, so its attention and rotary positions are exactly those it would have alone. A row that joins with a
  longer prompt than the batch's width pads the others instead. Rows that finish (end of sequence, stop
  string, ``max_new_tokens``, full context) or are cancelled leave after the step; the columns every
  remaining row pads are cut off. A batch whose rows need no padding is decoded without a mask, like a lone
  stream.
- **Per-row adapters.** Rows of different adapters of the same base (and rows of the base itself) go in the
  same forward: the engine's lean LoRA forward (``lora.py``) applies each row's delta to its rows; adapters it
  does not implement run PEFT's per-row ``adapter_names`` (``"__base__"`` for the base), or, for a batch of one
  adapter, PEFT's forward with it selected once (``Loaded.adapters_on`` / ``active``: switched only on change).
- **Per-row sampling.** Each row keeps its sampling values, its ``torch.Generator`` (seeded with its seed),
  stop strings, budget and finish reason; its pieces of text are emitted from the batcher's thread.

Greedy answers are the same batched as alone (``tests/inference/test_batching.py``). Caches that are not
plain ``DynamicCache`` layers (sliding-window models) and adapters PEFT cannot mix per row (DoRA, non-LoRA)
fall back to smaller groups: one per row, or one per adapter, each its own forward per step.

A row's cancel flag is read before every step (its prefill included), so a cancelled stream costs at most the
step under way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from services.trainer.inference.planner import Sampling

log = logging.getLogger(__name__)

STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"
BASE = "__base__"
"""PEFT's name for "no adapter" in ``adapter_names``."""


@dataclass
class Outcome:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    text: str


@dataclass(eq=False)
class Row:
    """One stream: its prompt, adapter and sampling, and where its decoding stands."""

    key: str | None  # the adapter's key in the shared base, None for the base itself
    prompt: list[int]
    sampling: Sampling
    budget: int  # new tokens it may produce (max_new_tokens, or what the context leaves)
    cancel: threading.Event
    emit: Callable[[str, int], None]
    generator: object = None  # torch.Generator, seeded with the sampling seed
    out_ids: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    length: int = 0  # tokens in its KV cache
    next_token: int = 0
    reason: str | None = None
    outcome: Outcome | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Group:
    """Rows decoded by one forward per step, over one left-padded KV cache ``width`` positions long."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.cache = None
        self.width = 0


class Batcher:
    """The decoding thread of one loaded base model (started when a stream arrives, ends when none is left)."""

    def __init__(self, loaded, forward: Callable, pick: Callable, on_step: Callable[[list[Row]], None]) -> None:
        """``forward(loaded, keys, **model_kwargs)`` runs the model with the adapters ``keys`` (one per row);
        ``pick(logits, sampling, generator)`` picks a token; ``on_step(rows)`` is told every decoding step."""
        self.loaded = loaded
        self.forward = forward
        self.pick = pick
        self.on_step = on_step
        self.groups: list[Group] = []
        self._pending: list[Row] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, row: Row) -> None:
        """Queues ``row``: it is prefilled and joins the batch at the next step boundary."""
        with self._cond:
            self._pending.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"batch-{self.loaded.model_id}",
                                                daemon=True)
                self._thread.start()

    # -- the loop ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                arrived, self._pending = self._pending, []
                if not arrived and not self.groups:
                    self._thread = None
                    return
            try:
                for row in arrived:
                    self._start(row)
                for group in list(self.groups):
                    self._step(group)
                self.groups = [g for g in self.groups if g.rows]
            except BaseException as exc:  # noqa: BLE001 - a fault outside a forward: no stream is left waiting
                self._fail([r for g in self.groups for r in g.rows] + [r for r in arrived if not r.done.is_set()],
                           exc)
                self.groups = []

    def _start(self, row: Row) -> None:
        """Prefills ``row`` alone, takes its first token, and joins it to a group (unless it already ended)."""
        import torch

        if row.cancel.is_set():
            return self._finish(row, CANCELLED)
        if row.budget <= 0:
            return self._finish(row, LENGTH)
        try:
            prompt = torch.tensor([row.prompt], device=self.loaded.device)
            result = self.forward(self.loaded, [row.key], input_ids=prompt, use_cache=True, logits_to_keep=1)
            row.length = len(row.prompt)
            if not self._accept(row, self.pick(result.logits[0, -1].to("cpu"), row.sampling, row.generator)):
                return self._finish(row)
        except BaseException as exc:  # noqa: BLE001 - carried to the stream's own thread
            return self._fail([row], exc)
        self._join(row, result.cache)

    def _step(self, group: Group) -> None:
        """One forward over every row of ``group``; rows that end (or were cancelled) leave it."""
        import torch

        for row in [r for r in group.rows if r.cancel.is_set()]:
            self._finish(row, CANCELLED)
        self._leave(group, [r for r in group.rows if r.reason is None])
        if not group.rows:
            return
        rows = group.rows
        device = self.loaded.device
        kwargs = {"input_ids": torch.tensor([[r.next_token] for r in rows], device=device),
                  "cache": group.cache, "use_cache": True, "logits_to_keep": 1}
        pads = [group.width - r.length for r in rows]
        if any(pads):  # rows of different lengths: mask their left padding, give each its own positions
            columns = torch.arange(group.width + 1, device=device)
            kwargs["attention_mask"] = (columns[None, :] >= torch.tensor(pads, device=device)[:, None]).long()
            kwargs["position_ids"] = torch.tensor([[r.length] for r in rows], device=device)
        try:
            result = self.forward(self.loaded, [r.key for r in rows], **kwargs)
            self.on_step(rows)
            group.cache = result.cache
            group.width += 1
            logits = result.logits[:, -1].to("cpu")
        except BaseException as exc:  # noqa: BLE001 - carried to the streams' own threads
            self._fail(rows, exc)
            group.rows, group.cache, group.width = [], None, 0
            return
        for i, row in enumerate(rows):
            row.length += 1
            try:
                if not self._accept(row, self.pick(logits[i], row.sampling, row.generator)):
                    self._finish(row)
            except BaseException as exc:  # noqa: BLE001 - this stream only (its emit failed, say)
                self._fail([row], exc)
        self._leave(group, [r for r in rows if r.reason is None and r.error is None])

    # -- one row's tokens ----------------------------------------------------------------------------------

    def _accept(self, row: Row, token: int) -> bool:
        """Adds ``token`` to ``row`` and emits what text is ready; False once the row has ended."""
        if token in self.loaded.eos_ids:
            row.reason = STOP
            return False
        row.out_ids.append(token)
        row.next_token = token
        text = self.loaded.tokenizer.decode(row.out_ids, skip_special_tokens=True)
        cut = find_stop(text, row.sampling.stop, row.sent)
        if cut is not None:
            row.text = text[:cut]
            row.reason = STOP
            return False
        row.text = text
        ready = len(text) - held_back(text, row.sampling.stop)
        if ready > row.sent:
            row.emit(text[row.sent:ready], len(row.out_ids))
            row.sent = ready
        if len(row.out_ids) >= row.budget:
            row.reason = LENGTH
            return False
        return True

    def _finish(self, row: Row, reason: str | None = None) -> None:
        row.reason = reason or row.reason or LENGTH
        try:
            if row.reason == CANCELLED:
                row.text = row.text[:row.sent]
            elif len(row.text) > row.sent:
                row.emit(row.text[row.sent:], len(row.out_ids))
                row.sent = len(row.text)
            row.outcome = Outcome(row.reason, len(row.prompt), len(row.out_ids), row.text)
        except BaseException as exc:  # noqa: BLE001 - carried to the stream's own thread
            row.error = exc
        row.done.set()

    @staticmethod
    def _fail(rows: list[Row], exc: BaseException) -> None:
        log.warning("inference: a decoding step failed for %d stream(s): %r", len(rows), exc)
        for row in rows:
            if not row.done.is_set():
                row.error = exc
                row.done.set()

    # -- the groups and their caches -----------------------------------------------------------------------

    def _mixable(self, key: str | None) -> bool:
        """Whether rows of ``key`` may share a forward with rows of other adapters (PEFT's per-row
        ``adapter_names`` works for plain LoRA layers only)."""
        peft = self.loaded.peft
        if key is None or peft is None:
            return True
        config = peft.peft_config.get(key)
        return config is not None and str(getattr(config.peft_type, "value", config.peft_type)) == "LORA" \
            and not getattr(config, "use_dora", False)

    def _takes(self, group: Group, row: Row) -> bool:
        """Whether ``row`` may decode in ``group``'s forward: one plain cache, and either one adapter for all
        or adapters that mix per row."""
        if not group.rows or not _plain_cache(group.cache):
            return False
        if all(r.key == row.key for r in group.rows):
            return True
        return self._mixable(row.key) and all(self._mixable(r.key) for r in group.rows)

    def _join(self, row: Row, cache) -> None:
        if not _plain_cache(cache):  # e.g. sliding-window layers: this row decodes in its own forward
            group = Group()
            self.groups.append(group)
        else:
            group = next((g for g in self.groups if self._takes(g, row)), None)
            if group is None:
                group = Group()
                self.groups.append(group)
        if not group.rows:
            group.rows, group.cache, group.width = [row], cache, row.length
            return
        if row.length > group.width:
            _pad_left(group.cache, row.length - group.width)
            group.width = row.length
        _pad_left(cache, group.width - row.length)
        for mine, theirs in zip(group.cache.layers, cache.layers, strict=True):
            mine.keys = _cat(mine.keys, theirs.keys, 0)
            mine.values = _cat(mine.values, theirs.values, 0)
        group.rows.append(row)

    @staticmethod
    def _leave(group: Group, keep: list[Row]) -> None:
        """Keeps only ``keep`` in ``group``: drops the other rows' cache entries and the columns that every
        remaining row pads."""
        if len(keep) == len(group.rows):
            return
        if not keep:
            group.rows, group.cache, group.width = [], None, 0
            return
        import torch

        index = torch.tensor([group.rows.index(r) for r in keep])
        trim = group.width - max(r.length for r in keep)
        for layer in group.cache.layers:
            rows = index.to(layer.keys.device)
            layer.keys = layer.keys.index_select(0, rows)[:, :, trim:]
            layer.values = layer.values.index_select(0, rows)[:, :, trim:]
        group.rows = keep
        group.width -= trim


def _plain_cache(cache) -> bool:
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


def _cat(a, b, dim: int):
    import torch

    return torch.cat([a, b], dim=dim)


def _pad_left(cache, n: int) -> None:
    """``n`` zero positions before every row's keys and values (masked out by the attention mask)."""
    if n <= 0:
        return
    import torch

    for layer in cache.layers:
        k, v = layer.keys, layer.values
        layer.keys = torch.cat([k.new_zeros(k.shape[0], k.shape[1], n, k.shape[3]), k], dim=2)
        layer.values = torch.cat([v.new_zeros(v.shape[0], v.shape[1], n, v.shape[3]), v], dim=2)


def find_stop(text: str, stops: tuple[str, ...], sent: int) -> int | None:
    """Where the first stop string starts in ``text`` (searching from what may still change), or None."""
    best = None
    for s in stops:
        i = text.find(s, max(0, sent - len(s)))
        if i >= 0 and (best is None or i < best):
            best = i
    return best


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of ``text`` not to send yet: a possible start of a stop string, or an
    incomplete character (the decoder's replacement mark)."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    if text.endswith("\ufffd"):
        hold = max(hold, 1)
    return hold
