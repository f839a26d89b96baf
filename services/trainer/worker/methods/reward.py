"""Reward model: a scalar head on the base model, trained with the Bradley-Terry loss on the debate preference pairs.

The base is loaded as a sequence-classification model with one label (``AutoModelForSequenceClassification``,
``num_labels=1``): BERT-family encoders score the ``[CLS]`` position (through BERT's pooler), decoders the last
real token. LoRA adapts the attention projections and the head (``classifier`` / ``score``, and BERT's
``pooler``) is fully trained and saved with the adapter (PEFT ``modules_to_save``): ``adapter/`` reloads with
``PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=1), adapter)``.

A pair ``{"prompt", "chosen", "rejected"}`` becomes two sequences, each answer with its prompt: for an encoder
the text pair ``[CLS] prompt [SEP] answer [SEP]`` (cut longest-first at ``max_seq_length``), for a decoder the
chat template's ``prompt + answer`` (like SFT and DPO). Loss (Bradley & Terry 1952; the reward-model loss of
InstructGPT and TRL's ``RewardTrainer``): ``-log σ(r_chosen − r_rejected)``. Each step reports
``reward_accuracy`` (share of pairs scored chosen > rejected) and ``reward_margin`` (mean r_chosen − r_rejected).

Evaluation (``evaluate``): the held-out pairs scored by the untrained head (the adapter disabled: the base
encoder/decoder with the head as initialised, seeded) and by the trained one, in the metrics shape of the other
methods: ``base`` / ``adapter`` each with ``preference_accuracy`` (share of held-out pairs scored chosen >
rejected), ``vertical_accuracy``, ``mean_margin`` and ``heldout_loss`` (the mean Bradley-Terry loss);
``win_rate`` / ``elo_rating`` from pair-by-pair matches of the two margins.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from services.trainer.worker import encoding, sources
from services.trainer.worker.events import EventSink
from services.trainer.worker.methods.base import StepOutput, TrainingMethod, register

HEAD_MODULES = ("classifier", "score", "pooler")
"""Modules of a sequence-classification model that belong to its head (trained in full and saved)."""


@dataclass
class RewardPair:
    """A preference pair as two scored sequences (each answer with its prompt)."""

    chosen: list[int]
    rejected: list[int]
    chosen_types: list[int] | None = None
    """``token_type_ids`` of an encoder's text pair (None for a decoder)."""
    rejected_types: list[int] | None = None
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.chosen) + len(self.rejected)


def is_encoder_tokenizer(tokenizer) -> bool:
    """A BERT-style tokenizer (``[CLS] a [SEP] b [SEP]`` text pairs) rather than a chat model's."""
    return (getattr(tokenizer, "cls_token_id", None) is not None and getattr(tokenizer, "sep_token_id", None)
            is not None and not getattr(tokenizer, "chat_template", None))


def encode_reward_pairs(tokenizer, records: list[dict], max_len: int):
    """Pairs -> ``RewardPair``s and ``EncodeStats`` (``dropped``: pairs with no answer token left)."""
    if not is_encoder_tokenizer(tokenizer):
        pairs, stats = encoding.encode_pairs(tokenizer, records, max_len)
        return [RewardPair(p.prompt + p.chosen, p.prompt + p.rejected, truncated=p.truncated) for p in pairs], stats
    stats = encoding.EncodeStats(template="text-pair")
    prompts = [encoding.user_message(encoding.pair_user_record(r, "chosen")) for r in records]
    out = []
    sides = {}
    for side in ("chosen", "rejected"):
        answers = [str(r[side]) for r in records]
        full = tokenizer(prompts, answers)["input_ids"]
        cut = tokenizer(prompts, answers, truncation="longest_first", max_length=max_len)
        sides[side] = (full, cut["input_ids"], cut.get("token_type_ids"))
    for i in range(len(records)):
        (cf, c, ct), (rf, r, rt) = ((sides[s][0][i], sides[s][1][i], (sides[s][2] or [None] * len(records))[i])
                                    for s in ("chosen", "rejected"))
        truncated = len(cf) > len(c) or len(rf) > len(r)
        stats.truncated += truncated
        out.append(RewardPair(list(c), list(r), ct and list(ct), rt and list(rt), truncated))
    return out, stats


