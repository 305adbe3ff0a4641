"""The method plugin interface (after avalanche's plugins and mammoth's ``begin_task``/``end_task``).

The shared loop (``training.train_task``) owns data, noise, the concept token, the optimizer,
checkpoints and logs; a method only says what else trains and what else is in the loss:

  prepare(model, env)           once per job, on the freshly loaded base model (env: benchmark, data
                                folder, seed: what a method may read besides its own state)
  restore_task(task, state)     re-apply a finished earlier task from what ``end_task`` saved
  begin_task(ctx)               before training task ``ctx.task`` (e.g. a fresh adapter, replay images);
                                ``ctx`` holds the task's latents, prompt ids, generator and loss function
  parameter_groups()            optimizer groups besides the concept token's embedding row
  extra_losses()                named loss terms, already weighted, added to the diffusion loss
  end_task(task)                after training: returns the tensors to save for this task
  step_metrics()                numbers logged every step (e.g. the unweighted penalty)
  task_metrics()                numbers logged per task (e.g. ||A_t B_t||)
  inference_groups(concepts)    which concepts share one model at sampling time (default: all)
  prepare_inference(concepts)   after restoring tasks 1..t: put the model in its sampling state for
                                that group of concepts
  training_recipe(task)         what training task t computes, when another method's job computes the
                                same (``shared_tasks.py``: such jobs are trained once and copied)

A method registers itself with ``@register`` in any module of this package (modules are discovered
at import); its code for the pipeline's rerun decisions is the modules of its class hierarchy
(``method_code_files``), so adding a method does not rerun the other methods' chains.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from continual_diffusion.core.training import TaskContext  # noqa: F401  (the plugins' view of a task)

METHODS: dict[str, type["ContinualMethod"]] = {}


def register(cls: type["ContinualMethod"]) -> type["ContinualMethod"]:
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def make_method(name: str, params: dict) -> "ContinualMethod":
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    return METHODS[name](params)


def method_code_files(name: str) -> list[str]:
    """Repo-relative files (``src/continual_diffusion/...``) of the method's class hierarchy inside
    this package and of its declared helper modules: its rerun triggers."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    modules = {ContinualMethod.__module__}
    modules |= {c.__module__ for c in METHODS[name].__mro__ if isinstance(c, type) and issubclass(c, ContinualMethod)}
    modules |= {m.__name__ for m in getattr(METHODS[name], "code_modules", ())}
    return sorted("src/" + m.replace(".", "/") + ".py" for m in modules)


@dataclass
class MethodEnv:
    """What a job tells a method about its chain (besides the model)."""

    benchmark: str = ""
    data_root: Path | None = None
    seed: int = 0


class ContinualMethod(ABC):
    name: ClassVar[str]
    code_modules: ClassVar[tuple] = ()  # helper modules of this package the method depends on

    def __init__(self, params: dict):
        self.params = dict(params)
        self.model = None
        self.env = MethodEnv()

    def prepare(self, model, env: MethodEnv | None = None) -> None:
        self.model = model
        self.env = env or MethodEnv()

    @abstractmethod
    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None: ...

    @abstractmethod
    def begin_task(self, ctx: TaskContext) -> None: ...

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

    def inference_groups(self, concepts: list[int]) -> list[list[int]]:
        """Concepts sampled with one model state (default: one merged model serves all of them)."""
        return [list(concepts)]

    def prepare_inference(self, concepts: list[int] | None = None) -> None:
        """After ``restore_task`` of tasks 1..t: the model as it samples ``concepts`` (default: as restored)."""

    def training_recipe(self, task: int) -> tuple | None:
        """A hashable description of how task ``task`` trains, from the state its chain left after task
        t-1: where the trained tensors start, which loss, which of this method's parameters enter it, and
        what ``end_task`` saves. Two methods whose recipes are equal for every task 1..t (and whose
        shared training settings are equal) write bit-identical task folders up to ``config.json``;
        ``shared_tasks.py`` then trains the job once and copies it. None (the default): never shared."""
        return None
