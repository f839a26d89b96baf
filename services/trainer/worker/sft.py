"""SFT on the model's chat template with the loss on the response tokens only.

A record becomes ``[user: instruction + input] -> [assistant: output]`` in the model's chat template. The
prompt part (everything up to and including the assistant header) gets label -100; the response tokens and the
end-of-turn token are trained. The loss is computed from the decoder's hidden states at the response
positions only, so full-vocabulary logits are never materialised for prompt tokens (for SmolLM2's 49k vocab
that matrix is a large share of the step's work).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.trainer.worker.prefix import decoder_hidden, lm_head_logits, shared_prefix_len

IGNORE_INDEX = -100
FALLBACK_PROMPT = "### Instruction:\n{user}\n\n### Response:\n"


@dataclass
class Encoded:
    input_ids: list[int]
    prompt_len: int
    """Tokens before the first trained token (labels are -100 there)."""
    truncated: bool = False

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * self.prompt_len + self.input_ids[self.prompt_len:]


@dataclass
class EncodeStats:
    truncated: int = 0
    dropped: list[int] = field(default_factory=list)
    """Indices of records with no response token left within max_seq_length."""
    template: str = "chat"


def user_message(record: dict) -> str:
    parts = [p for p in (record.get("instruction", ""), record.get("input", "")) if p and p.strip()]
    return "\n\n".join(parts)


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


def encode_records(tokenizer, records: list[dict], max_len: int) -> tuple[list[Encoded], EncodeStats]:
    """Tokenises the records; longer sequences are cut at ``max_len`` (at the end, like TRL)."""
    stats = EncodeStats(template="chat" if getattr(tokenizer, "chat_template", None) else "fallback")
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


def collate(examples: list[Encoded], pad_id: int):
    """Right-padded tensors ``input_ids``, ``attention_mask`` (None without padding) and ``labels``."""
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


def response_token_logps(causal_lm, input_ids, attention_mask, labels, prefix_len: int = 0):
    """Log-probabilities of the trained (label != -100) tokens, and the mask of where they sit.

    The LM head runs only on the positions that predict a trained token (no full-vocabulary logits for prompt
    tokens), and the first ``prefix_len`` tokens (the same in every row, before the first trained token's
    predecessor) run once for the whole batch (``prefix.decoder_hidden``). Returns ``(token_logps, keep)``:
    ``token_logps`` flat, in row-major order of ``keep`` (``[batch, width - prefix_len - 1]``, True where a
    trained token is predicted).
    """
    import torch.nn.functional as F

    hidden = decoder_hidden(causal_lm, input_ids, attention_mask, prefix_len=prefix_len)
    targets = labels[:, prefix_len + 1:]
    keep = targets.ne(IGNORE_INDEX)
    logits = lm_head_logits(causal_lm, hidden[:, :-1][keep])
    return -F.cross_entropy(logits.float(), targets[keep], reduction="none"), keep


def batch_prefix_len(examples: list[Encoded]) -> int:
    """The shared prefix of a batch, up to the position before the one that predicts its first trained token."""
    return shared_prefix_len([e.input_ids for e in examples], min(e.prompt_len for e in examples) - 1)


def response_only_loss(causal_lm, input_ids, attention_mask, labels, prefix_len: int = 0):
    """Mean cross-entropy over the trained (label != -100) tokens, and how many there were.

    Equal to the causal-LM loss of ``causal_lm(input_ids, labels=labels)`` (``response_token_logps``).
    """
    token_logps, keep = response_token_logps(causal_lm, input_ids, attention_mask, labels, prefix_len)
    return -token_logps.mean(), int(keep.sum())


@dataclass
class StepOutput:
    loss: object  # a scalar tensor with grad
    examples: int
    tokens: int
    """Non-padding tokens processed (the tokens/s figure)."""
    trained_tokens: int
    extra: dict = field(default_factory=dict)


class SFTObjective:
    """What the loop needs from a training method: example lengths and a loss for a batch of indices.

    (A DPO objective provides the same three members.)
    """

    def __init__(self, examples: list[Encoded], pad_id: int, device) -> None:
        self.examples = examples
        self.pad_id = pad_id
        self.device = device
        self.lengths = [len(e.input_ids) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def step(self, model, indices: list[int]) -> StepOutput:
        examples = [self.examples[i] for i in indices]
        batch = collate(examples, self.pad_id)
        to = lambda t: None if t is None else t.to(self.device, non_blocking=True)  # noqa: E731
        loss, trained = response_only_loss(model, to(batch["input_ids"]), to(batch["attention_mask"]),
                                           to(batch["labels"]), batch_prefix_len(examples))
        return StepOutput(loss, len(indices), batch["tokens"], trained)