def score(model, seqs: list[tuple[list[int], list[int] | None]], pad_id: int, device):
    """The head's scalar score of each sequence (``[len(seqs)]``, with grad when grad is enabled)."""
    import torch

    width = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    types = torch.zeros((len(seqs), width), dtype=torch.long) if seqs[0][1] is not None else None
    for row, (s, t) in enumerate(seqs):
        ids[row, :len(s)] = torch.tensor(s)
        mask[row, :len(s)] = 1
        if types is not None:
            types[row, :len(t)] = torch.tensor(t)
    kwargs = {"token_type_ids": types.to(device)} if types is not None else {}
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
    return out.logits[:, 0].float()


def pair_scores(model, pairs: list[RewardPair], pad_id: int, device):
    """``(r_chosen, r_rejected)`` of a batch of pairs, one forward over the 2n sequences."""
    n = len(pairs)
    r = score(model, [(p.chosen, p.chosen_types) for p in pairs] + [(p.rejected, p.rejected_types) for p in pairs],
              pad_id, device)
    return r[:n], r[n:]


def head_modules(model) -> list[str]:
    """The head's module names present in ``model`` (what PEFT trains in full and saves)."""
    present = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if module is not None}
    return [m for m in HEAD_MODULES if m in present]


@register
class RewardMethod(TrainingMethod):
    name = "reward"
    records = sources.DPO_PAIRS

    def __init__(self, pairs: list[RewardPair], pad_id: int, device) -> None:
        super().__init__(pairs, pad_id, device)
        self.last_extra: dict = {}

    @classmethod
    def encode(cls, tokenizer, records, max_len):
        return encode_reward_pairs(tokenizer, records, max_len)

    @staticmethod
    def example_length(example: RewardPair) -> int:
        return example.length

    @classmethod
    def load_model(cls, model_path, spec, tokenizer, events: EventSink):
        from peft import LoraConfig, TaskType
        from transformers import AutoModelForSequenceClassification

        from services.trainer.worker import modeling

        def lora(model):
            heads = head_modules(model)
            events.log(f"reward model: {type(model).__name__} with a scalar head; trained in full and saved "
                       f"with the adapter: {', '.join(heads)}")
            return LoraConfig(task_type=TaskType.SEQ_CLS, r=spec.lora_r, lora_alpha=spec.lora_alpha,
                              lora_dropout=spec.lora_dropout, target_modules=list(spec.target_modules),
                              bias="none", modules_to_save=heads)

        return modeling.load_model(model_path, spec, tokenizer, events,
                                   auto_class=AutoModelForSequenceClassification, lora_config=lora,
                                   num_labels=1, pad_token_id=tokenizer.pad_token_id)

    def step(self, model, indices: list[int]) -> StepOutput:
        import torch
        import torch.nn.functional as F

        pairs = [self.examples[i] for i in indices]
        rc, rr = pair_scores(model, pairs, self.pad_id, self.device)
        loss = -F.logsigmoid(rc - rr).mean()
        with torch.no_grad():
            c, r = rc.detach(), rr.detach()
            extra = {"reward_accuracy": float((c > r).float().mean()), "reward_margin": float((c - r).mean()),
                     "chosen_reward": float(c.mean()), "rejected_reward": float(r.mean())}
        self.last_extra = extra
        tokens = sum(p.length for p in pairs)
        return StepOutput(loss, len(pairs), tokens, tokens, extra)

    def metrics(self) -> dict:
        return {"reward": {"loss": "bradley-terry", **self.last_extra}}

    def evaluate(self, job, peft_model, tokenizer, heldout, events: EventSink, settings) -> dict:
        return evaluate_reward(job, peft_model, tokenizer, heldout, events, settings)


def _measure(peft_model, pairs: list[RewardPair], kept: list[dict], pad_id: int, device, batch: int, progress,
             which: str) -> dict:
    import torch
    import torch.nn.functional as F

    from services.trainer.worker.evaluate import preference_accuracy

    model = peft_model.get_base_model()
    margins = [0.0] * len(pairs)
    order = sorted(range(len(pairs)), key=lambda i: -pairs[i].length)
    ctx = peft_model.disable_adapter() if which == "base" else contextlib.nullcontext()
    with ctx, torch.no_grad():
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            rc, rr = pair_scores(model, [pairs[i] for i in idx], pad_id, device)
            for j, i in enumerate(idx):
                margins[i] = float(rc[j] - rr[j])
            progress(f"{which}: preference", min(start + batch, len(order)), len(order))
    verticals = [str((r.get("metadata") or {}).get("vertical") or "") for r in kept]
    per: dict[str, list[bool]] = {}
    for v, m in zip(verticals, margins):
        per.setdefault(v or "unknown", []).append(m > 0)
    acc = preference_accuracy(margins, [0.0] * len(margins))
    loss = float(-F.logsigmoid(torch.tensor(margins)).mean())
    progress(f"{which}: preference", len(pairs), len(pairs), {"preference_accuracy": acc}, force=True,
             message=f"{which}: preference accuracy {acc:.3f} on {len(pairs)} held-out pairs "
                     f"({'untrained' if which == 'base' else 'trained'} head)")
    return {"heldout_loss": loss, "perplexity": None, "preference_accuracy": acc,
            "vertical_accuracy": {v: sum(x) / len(x) for v, x in sorted(per.items())},
            "mean_margin": sum(margins) / len(margins), "heldout_tokens": sum(p.length for p in pairs),
            "margins": margins}


