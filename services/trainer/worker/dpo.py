"""DPO (direct preference optimisation) on debate preference pairs, with the base model as the reference.

A pair ``{"prompt", "chosen", "rejected", "metadata"}`` (the exporter's DPO record) becomes two sequences in
the model's chat template, ``[user: prompt] -> [assistant: chosen]`` and ``[user: prompt] -> [assistant:
rejected]``, encoded exactly like an SFT record (``sft.prompt_and_response``), so SFT and DPO jobs (and the
evaluation) see the same prompt. A sequence's log-probability is the sum over its response tokens (and the
end-of-turn token); prompt tokens never reach the LM head.

Loss (Rafailov et al. 2023, the sigmoid loss TRL uses by default):
``-log σ(β · ((π_c − ref_c) − (π_r − ref_r)))`` where π is the policy (base + LoRA adapter) and ref the base
model alone. The reference log-probabilities do not change during training, so they are computed ONCE per pair
before the first step, with the adapter disabled (``model.disable_adapter()``), instead of a second forward pass
at every step. Each step reports ``reward_accuracy`` (share of pairs whose implicit reward
``β · (π − ref)`` is higher for chosen) and ``reward_margin`` (mean chosen minus rejected reward) in ``extra``.

Data loading needs only ``json``/``grpc`` (no torch), like ``data.py``: bad pairs or an unreachable exporter
fail the job before the model is loaded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from services.trainer.spec import resolve_dataset_path
from services.trainer.worker import data as data_mod
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError
from services.trainer.worker.prefix import decoder_hidden, lm_head_logits, shared_prefix_len

REFERENCE_BATCH = 4
"""Pairs per forward pass when precomputing the reference log-probabilities."""

_PROMPT, _CHOSEN, _REJECTED, _PAD = range(4)  # the segments of a packed pair row (``pair_logps``)


# -- data ------------------------------------------------------------------------------------------------------

def check_dpo_record(obj) -> tuple[dict | None, str]:
    """(the normalised pair, "") or (None, the reason it is not a usable DPO pair)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    for key in ("prompt", "chosen", "rejected"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            return None, f"field {key!r} must be a string"
        if not (value or "").strip():
            return None, f"missing or empty field {key!r}"
    if obj["chosen"].strip() == obj["rejected"].strip():
        return None, "'chosen' and 'rejected' are the same text (no preference to learn)"
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        return None, "field 'metadata' must be an object"
    return {"prompt": obj["prompt"], "chosen": obj["chosen"], "rejected": obj["rejected"], "metadata": metadata}, ""


def read_dpo_jsonl(path, label: str) -> list[dict]:
    """Reads and validates a JSONL file of DPO pairs; every bad line is reported (up to a few)."""
    records, errors, bad = [], [], 0
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise WorkerError(f"{label}: cannot read {path}: {exc.strerror}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                record, reason = None, f"invalid JSON ({exc.msg} at column {exc.colno})"
            else:
                record, reason = check_dpo_record(obj)
            if record is None:
                bad += 1
                if len(errors) < data_mod.MAX_REPORTED_ERRORS:
                    errors.append(f"line {lineno}: {reason}")
            else:
                records.append(record)
    if bad:
        more = f" (and {bad - len(errors)} more)" if bad > len(errors) else ""
        raise WorkerError(f"{label}: {bad} bad DPO pair{'s' if bad > 1 else ''}: " + "; ".join(errors) + more)
    return records


def load_pairs(job: JobConfig, events: EventSink) -> tuple[list[dict], str]:
    """The job's DPO training pairs and where they came from (a phrase for the event log).

    A resumed job reuses its ``data/train.jsonl``; else ``dataset_path`` (a JSONL of DPO pairs) or the
    exporter's DPO export of the job's vertical, train split, ``min_confidence_diff`` of the spec.
    """
    saved = job.data_dir / data_mod.TRAIN_FILE
    if job.resume and saved.is_file():
        return read_dpo_jsonl(saved, label=str(saved)), f"{saved.relative_to(job.job_dir)} (resumed job)"
    spec = job.spec
    if spec.dataset_path:
        try:
            path = resolve_dataset_path(spec.dataset_path, job.data_root)
        except ValueError as exc:
            raise WorkerError(f"training_config.dataset_path {spec.dataset_path!r} {exc}") from None
        if not path.is_file():
            raise WorkerError(f"training_config.dataset_path: no such file: {path}")
        records = read_dpo_jsonl(path, label=f"dataset_path {spec.dataset_path} (method dpo)")
        if not records:
            raise WorkerError(f"no training data: dataset_path {spec.dataset_path} holds no DPO pairs")
        return records, f"dataset_path {spec.dataset_path}"
    records = fetch_dpo(job, events, split="train", min_confidence_diff=spec.min_confidence_diff)
    if not records:
        raise WorkerError(
            f"no training data: the exporter's DPO export (vertical {job.vertical or 'all'}, train split, "
            f"min_confidence_diff {spec.min_confidence_diff:g}) has no pairs; import debates for this vertical "
            "or lower training_config.min_confidence_diff")
    return records, f"the exporter at {job.exporter_address}"


def fetch_dpo(job: JobConfig, events: EventSink, split: str, min_confidence_diff: float | None,
              limit: int | None = None, retry: bool = True) -> list[dict]:
    """The exporter's DPO pairs of the job's vertical and ``split`` ("train" / "heldout") over gRPC.

    ``retry``: keep retrying an unreachable exporter for the job's ``exporter_retry_seconds`` (as the SFT fetch
    does); without it one attempt decides.
    """
    from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc

    request = exporter_pb2.ExportDPORequest(
        vertical=job.vertical,
        split=exporter_pb2.SPLIT_HELDOUT if split == "heldout" else exporter_pb2.SPLIT_TRAIN)
    if min_confidence_diff is not None:
        request.min_confidence_diff = min_confidence_diff
    if limit:
        request.limit = limit

    def convert(r) -> dict:
        m = r.metadata
        return {"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected,
                "metadata": {"debate_id": m.debate_id, "confidence_diff": m.confidence_diff,
                             "vertical": m.vertical}}

    raw = data_mod._export(job if retry else _no_retry(job), events, "DPO", lambda stub: stub.ExportDPO, request,
                           convert, exporter_pb2_grpc)
    out = []
    for i, obj in enumerate(raw):
        record, reason = check_dpo_record(obj)
        if record is None:
            # The exporter validates its records; one that is still unusable is skipped, not fatal.
            events.warning(f"skipped exported DPO pair {i + 1} "
                           f"(debate {obj['metadata'].get('debate_id') or '?'}): {reason}")
        else:
            out.append(record)
    return out


def _no_retry(job: JobConfig) -> JobConfig:
    import dataclasses

    return dataclasses.replace(job, exporter_retry_seconds=0.0)


# -- encoding --------------------------------------------------------------------------------------------------

@dataclass
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    """Response tokens of the chosen answer (after the prompt; already cut to max_seq_length)."""
    rejected: list[int]
    truncated: bool = False

    @property
    def length(self) -> int:
        """Tokens of the pair's row in ``pair_logps`` (the prompt once, then both answers): what a batch pads
        to, and what length-grouped batching sorts by."""
        return len(self.prompt) + len(self.chosen) + len(self.rejected)

    def sequences(self) -> tuple[tuple[list[int], int], tuple[list[int], int]]:
        """(ids, prompt_len) of the chosen and of the rejected sequence."""
        n = len(self.prompt)
        return (self.prompt + self.chosen, n), (self.prompt + self.rejected, n)


def pair_user_record(record: dict, side: str) -> dict:
    """A pair's side as an SFT-shaped record (the prompt is the whole user message)."""
    return {"instruction": record["prompt"], "input": "", "output": record[side]}


def encode_pairs(tokenizer, records: list[dict], max_len: int):
    """Tokenises the pairs with the chat template; each side is cut at ``max_len`` tokens (prompt included).

    Returns ``(pairs, stats)`` with ``stats`` an ``sft.EncodeStats``: ``dropped`` lists the pairs whose prompt
    alone fills ``max_len`` (no response token would be left to compare).
    """
    from services.trainer.worker.sft import EncodeStats, prompt_and_response

    stats = EncodeStats(template="chat" if getattr(tokenizer, "chat_template", None) else "fallback")
    texts = []
    for r in records:
        prompt, chosen = prompt_and_response(tokenizer, pair_user_record(r, "chosen"))
        _, rejected = prompt_and_response(tokenizer, pair_user_record(r, "rejected"))
        texts.append((prompt, chosen, rejected))
    prompts = tokenizer([t[0] for t in texts], add_special_tokens=False)["input_ids"]
    chosen = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    rejected = tokenizer([t[2] for t in texts], add_special_tokens=False)["input_ids"]
    out = []
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected)):
        room = max_len - len(p)
        if room <= 0:
            stats.dropped.append(i)
            continue
        truncated = len(c) > room or len(r) > room
        stats.truncated += truncated
        out.append(EncodedPair(list(p), list(c[:room]), list(r[:room]), truncated))
    return out, stats


