"""SFT: supervised fine-tuning on the consensus answers, the loss on the response tokens only.

The loss is the mean cross-entropy over the response tokens (and the end-of-turn token) of the batch
(``logprobs.response_only_loss``): the decoder's hidden states reach the LM head at the response positions
only, so full-vocabulary logits are never materialised for prompt tokens.
"""

from __future__ import annotations

from services.trainer.worker import encoding, logprobs, sources
from services.trainer.worker.methods.base import StepOutput, TrainingMethod, register


@register
class SFTMethod(TrainingMethod):
    name = "sft"
    records = sources.SFT_RECORDS

    @classmethod
    def encode(cls, tokenizer, records, max_len):
        return encoding.encode_records(tokenizer, records, max_len)

    @staticmethod
    def example_length(example: encoding.Encoded) -> int:
        return len(example.input_ids)

    def step(self, causal_lm, indices: list[int]) -> StepOutput:
        examples = [self.examples[i] for i in indices]
        batch = encoding.collate(examples, self.pad_id)
        to = lambda t: None if t is None else t.to(self.device, non_blocking=True)  # noqa: E731
        loss, trained = logprobs.response_only_loss(causal_lm, to(batch["input_ids"]), to(batch["attention_mask"]),
                                                    to(batch["labels"]), logprobs.batch_prefix_len(examples))
        return StepOutput(loss, len(indices), batch["tokens"], trained)

    def loss_weight(self, out: StepOutput) -> float:
        # The loss is a mean per trained (response) token: batches combine by their trained tokens.
        return out.trained_tokens
