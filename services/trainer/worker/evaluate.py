"""Evaluation after training: does the adapter beat the base model on debates it never saw?

Runs in the worker after the adapter is saved and before the ``result`` event, on the exporter's HELD-OUT split
(20% of the debates, chosen by debate id, never trained on) of the job's vertical (all verticals for a job
without one). The base model (adapter disabled) and the adapter are measured by the same code on the same data:

- ``heldout_loss``: mean negative log-likelihood per response token of the held-out SFT records (the consensus
  answers), exactly what the SFT training loss measures; ``perplexity`` = exp(heldout_loss).
- ``preference_accuracy``: share of held-out DPO pairs where the model's length-normalised log-likelihood
  (mean log-probability per response token) of ``chosen`` exceeds that of ``rejected``; per vertical in
  ``vertical_accuracy``. Length-normalised so a short answer does not win just for being short.
- ``win_rate``: each held-out pair is a match between adapter and base: the adapter wins when its margin
  (normalised chosen minus rejected) is larger than the base's by more than ``draw_tolerance`` nats/token,
  loses when it is smaller by more than that, else it is a draw worth half a win.
- ``elo_rating``: the rating that win rate implies against the base fixed at 1500,
  ``1500 + 400·log10(w / (1 − w))``, clamped to [1000, 2000] (w = 0 and w = 1 have no finite rating; ±500 is
  what w ≈ 0.05 / 0.95 implies); ``eval_matches`` is the number of matches behind it.
- ``eval/samples.json``: a few held-out prompts answered by the base and by the adapter (greedy decoding).

Set sizes are capped (``TRAINER_EVAL_*`` settings) so evaluation stays bounded on a CPU; the caps take records
round-robin across verticals so every vertical keeps its share. And the evaluation costs at most
``max_cost_ratio`` (1 by default) times what the training cost, in token passes (``budget``): a 6-step job is
evaluated on fewer records and pairs (never fewer than 4 of each) than a long one, the same share of each, and
the start event and metrics.json (``evaluation.cut_by_budget``) say so. The data evaluated is saved as
``data/heldout_sft.jsonl`` and ``data/heldout_dpo.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.trainer.artifacts import JobLayout
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig
from services.trainer.worker.sources import HeldOut, balanced_take

SAMPLES_FILE = JobLayout.EVAL_SAMPLES_FILE
ELO_BASE = 1500.0
ELO_MIN, ELO_MAX = 1000.0, 2000.0


class EvalSettings(BaseSettings):
    """Evaluation settings (``TRAINER_EVAL_*`` variables, read by the worker; workers inherit the trainer's
    environment, and ``.env`` is read too)."""

    model_config = SettingsConfigDict(env_prefix="TRAINER_EVAL_", env_file=".env", extra="ignore")

    enabled: bool = True
    """Evaluate after training (off: metrics.json holds training figures only)."""
    max_sft_records: int = 64
    """Held-out SFT records measured for held-out loss (round-robin across verticals); 0: none."""
    max_pairs: int = 128
    """Held-out DPO pairs measured for preference accuracy and played as matches; 0: none."""
    samples: int = 3
    """Held-out prompts answered by base and adapter into eval/samples.json; 0: none."""
    sample_max_new_tokens: int = 64
    batch_size: int = 8
    """Sequences per forward pass."""
    draw_tolerance: float = 1e-3
    """Margins closer than this (nats per token) make a match a draw."""
    max_cost_ratio: float = 1.0
    """The evaluation's model passes cost at most this many times the training's (``budget``); 0: no budget,
    the caps above alone."""
    training_token_passes: int = 0
    """Set by the worker after training (``for_training``): what the training cost, in token forward passes."""

    def for_training(self, tokens_seen: int, gradient_checkpointing: bool) -> EvalSettings:
        """These settings with the training's cost, counted low so that the evaluation stays within it: a
        trained token counts 2.5 evaluation passes with gradient checkpointing, 1.75 without (measured on
        SmolLM2-135M on a CPU: a checkpointed training token took the time of 3.3-4 evaluation forwards)."""
        passes = int(tokens_seen * (2.5 if gradient_checkpointing else 1.75))
        return self.model_copy(update={"training_token_passes": passes})


# -- pure figures (unit-tested) --------------------------------------------------------------------------------

def elo_from_win_rate(w: float | None, lo: float = ELO_MIN, hi: float = ELO_MAX) -> float | None:
    """``1500 + 400·log10(w / (1 − w))`` clamped to [lo, hi]; None without a win rate."""
    if w is None or not math.isfinite(w):
        return None
    if w <= 0:
        return lo
    if w >= 1:
        return hi
    return min(hi, max(lo, ELO_BASE + 400.0 * math.log10(w / (1.0 - w))))


def play_matches(adapter_margins: list[float], base_margins: list[float], tolerance: float) -> dict:
    """Adapter vs base, one match per pair: wins, draws, losses and the win rate (a draw counts half)."""
    wins = draws = losses = 0
    for a, b in zip(adapter_margins, base_margins, strict=True):
        if a - b > tolerance:
            wins += 1
        elif b - a > tolerance:
            losses += 1
        else:
            draws += 1
    n = wins + draws + losses
    return {"matches": n, "wins": wins, "draws": draws, "losses": losses,
            "win_rate": (wins + 0.5 * draws) / n if n else None}


def preference_accuracy(chosen: list[float], rejected: list[float]) -> float | None:
    """Share of pairs whose (normalised) chosen log-likelihood is strictly higher than the rejected one's."""
    if not chosen:
        return None
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)


