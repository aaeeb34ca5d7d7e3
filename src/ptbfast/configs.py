"""Model and training configurations, with TF ``ptb_word_lm.py``'s numbers."""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from ptbfast.precision import PRECISIONS

# The values of Config.grad_norm (ptbfast.sgd.global_norm's modes) and Config.nonfinite.
GRAD_NORM_MODES = ("indexed_slices", "dense")
NONFINITE_ACTIONS = ("stop", "skip")


@dataclass
class Config:
    init_scale: float = 0.1
    learning_rate: float = 1.0
    max_grad_norm: float = 5.0
    num_layers: int = 2
    num_steps: int = 20
    hidden_size: int = 200
    max_epoch: int = 4          # epochs at the initial learning rate
    max_max_epoch: int = 13     # epochs in all
    keep_prob: float = 1.0      # dropout keep probability (1.0 = no dropout)
    lr_decay: float = 0.5
    batch_size: int = 20
    vocab_size: int = 10000
    # Beyond TF's fields:
    forget_bias: float = 0.0    # TF ptb_word_lm builds BasicLSTMCell(forget_bias=0.0)
    tie_weights: bool = False   # output projection = embedding.T (Press & Wolf 2017)
    seed: int = 0               # parameter init and dropout
    # "indexed_slices": the embedding's share of the clipping norm is summed over per-token rows
    # as TF does for IndexedSlices (TF's published numbers); "dense": over the merged gradient.
    grad_norm: str = "indexed_slices"
    # A batch whose loss or gradient is NaN/Inf: "stop" (raise, weights untouched) or "skip" it.
    nonfinite: str = "stop"
    eval_batch_size: int = 1    # TF tests with batch 1 ...
    eval_num_steps: int = 1     # ... and 1 step
    # Matrix products in "fp32", or "bf16" mixed precision (ptbfast.precision; TF's --use_fp16).
    precision: str = "fp32"

    def __post_init__(self):
        # Each field of its type (a checkpoint's JSON could say "8" for 8), NumPy's numbers made Python's.
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), {"int": int, "float": float, "bool": bool, "str": str}[f.type]
            wrong = {int: not isinstance(value, numbers.Integral) or isinstance(value, bool),
                     float: not isinstance(value, numbers.Real) or isinstance(value, bool),
                     bool: not isinstance(value, (bool, np.bool_)), str: not isinstance(value, str)}[kind]
            if wrong:
                raise ValueError(f"config.{f.name} must be {'an' if kind is int else 'a'} {f.type}, got {value!r}")
            setattr(self, f.name, kind(value))
        for field in ("num_layers", "num_steps", "hidden_size", "max_max_epoch", "batch_size", "vocab_size",
                      "eval_batch_size", "eval_num_steps"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"config.{field} must be >= 1, got {getattr(self, field)}")
        for field in ("init_scale", "learning_rate", "max_grad_norm", "keep_prob", "lr_decay", "forget_bias"):
            if not math.isfinite(getattr(self, field)):  # a NaN passes every comparison below
                raise ValueError(f"config.{field} must be a finite number, got {getattr(self, field)}")
        if self.max_epoch < 0:
            raise ValueError(f"config.max_epoch must be >= 0, got {self.max_epoch}")
        if not 0.0 < self.keep_prob <= 1.0:
            raise ValueError(f"config.keep_prob must be in (0, 1], got {self.keep_prob}")
        for field in ("learning_rate", "max_grad_norm", "lr_decay"):
            if getattr(self, field) <= 0:
                raise ValueError(f"config.{field} must be > 0, got {getattr(self, field)}")
        if self.init_scale < 0:
            raise ValueError(f"config.init_scale must be >= 0, got {self.init_scale}")
        if self.nonfinite not in NONFINITE_ACTIONS:
            raise ValueError(f"config.nonfinite must be one of {', '.join(NONFINITE_ACTIONS)}, got {self.nonfinite!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"config.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.grad_norm not in GRAD_NORM_MODES:
            raise ValueError(f"config.grad_norm must be one of {', '.join(GRAD_NORM_MODES)}, got {self.grad_norm!r}")

    def learning_rate_at(self, epoch: int) -> float:
        """TF: ``learning_rate * lr_decay ** max(epoch + 1 - max_epoch, 0)`` for 0-based ``epoch``."""
        return self.learning_rate * self.lr_decay ** max(epoch + 1 - self.max_epoch, 0)

    def replace(self, **changes) -> "Config":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """The config saved in a checkpoint: fields it lacks (it predates them) take their defaults;
        fields this version does not know are ignored with a warning."""
        if not isinstance(values, dict):
            raise ValueError(f"a config must be a dict of fields, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            warnings.warn(f"ignoring config fields this version of ptbfast does not know: {', '.join(unknown)}",
                          stacklevel=2)
        return cls(**{k: v for k, v in values.items() if k in known})


CONFIGS = {
    "small": Config(),
    "medium": Config(init_scale=0.05, num_steps=35, hidden_size=650, max_epoch=6, max_max_epoch=39,
                     keep_prob=0.5, lr_decay=0.8),
    "large": Config(init_scale=0.04, max_grad_norm=10.0, num_steps=35, hidden_size=1500, max_epoch=14,
                    max_max_epoch=55, keep_prob=0.35, lr_decay=1 / 1.15),
    "test": Config(max_grad_norm=1.0, num_layers=1, num_steps=2, hidden_size=2, max_epoch=1, max_max_epoch=1),
}


def get_config(name: str, **overrides) -> Config:
    """A named TF config, with any field overridden: ``get_config("small", max_max_epoch=1)``."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name].replace(**overrides)
