"""Training methods, one module each (``sft``, ``dpo``), found by ``training_config.method``.

``get(name)`` imports every module of this package once (each registers its class with ``base.register``), so
adding a method is adding a file. See ``base.TrainingMethod`` for the protocol.
"""

from __future__ import annotations

import importlib
import pkgutil

from services.trainer.worker.methods.base import REGISTRY, StepOutput, TrainingMethod, register, unknown

__all__ = ["StepOutput", "TrainingMethod", "get", "names", "register"]

_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True


def get(name: str) -> type[TrainingMethod]:
    """The method class registered as ``name``; ``WorkerError`` naming the field when there is none."""
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown(name) from None


def names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)