# -- log-probabilities -----------------------------------------------------------------------------------------

def sequence_logps(causal_lm, seqs: list[tuple[list[int], int]], pad_id: int, device):
    """Summed log-probabilities of each sequence's response tokens (positions >= prompt_len), and their counts.

    ``seqs``: ``(input_ids, prompt_len)`` per sequence. Returns ``(sums, counts)``, float32 tensors of shape
    ``[len(seqs)]`` (``sums`` carries grad when grad is enabled). The LM head runs only on the positions that
    predict a response token, like ``sft.response_only_loss``.
    """
    import torch

    from services.trainer.worker.sft import Encoded, batch_prefix_len, collate, response_token_logps

    examples = [Encoded(list(ids), plen) for ids, plen in seqs]
    batch = collate(examples, pad_id)
    mask = batch["attention_mask"]
    token_logps, keep = response_token_logps(causal_lm, batch["input_ids"].to(device),
                                             None if mask is None else mask.to(device),
                                             batch["labels"].to(device), batch_prefix_len(examples))
    n = len(seqs)
    rows = torch.arange(n, device=keep.device).unsqueeze(1).expand_as(keep)[keep]
    sums = torch.zeros(n, dtype=torch.float32, device=keep.device).index_add(0, rows, token_logps)
    return sums, keep.sum(dim=1).to(torch.float32)