# -- measuring -------------------------------------------------------------------------------------------------

class _Progress:
    """``eval`` events at most every ``every`` seconds (and at each phase's end), so the job never looks
    frozen and the event log stays small."""

    def __init__(self, events: EventSink, every: float = 2.0) -> None:
        self.events, self.every, self.last = events, every, 0.0

    def __call__(self, phase: str, done: int, total: int, metrics: dict | None = None, force: bool = False,
                 message: str = "") -> None:
        now = time.monotonic()
        if force or done >= total or now - self.last >= self.every:
            self.last = now
            self.events.emit("eval", message or f"evaluating {phase}: {done}/{total}", phase=phase, done=done,
                             total=total, metrics=metrics or {})


def _logps(score, items: list, length, batch_size: int, progress, phase: str) -> list[list[tuple[float, float]]]:
    """Runs ``score(batch) -> (sums, counts)`` over ``items`` in length-sorted batches (progress after each);
    returns, per item in ``items``' order, its ``(summed log-probability, tokens)`` values.

    ``score`` gives k values per item of a batch of n as ``[k * n]`` tensors, ``[every item's 1st, ..., every
    item's k-th]``: k = 1 for ``sequence_logps``, 2 (chosen, rejected) for ``pair_logps``."""
    import torch

    out: list = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: -length(items[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            sums, counts = score([items[i] for i in idx])
            sums = sums.float().cpu().view(-1, len(idx)).T.tolist()
            counts = counts.float().cpu().view(-1, len(idx)).T.tolist()
            for j, i in enumerate(idx):
                out[i] = list(zip(sums[j], counts[j]))
            progress(phase, min(start + batch_size, len(order)), len(order))
    return out


def measure(peft_model, tokenizer, held: HeldOut, max_len: int, settings: EvalSettings, progress,
            which: str) -> dict:
    """One model's figures on the held-out data. ``which``: "base" (adapter disabled) or "adapter"."""
    from services.trainer.worker.encoding import encode_pairs, encode_records
    from services.trainer.worker.logprobs import pair_logps, sequence_logps

    device = next(peft_model.parameters()).device
    causal_lm = peft_model.get_base_model()
    pad = tokenizer.pad_token_id
    ctx = peft_model.disable_adapter() if which == "base" else contextlib.nullcontext()
    out: dict = {"heldout_loss": None, "perplexity": None, "preference_accuracy": None, "vertical_accuracy": {},
                 "margins": [], "verticals": []}
    with ctx:
        encoded, _ = encode_records(tokenizer, held.sft, max_len)
        if encoded:
            scored = _logps(lambda batch: sequence_logps(causal_lm, batch, pad, device),
                            [(e.input_ids, e.prompt_len) for e in encoded], lambda seq: len(seq[0]),
                            settings.batch_size, progress, f"{which}: held-out loss")
            sums, counts = [v[0][0] for v in scored], [v[0][1] for v in scored]
            loss = -sum(sums) / sum(counts)
            out["heldout_loss"] = loss
            out["perplexity"] = math.exp(min(loss, 700.0))
            out["heldout_tokens"] = int(sum(counts))
            progress(f"{which}: held-out loss", len(encoded), len(encoded),
                     {"heldout_loss": loss, "perplexity": out["perplexity"]}, force=True,
                     message=f"{which}: held-out loss {loss:.4f} (perplexity {out['perplexity']:.2f}) on "
                             f"{len(encoded)} SFT records")
        pairs, stats = encode_pairs(tokenizer, held.pairs, max_len)
        dropped = set(stats.dropped)
        kept = [r for i, r in enumerate(held.pairs) if i not in dropped]
        if pairs:
            # The prompt runs once per pair (``pair_logps``); values come back chosen, rejected, pair by pair.
            scored = _logps(lambda batch: pair_logps(causal_lm, batch, pad, device), pairs,
                            lambda pair: pair.length, max(1, settings.batch_size // 2), progress,
                            f"{which}: preference")
            chosen = [s / max(c, 1.0) for (s, c), _ in scored]
            rejected = [s / max(c, 1.0) for _, (s, c) in scored]
            out["margins"] = [c - r for c, r in zip(chosen, rejected)]
            out["verticals"] = [str((r.get("metadata") or {}).get("vertical") or "") for r in kept]
            out["preference_accuracy"] = preference_accuracy(chosen, rejected)
            per: dict[str, list[bool]] = {}
            for v, m in zip(out["verticals"], out["margins"]):
                per.setdefault(v or "unknown", []).append(m > 0)
            out["vertical_accuracy"] = {v: sum(x) / len(x) for v, x in sorted(per.items())}
            out["mean_margin"] = sum(out["margins"]) / len(out["margins"])
            progress(f"{which}: preference", len(pairs), len(pairs),
                     {"preference_accuracy": out["preference_accuracy"]}, force=True,
                     message=f"{which}: preference accuracy {out['preference_accuracy']:.3f} on "
                             f"{len(pairs)} held-out pairs")
    return out


def _generate(peft_model, prompts: list[list[int]], adapters: list[str], max_new_tokens: int, pad_id: int,
              eos_id, device) -> list[list[int]]:
    """Greedy answers to ``prompts`` in ONE batched ``generate`` (left-padded, key/value cache on), row k with
    adapter ``adapters[k]`` (``BASE_ADAPTER``: the adapter off; peft's mixed-batch inference). Returns each row's
    new tokens, up to and without its first end-of-sequence token."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for k, p in enumerate(prompts):
        ids[k, width - len(p):] = torch.tensor(p)
        mask[k, width - len(p):] = 1
    with torch.no_grad():
        gen = peft_model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                  max_new_tokens=max_new_tokens, use_cache=True, pad_token_id=pad_id,
                                  eos_token_id=eos_id, adapter_names=adapters)
    out = []
    for row in gen[:, width:].tolist():
        if eos_id is not None and eos_id in row:
            row = row[:row.index(eos_id)]
        out.append(row)
    return out


BASE_ADAPTER = "__base__"
"""peft's name for "no adapter" in a mixed batch (``adapter_names``)."""


def generate_samples(peft_model, tokenizer, held: HeldOut, settings: EvalSettings, max_len: int,
                     progress) -> list[dict]:
    """A few held-out prompts answered greedily by the base model and by the adapter.

    Every answer comes from one batched ``generate`` call: each prompt twice, once with the adapter off and once
    with it on (peft's mixed-batch inference), left-padded, with the key/value cache, at most
    ``sample_max_new_tokens`` new tokens (``TRAINER_EVAL_SAMPLE_MAX_NEW_TOKENS``). The answers are those of
    one prompt at a time (``tests/eval/test_model_eval.py``) at the cost of one decoding loop instead of
    2 x ``samples``."""
    from services.trainer.worker.encoding import prompt_and_response

    records = balanced_take(held.sft, settings.samples)
    if not records or settings.sample_max_new_tokens <= 0:
        return []
    device = next(peft_model.parameters()).device
    keep = max(1, max_len - settings.sample_max_new_tokens)
    prompts = []
    for record in records:
        prompt, _ = prompt_and_response(tokenizer, record)
        prompts.append(tokenizer(prompt, add_special_tokens=False)["input_ids"][-keep:])
    adapter = peft_model.active_adapter
    total = 2 * len(records)
    progress("samples", 0, total, force=True)
    answers = _generate(peft_model, prompts + prompts, [BASE_ADAPTER] * len(prompts) + [adapter] * len(prompts),
                        settings.sample_max_new_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id, device)
    progress("samples", total, total)
    out = []
    for k, record in enumerate(records):
        base, tuned = (tokenizer.decode(answers[j], skip_special_tokens=True).strip()
                       for j in (k, len(records) + k))
        out.append({"debate_id": (record.get("metadata") or {}).get("debate_id"),
                    "vertical": (record.get("metadata") or {}).get("vertical"),
                    "prompt": record.get("input") or record.get("instruction"), "reference": record["output"],
                    "base": base, "adapter": tuned})
    return out


MIN_BUDGET_ITEMS = 4
"""A budget never cuts the held-out records or pairs below this many (each; fewer if fewer were fetched)."""
SAMPLE_TOKEN_PASSES = 25
"""What one generated token of one sample costs, in token passes: a decoding step reads every weight for a few
rows (measured on SmolLM2-135M on a CPU: 6 rows x 64 tokens took as long as 4,600-10,500 scored tokens)."""


def _round_robin(records: list[dict]) -> list[dict]:
    """The records in round-robin order across verticals (each vertical's in their given order)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(str((r.get("metadata") or {}).get("vertical") or ""), []).append(r)
    queues = [groups[k] for k in sorted(groups)]
    return [q[i] for i in range(max((len(q) for q in queues), default=0)) for q in queues if i < len(q)]


def budget(held: HeldOut, tokenizer, settings: EvalSettings, max_len: int
           ) -> tuple[HeldOut, EvalSettings, int | None]:
    """``held`` cut so that the evaluation costs at most ``max_cost_ratio`` x the training's token passes:
    base and adapter each score the SFT records (their tokens) and the pairs (prompt once + both answers), and
    the samples generate ``sample_max_new_tokens`` per answer (``SAMPLE_TOKEN_PASSES`` each) after their
    prompt; they take at most a third of the budget (fewer samples, at least one). The records and pairs are cut to
    the same share of each (the first of a round-robin order across verticals), never below
    ``MIN_BUDGET_ITEMS``. Returns the held-out data and settings to use and the budget in token passes (None:
    no budget)."""
    if settings.max_cost_ratio <= 0 or settings.training_token_passes <= 0:
        return held, settings, None
    from services.trainer.worker.encoding import encode_pairs, encode_records

    allowed = int(settings.max_cost_ratio * settings.training_token_passes)
    # Round-robin across verticals, so that any first n keep every vertical's share.
    held = HeldOut(_round_robin(held.sft), _round_robin(held.pairs), held.available_sft, held.available_pairs,
                   held.source, held.skipped)
    sft, _ = encode_records(tokenizer, held.sft, max_len)
    pairs, _ = encode_pairs(tokenizer, held.pairs, max_len)
    sft_cost = [2 * len(e.input_ids) for e in sft]
    pair_cost = [2 * p.length for p in pairs]
    longest = max((len(e.input_ids) for e in sft), default=0)

    def sample_cost(n: int) -> int:
        return 2 * n * (longest + SAMPLE_TOKEN_PASSES * settings.sample_max_new_tokens)

    samples = min(settings.samples, len(held.sft))
    while samples > 1 and sample_cost(samples) > allowed / 3:
        samples -= 1
    settings = settings.model_copy(update={"samples": samples})
    if sum(sft_cost) + sum(pair_cost) + sample_cost(samples) <= allowed:
        return held, settings, allowed
    lo, hi = 0.0, 1.0
    for _ in range(30):  # the largest share that fits
        mid = (lo + hi) / 2
        n_sft = max(min(MIN_BUDGET_ITEMS, len(sft)), int(mid * len(sft)))
        n_pairs = max(min(MIN_BUDGET_ITEMS, len(pairs)), int(mid * len(pairs)))
        cost = sum(sft_cost[:n_sft]) + sum(pair_cost[:n_pairs]) + sample_cost(samples)
        lo, hi = (mid, hi) if cost <= allowed else (lo, mid)
    n_sft = max(min(MIN_BUDGET_ITEMS, len(held.sft)), int(lo * len(held.sft)))
    n_pairs = max(min(MIN_BUDGET_ITEMS, len(held.pairs)), int(lo * len(held.pairs)))
    cut = HeldOut(held.sft[:n_sft], held.pairs[:n_pairs], held.available_sft, held.available_pairs, held.source,
                  held.skipped)
    return cut, settings, allowed


def evaluate(job: JobConfig, peft_model, tokenizer, held: HeldOut, events: EventSink,
             settings: EvalSettings | None = None) -> dict:
    """Measures base and adapter on ``held``; returns the figures to merge into metrics.json (top level:
    ``elo_rating``, ``win_rate``, ``vertical_accuracy``, ``eval_matches``, ``eval_sft_records``,
    ``eval_dpo_pairs``, ``base``, ``adapter``, and ``evaluation`` with the details)."""
    settings = settings or EvalSettings()
    t0 = time.monotonic()
    progress = _Progress(events)
    if held.skipped or not (held.sft or held.pairs):
        return {"evaluation": {"skipped": held.skipped or "no held-out data"}}
    max_len = job.spec.max_seq_length
    fetched = (len(held.sft), len(held.pairs))
    wanted_samples = settings.samples
    held, settings, allowed = budget(held, tokenizer, settings, max_len)
    cut = fetched != (len(held.sft), len(held.pairs)) or settings.samples != wanted_samples
    was_training = peft_model.training
    peft_model.eval()
    events.emit("eval", f"evaluating base model and adapter on {len(held.sft)} held-out SFT records and "
                        f"{len(held.pairs)} held-out DPO pairs (vertical {job.vertical or 'all'})"
                        + (f"; cut from {fetched[0]} and {fetched[1]} ({settings.samples} of {wanted_samples} "
                           f"samples) so that the evaluation costs at most "
                           f"{settings.max_cost_ratio:g}x the training (TRAINER_EVAL_MAX_COST_RATIO)" if cut else ""),
                phase="start", done=0, total=len(held.sft) + len(held.pairs), metrics={})
    try:
        results = {which: measure(peft_model, tokenizer, held, max_len, settings, progress, which)
                   for which in ("base", "adapter")}
        samples = generate_samples(peft_model, tokenizer, held, settings, max_len, progress)
    finally:
        peft_model.train(was_training)
    base, adapter = results["base"], results["adapter"]
    games = play_matches(adapter["margins"], base["margins"], settings.draw_tolerance)
    elo = elo_from_win_rate(games["win_rate"])
    if samples:
        path = job.job_dir / SAMPLES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = JobLayout.temporary(path)
        tmp.write_text(json.dumps({"job_id": job.job_id, "base_model": job.base_model, "decoding": "greedy",
                                   "max_new_tokens": settings.sample_max_new_tokens, "samples": samples},
                                  indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def public(m: dict) -> dict:
        return {k: m.get(k) for k in ("heldout_loss", "perplexity", "preference_accuracy", "vertical_accuracy",
                                      "mean_margin", "heldout_tokens")}

    seconds = time.monotonic() - t0
    figures = {
        "elo_rating": round(elo, 1) if elo is not None else None,
        "win_rate": games["win_rate"],
        "vertical_accuracy": adapter["vertical_accuracy"],
        "eval_matches": games["matches"],
        "eval_sft_records": len(held.sft),
        "eval_dpo_pairs": len(base["margins"]),
        "base": public(base),
        "adapter": public(adapter),
        "evaluation": {
            "split": "heldout", "vertical": job.vertical or "all", "source": held.source,
            "available_sft_records": held.available_sft, "available_dpo_pairs": held.available_pairs,
            "max_sft_records": settings.max_sft_records, "max_pairs": settings.max_pairs,
            "max_cost_ratio": settings.max_cost_ratio, "budget_token_passes": allowed,
            "cut_by_budget": cut,
            "wins": games["wins"], "draws": games["draws"], "losses": games["losses"],
            "draw_tolerance": settings.draw_tolerance, "elo_clamp": [ELO_MIN, ELO_MAX],
            "samples_file": SAMPLES_FILE if samples else None, "seconds": round(seconds, 2),
        },
    }
    summary = {k: v for k, v in (("win_rate", games["win_rate"]), ("elo_rating", figures["elo_rating"]),
                                 ("base_preference_accuracy", base["preference_accuracy"]),
                                 ("adapter_preference_accuracy", adapter["preference_accuracy"]),
                                 ("base_heldout_loss", base["heldout_loss"]),
                                 ("adapter_heldout_loss", adapter["heldout_loss"])) if v is not None}
    events.emit("eval", _summary_message(figures), phase="done", done=len(held.sft) + len(held.pairs),
                total=len(held.sft) + len(held.pairs), metrics=summary)
    return figures


def _fmt(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def _summary_message(f: dict) -> str:
    b, a, e = f["base"], f["adapter"], f["evaluation"]
    return (f"evaluation done in {e['seconds']:.0f} s: held-out loss base {_fmt(b['heldout_loss'], '.4f')} -> "
            f"adapter {_fmt(a['heldout_loss'], '.4f')}; preference accuracy base "
            f"{_fmt(b['preference_accuracy'])} -> adapter {_fmt(a['preference_accuracy'])}; win rate "
            f"{_fmt(f['win_rate'])} over {f['eval_matches']} matches ({e['wins']} won, {e['draws']} drawn, "
            f"{e['losses']} lost), Elo {_fmt(f['elo_rating'], '.0f')}")


def samples_path(job_dir: Path) -> Path:
    return Path(job_dir) / SAMPLES_FILE
