"""Encoding: records -> token ids in the model's chat template, the trained-token masks, and batch tensors.

An SFT record becomes ``[user: instruction + input] -> [assistant: output]``; a DPO pair becomes the same
prompt with two answers (``chosen``, ``rejected``), encoded exactly like an SFT record, so SFT and DPO jobs
(and the evaluation) see the same prompt. The prompt part (everything up to and including the assistant header)
is never trained (label -100); the response tokens and the end-of-turn token are. Longer sequences are cut at
``max_seq_length`` (at the end, like TRL); a record whose prompt alone fills it is dropped (``EncodeStats``).

Only the tokenizer is needed here (``collate`` imports torch when called).
"""

from __future__ import annotations

from dataclasses import dataclass, field

IGNORE_INDEX = -100
FALLBACK_PROMPT = "### Instruction:\n{user}\n\n### Response:\n"


@dataclass
class Encoded:
    """One SFT sequence."""

    input_ids: list[int]
    prompt_len: int
    """Tokens before the first trained token (labels are -100 there)."""
    truncated: bool = False

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * self.prompt_len + self.input_ids[self.prompt_len:]


@dataclass
class EncodedPair:
    """One preference pair: the prompt once, the two answers' response tokens."""

    prompt: list[int]
    chosen: list[int]
    """Response tokens of the chosen answer (after the prompt; already cut to max_seq_length)."""
    rejected: list[int]
    truncated: bool = False

    @property
    def length(self) -> int:
        """Tokens of the pair's row in ``logprobs.pair_logps`` (the prompt once, then both answers): what a batch
        pads to, and what length-grouped batching sorts by."""
        return len(self.prompt) + len(self.chosen) + len(self.rejected)

    def sequences(self) -> tuple[tuple[list[int], int], tuple[list[int], int]]:
        """(ids, prompt_len) of the chosen and of the rejected sequence."""
        n = len(self.prompt)
        return (self.prompt + self.chosen, n), (self.prompt + self.rejected, n)


@dataclass
class EncodeStats:
    truncated: int = 0
    dropped: list[int] = field(default_factory=list)
    """Indices of records with no response token left within max_seq_length."""
    template: str = "chat"


def _stats(tokenizer) -> EncodeStats:
    return EncodeStats(template="chat" if getattr(tokenizer, "chat_template", None) else "fallback")


# -- the chat template -----------------------------------------------------------------------------------------

def user_message(record: dict) -> str:
    parts = [p for p in (record.get("instruction", ""), record.get("input", "")) if p and p.strip()]
    return "\n\n".join(parts)


def pair_user_record(record: dict, side: str) -> dict:
    """A pair's side as an SFT-shaped record (the prompt is the whole user message)."""
    return {"instruction": record["prompt"], "input": "", "output": record[side]}


def prompt_and_response(tokenizer, record: dict) -> tuple[str, str]:
    """The prompt text (ending with the assistant header) and the response text (ending with end-of-turn)."""
    user = user_message(record)
    eos = tokenizer.eos_token or ""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": record["output"]}],
                                             tokenize=False)
        if full.startswith(prompt):
            response = full[len(prompt):]
            # Templates add a newline after the end-of-turn token; training on it teaches nothing.
            if eos and eos in response:
                response = response[: response.rindex(eos) + len(eos)]
            elif eos:
                response += eos
            return prompt, response
    prompt = FALLBACK_PROMPT.format(user=user)
    return prompt, record["output"] + eos


# -- records -> token ids --------------------------------------------------------------------------------------

def encode_records(tokenizer, records: list[dict], max_len: int) -> tuple[list[Encoded], EncodeStats]:
    """Tokenises SFT records; longer sequences are cut at ``max_len`` (at the end, like TRL)."""
    stats = _stats(tokenizer)
    pairs = [prompt_and_response(tokenizer, r) for r in records]
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    responses = tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"]
    out = []
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids = (p + r)[:max_len]
        if len(ids) <= len(p):
            stats.dropped.append(i)
            continue
        truncated = len(p) + len(r) > max_len
        stats.truncated += truncated
        out.append(Encoded(ids, len(p), truncated))
    return out, stats


def encode_pairs(tokenizer, records: list[dict], max_len: int) -> tuple[list[EncodedPair], EncodeStats]:
    """Tokenises DPO pairs with the chat template; each side is cut at ``max_len`` tokens (prompt included).

    ``stats.dropped`` lists the pairs whose prompt alone fills ``max_len`` (no response token would be left to
    compare).
    """
    stats = _stats(tokenizer)
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


# -- batches ---------------------------------------------------------------------------------------------------

def collate(examples: list[Encoded], pad_id: int):
    """Right-padded tensors ``input_ids``, ``attention_mask`` (None without padding) and ``labels``, and the
    count of non-padding ``tokens``."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    # Without padding the attention can use the plain causal kernel.
    return {"input_ids": ids, "attention_mask": None if bool(mask.all()) else mask, "labels": labels,
            "tokens": int(mask.sum())}