def pair_logps(causal_lm, pairs: list[EncodedPair], pad_id: int, device):
    """Summed response log-probabilities of each pair's chosen and rejected answer, the prompt run ONCE per pair.

    Each pair becomes one row ``[prompt | chosen | rejected | padding]``: a 4-D attention mask keeps the
    rejected tokens from seeing the chosen ones (they attend to the prompt and to themselves, causally) and their
    position ids restart where the prompt ends, so every response token sees exactly the context it has in its
    own ``prompt + response`` sequence. The first response token of both answers is predicted by the prompt's
    last position. The same figures as ``sequence_logps`` over the two sequences (``tests/speed``), with the
    prompt's share of the compute paid once instead of twice.

    Returns ``(sums, counts)`` of shape ``[2n]``: the n chosen answers, then the n rejected ones (the layout of
    ``sequence_logps([chosen sequences] + [rejected sequences])``).
    """
    import torch
    import torch.nn.functional as F

    n = len(pairs)
    width = max(p.length for p in pairs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    segment = torch.full((n, width), _PAD, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    rows, at, targets, slots = [], [], [], []
    for row, p in enumerate(pairs):
        plen, clen, rlen = len(p.prompt), len(p.chosen), len(p.rejected)
        ids[row, :plen + clen + rlen] = torch.tensor(p.prompt + p.chosen + p.rejected)
        segment[row, :plen], segment[row, plen:plen + clen] = _PROMPT, _CHOSEN
        segment[row, plen + clen:plen + clen + rlen] = _REJECTED
        positions[row, :plen + clen] = torch.arange(plen + clen)
        positions[row, plen + clen:plen + clen + rlen] = torch.arange(plen, plen + rlen)
        # chosen[j] is predicted at plen-1+j; rejected[0] at plen-1, rejected[j>0] at plen+clen+j-1
        chosen_at = list(range(plen - 1, plen + clen - 1))
        rejected_at = ([plen - 1] + list(range(plen + clen, plen + clen + rlen - 1)))[:rlen]
        rows += [row] * (clen + rlen)
        at += chosen_at + rejected_at
        targets += p.chosen + p.rejected
        slots += [row] * clen + [n + row] * rlen
    q_seg, k_seg = segment.unsqueeze(2), segment.unsqueeze(1)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed = causal & (k_seg != _PAD) & ~((q_seg == _REJECTED) & (k_seg == _CHOSEN))
    allowed |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves: no all-masked softmax
    # The prompts' common start (system prompt, instruction) runs once per batch, up to the position before
    # the first answer token's predictor.
    prefix_len = shared_prefix_len([p.prompt for p in pairs], min(len(p.prompt) for p in pairs) - 1)
    hidden = decoder_hidden(causal_lm, ids.to(device), allowed.unsqueeze(1).to(device), positions.to(device),
                            prefix_len=prefix_len)
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(at, device=device) - prefix_len]
    logits = lm_head_logits(causal_lm, picked)
    token_logps = -F.cross_entropy(logits.float(), torch.tensor(targets, device=device), reduction="none")
    slot_index = torch.tensor(slots, device=device)
    sums = torch.zeros(2 * n, dtype=torch.float32, device=device).index_add(0, slot_index, token_logps)
    counts = torch.tensor([float(len(p.chosen)) for p in pairs] + [float(len(p.rejected)) for p in pairs])
    return sums, counts.to(device)


def used_indices(lengths: list[int], batch_size: int, seed: int, total_steps: int) -> list[int]:
    """The examples the first ``total_steps`` batches of the loop's (seeded) order contain."""
    from services.trainer.worker.batching import batch_order

    used: set[int] = set()
    steps, epoch = 0, 0
    while steps < total_steps and lengths:
        for batch in batch_order(lengths, batch_size, seed, epoch):
            if steps >= total_steps:
                break
            used.update(batch)
            steps += 1
        epoch += 1
        if len(used) == len(lengths):
            break
    return sorted(used)


# -- the objective ---------------------------------------------------------------------------------------------

class DPOObjective:
    """What the loop needs from a training method (``lengths``, ``len()``, ``step``) for DPO.

    ``compute_reference(peft_model)`` must run once before the first step.
    """

    def __init__(self, pairs: list[EncodedPair], pad_id: int, device, beta: float) -> None:
        self.pairs = pairs
        self.pad_id = pad_id
        self.device = device
        self.beta = float(beta)
        self.lengths = [p.length for p in pairs]
        self.ref_chosen = None
        self.ref_rejected = None
        self.reference_seconds = 0.0
        self.reference_pairs = 0
        self.last_extra: dict = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def compute_reference(self, peft_model, events: EventSink | None = None, indices=None,
                          batch_size: int = REFERENCE_BATCH) -> None:
        """Log-probabilities of the pairs' chosen and rejected responses under the base model (adapter
        disabled), once, in length-sorted batches; reports progress as ``eval`` events (phase ``reference``).

        ``indices``: the pairs training will use (all when None): a run capped by ``max_steps`` pays only for
        the pairs it trains on.
        """
        import torch

        t0 = time.monotonic()
        causal_lm = peft_model.get_base_model()
        wanted = sorted(set(range(len(self.pairs)) if indices is None else indices))
        order = sorted(wanted, key=lambda i: -self.pairs[i].length)
        chosen = torch.full((len(self.pairs),), float("nan"))
        rejected = torch.full((len(self.pairs),), float("nan"))
        self.reference_pairs = len(wanted)
        was_training = peft_model.training
        peft_model.eval()
        last_report = 0.0
        try:
            with torch.no_grad(), peft_model.disable_adapter():
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    sums, _ = pair_logps(causal_lm, [self.pairs[i] for i in idx], self.pad_id, self.device)
                    sums = sums.float().cpu()
                    at = torch.tensor(idx, dtype=torch.long)
                    chosen[at], rejected[at] = sums[:len(idx)], sums[len(idx):]
                    done = min(start + batch_size, len(order))
                    now = time.monotonic()
                    if events is not None and (now - last_report > 2.0 or done == len(order)):
                        last_report = now
                        events.emit("eval", f"reference log-probabilities (base model, adapter disabled): "
                                            f"{done}/{len(wanted)} pairs",
                                    phase="reference", done=done, total=len(wanted), metrics={})
        finally:
            peft_model.train(was_training)
        # NaN marks a pair without a reference: using one is a bug, caught in ``step``.
        self.ref_chosen, self.ref_rejected = chosen, rejected
        self.reference_seconds = time.monotonic() - t0

    def step(self, model, indices: list[int]):
        """The DPO loss of a batch of pairs (``model``: the causal LM with the adapter active)."""
        import torch
        import torch.nn.functional as F

        from services.trainer.worker.sft import StepOutput

        if self.ref_chosen is None:
            raise RuntimeError("DPOObjective.compute_reference must run before the first step")
        pairs = [self.pairs[i] for i in indices]
        sums, counts = pair_logps(model, pairs, self.pad_id, self.device)
        n = len(pairs)
        idx = torch.tensor(indices)
        ref_c, ref_r = self.ref_chosen[idx], self.ref_rejected[idx]
        if bool(torch.isnan(ref_c).any() or torch.isnan(ref_r).any()):
            raise RuntimeError(f"no reference log-probabilities for pairs {indices}")
        ref_c, ref_r = ref_c.to(sums.device), ref_r.to(sums.device)
        chosen_reward = self.beta * (sums[:n] - ref_c)
        rejected_reward = self.beta * (sums[n:] - ref_r)
        loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
        with torch.no_grad():
            cr, rr = chosen_reward.detach(), rejected_reward.detach()
            extra = {"reward_accuracy": float((cr > rr).float().mean()),
                     "reward_margin": float((cr - rr).mean()),
                     "chosen_reward": float(cr.mean()), "rejected_reward": float(rr.mean())}
        self.last_extra = extra
        # The tokens of the two sequences, as a trainer without prompt sharing counts the same work.
        tokens = sum(len(s) for p in pairs for s, _ in p.sequences())
        return StepOutput(loss, n, tokens, int(counts.sum()), extra)
