"""The method plugin interface (after avalanche's plugins and mammoth's ``begin_task``/``end_task``).

The shared loop (``training.train_task``) owns data, noise, the concept token, the optimizer,
checkpoints and logs; a method only says what else trains and what else is in the loss:

  prepare(model)                once per job, on the freshly loaded base model
  restore_task(task, state)     re-apply a finished earlier task from what ``end_task`` saved
  begin_task(task, generator)   before training task ``task`` (e.g. a fresh adapter)
  parameter_groups()            optimizer groups besides the concept token's embedding row
  extra_losses()                named loss terms, already weighted, added to the diffusion loss
  end_task(task)                after training: returns the tensors to save for this task
  step_metrics()                numbers logged every step (e.g. the unweighted penalty)
  task_metrics()                numbers logged per task (e.g. ||A_t B_t||)
  prepare_inference()           after restoring tasks 1..t: put the model in its sampling state
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

METHODS: dict[str, type["ContinualMethod"]] = {}


def register(cls: type["ContinualMethod"]) -> type["ContinualMethod"]:
    METHODS[cls.name] = cls
    return cls


def make_method(name: str, params: dict) -> "ContinualMethod":
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    return METHODS[name](params)


class ContinualMethod(ABC):
    name: ClassVar[str]

    def __init__(self, params: dict):
        self.params = dict(params)
        self.model = None

    def prepare(self, model) -> None:
        self.model = model

    @abstractmethod
    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None: ...

    @abstractmethod
    def begin_task(self, task: int, generator: torch.Generator) -> None: ...

    @abstractmethod
    def parameter_groups(self) -> list[dict]: ...

    def extra_losses(self) -> dict[str, torch.Tensor]:
        return {}

    @abstractmethod
    def end_task(self, task: int) -> dict[str, torch.Tensor]: ...

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Current values of everything this method trains (checkpoints)."""
        return {}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of ``trainable_state`` (resuming from a checkpoint)."""

    def step_metrics(self) -> dict[str, float]:
        """Numbers logged every step besides the loss terms (e.g. the unweighted penalty)."""
        return {}

    def task_metrics(self) -> dict[str, float]:
        return {}

    def prepare_inference(self) -> None:
        """After ``restore_task`` of tasks 1..t: the model as it samples (default: as restored)."""