def evaluate_reward(job, peft_model, tokenizer, held, events: EventSink, settings) -> dict:
    """The trained head against the untrained one on the held-out pairs (the module's docstring)."""
    from services.trainer.worker.evaluate import ELO_MAX, ELO_MIN, _Progress, elo_from_win_rate, play_matches

    t0 = time.monotonic()
    if held.skipped or not held.pairs:
        return {"evaluation": {"skipped": held.skipped or "no held-out preference pairs"}}
    pairs, stats = encode_reward_pairs(tokenizer, held.pairs, job.spec.max_seq_length)
    dropped = set(stats.dropped)
    kept = [r for i, r in enumerate(held.pairs) if i not in dropped]
    if not pairs:
        return {"evaluation": {"skipped": "no held-out pair fits max_seq_length"}}
    progress = _Progress(events)
    device = next(peft_model.parameters()).device
    events.emit("eval", f"evaluating the untrained and the trained reward head on {len(pairs)} held-out "
                        f"preference pairs (vertical {job.vertical or 'all'})",
                phase="start", done=0, total=len(pairs), metrics={})
    was_training = peft_model.training
    peft_model.eval()
    try:
        batch = max(1, settings.batch_size // 2)
        base, adapter = (_measure(peft_model, pairs, kept, tokenizer.pad_token_id, device, batch, progress, w)
                         for w in ("base", "adapter"))
    finally:
        peft_model.train(was_training)
    games = play_matches(adapter["margins"], base["margins"], settings.draw_tolerance)
    elo = elo_from_win_rate(games["win_rate"])
    public = lambda m: {k: v for k, v in m.items() if k != "margins"}  # noqa: E731
    seconds = time.monotonic() - t0
    figures = {
        "elo_rating": round(elo, 1) if elo is not None else None,
        "win_rate": games["win_rate"],
        "vertical_accuracy": adapter["vertical_accuracy"],
        "eval_matches": games["matches"],
        "eval_sft_records": 0,
        "eval_dpo_pairs": len(pairs),
        "base": public(base),
        "adapter": public(adapter),
        "evaluation": {
            "split": "heldout", "vertical": job.vertical or "all", "source": held.source, "method": "reward",
            "base_is": "the untrained head (adapter disabled)", "margin": "score(chosen) - score(rejected)",
            "available_sft_records": held.available_sft, "available_dpo_pairs": held.available_pairs,
            "max_sft_records": settings.max_sft_records, "max_pairs": settings.max_pairs,
            "wins": games["wins"], "draws": games["draws"], "losses": games["losses"],
            "draw_tolerance": settings.draw_tolerance, "elo_clamp": [ELO_MIN, ELO_MAX],
            "samples_file": None, "seconds": round(seconds, 2),
        },
    }
    summary = {"win_rate": games["win_rate"], "elo_rating": figures["elo_rating"],
               "base_preference_accuracy": base["preference_accuracy"],
               "adapter_preference_accuracy": adapter["preference_accuracy"],
               "base_heldout_loss": base["heldout_loss"], "adapter_heldout_loss": adapter["heldout_loss"]}
    events.emit("eval", f"evaluation done in {seconds:.0f} s: held-out preference accuracy untrained head "
                        f"{base['preference_accuracy']:.3f} -> trained head {adapter['preference_accuracy']:.3f}; "
                        f"Bradley-Terry loss {base['heldout_loss']:.4f} -> {adapter['heldout_loss']:.4f}; win rate "
                        f"{games['win_rate']:.3f} over {games['matches']} pairs",
                phase="done", done=len(pairs), total=len(pairs),
                metrics={k: v for k, v in summary.items() if v is not None})
    return figures
