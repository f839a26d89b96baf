"""The protocol every training method follows, and the registry that finds one by ``training_config.method``.

A method is a class, registered with ``@register``, in its own module of this package (modules here are
imported when a method is looked up, so a new method is a new file). The runner uses it stage by stage:

1. data: ``cls.records``, the ``sources.RecordKind`` it trains on (SFT records, DPO pairs), fetched and
   validated by ``sources`` (exporter, ``dataset_path``, or ``data/train.jsonl`` on resume);
2. encoding: ``cls.encode(tokenizer, records, max_len) -> (examples, EncodeStats)`` and
   ``cls.example_length(example)`` (what length-grouped batching sorts by and a batch pads to);
3. ``cls.create(examples, pad_id, device, spec)``: the method's state for one run;
4. ``method.prepare(peft_model, events, schedule)``: once before the first step (DPO: the reference
   log-probabilities with the adapter disabled); a new run or a resumed one;
5. ``method.step(causal_lm, indices) -> StepOutput``: the loss of one batch (with grad), the counts the loop
   adds up, and the method's step metrics (``extra``: into the ``step`` event);
   ``method.loss_weight(out)``: how batches' mean losses combine (gradient accumulation, validation loss);
6. ``method.metrics() -> dict``: the method's own figures for ``metrics.json`` after training;
7. ``cls.load_model(...)`` and ``method.evaluate(...)``: the model the method trains (a causal LM by default)
   and its evaluation after training (``evaluate.evaluate`` by default); the reward method overrides both.

The loop (optimizer, schedule, checkpoints, resume) and the evaluation after training are the same for every
method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from services.trainer.worker.job import WorkerError

if TYPE_CHECKING:
    from services.trainer.worker.batching import Schedule
    from services.trainer.worker.encoding import EncodeStats
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.sources import RecordKind


@dataclass
class StepOutput:
    loss: object  # a scalar tensor with grad
    examples: int
    tokens: int
    """Non-padding tokens processed (the tokens/s figure)."""
    trained_tokens: int
    extra: dict = field(default_factory=dict)
    """The method's step metrics (DPO: reward accuracy and margin), reported in the ``step`` event."""


class TrainingMethod:
    """Base class of a training method (see the module's docstring for the order of the calls)."""

    name: ClassVar[str]
    """``training_config.method``."""
    records: ClassVar[RecordKind]

    def __init__(self, examples: list, pad_id: int, device) -> None:
        self.examples = examples
        self.pad_id = pad_id
        self.device = device
        self.lengths = [self.example_length(e) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    # -- encoding (class level: no model needed) --------------------------------------------------------------

    @classmethod
    def encode(cls, tokenizer, records: list[dict], max_len: int) -> tuple[list, EncodeStats]:
        raise NotImplementedError

    @staticmethod
    def example_length(example) -> int:
        raise NotImplementedError

    # -- the model and the evaluation (the same for SFT and DPO) --------------------------------------------

    @classmethod
    def load_model(cls, model_path, spec, tokenizer, events: EventSink):
        """The base model with a fresh LoRA adapter (``modeling.Loaded``): a causal LM by default."""
        from services.trainer.worker import modeling

        return modeling.load_model(model_path, spec, tokenizer, events)

    def evaluate(self, job, peft_model, tokenizer, heldout, events: EventSink, settings) -> dict:
        """Base vs adapter on the held-out split (``evaluate.evaluate``), the figures for metrics.json."""
        from services.trainer.worker.evaluate import evaluate

        return evaluate(job, peft_model, tokenizer, heldout, events, settings)

    # -- one run ----------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, examples: list, pad_id: int, device, spec) -> TrainingMethod:
        """The method's state for a run of ``spec`` (a ``TrainingSpec``); override to read its own fields."""
        return cls(examples, pad_id, device)

    def prepare(self, peft_model, events: EventSink, schedule: Schedule) -> None:
        """Runs once before the first step (also on resume); nothing by default."""

    def step(self, causal_lm, indices: list[int]) -> StepOutput:
        raise NotImplementedError

    def loss_weight(self, out: StepOutput) -> float:
        """What a batch's (mean) loss is weighted by when batches are combined (gradient accumulation, the
        validation loss), so k batches weigh as one batch of them all: the examples by default."""
        return out.examples

    def metrics(self) -> dict:
        """Figures of the method merged into metrics.json (e.g. ``{"dpo": {...}}``); none by default."""
        return {}


REGISTRY: dict[str, type[TrainingMethod]] = {}


def register(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Class decorator: makes the method reachable by its ``name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"two training methods named {cls.name!r}: {REGISTRY[cls.name]} and {cls}")
    REGISTRY[cls.name] = cls
    return cls


def unknown(name: str) -> WorkerError:
    return WorkerError(f"training_config.method {name!r}: this worker has no such training method "
                       f"(it has: {', '.join(sorted(REGISTRY))})")
