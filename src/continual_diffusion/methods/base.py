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

Besides the hooks, a method class states its facts once, as class attributes (docs/write_your_own_method.md):

  name                  its id (``train.methods``, ``methods.<name>`` in params.yaml, folder names)
  label                 the paper's row name in tables and figures (default: the id)
  required / defaults   its parameters: those params.yaml must give, and the others with their defaults
                        (merged along the class hierarchy); ``self.params`` is params.yaml's entry over
                        the defaults. Every method also takes ``token_lr`` (LOOP_PARAMS: the shared loop's)
  parameter_cost        (U-Net parameters trained, stored) per task: the report's N_param
  exports_diffusers     its chain exports to stock diffusers (``stages/export.py``)
  adapter_history       logs ``delta_norm_mean`` / ``delta_norm_max`` per task (LoRA-type plots);
                        ``penalised``: also the raw penalty ``forget_raw`` per step

``check_config`` validates params.yaml's method names and parameter keys against this registry (the
Snakefile and the command line call it after ``utils.config.load``; the value types are the schema's).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from continual_diffusion.core.training import TaskContext  # noqa: F401  (the plugins' view of a task)
from continual_diffusion.utils.errors import PipelineError

METHODS: dict[str, type[ContinualMethod]] = {}


def register(cls: type[ContinualMethod]) -> type[ContinualMethod]:
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def known_methods() -> str:
    return ", ".join(sorted(METHODS))


def make_method(name: str, params: dict) -> ContinualMethod:
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


# Parameters every method takes, read by the shared loop and not by the method (config.token_lr).
LOOP_PARAMS = ("token_lr",)


class ContinualMethod(ABC):
    name: ClassVar[str]
    label: ClassVar[str] = ""  # the paper's row name (tables, figures); "" = the id
    required: ClassVar[tuple[str, ...]] = ()  # parameters params.yaml must give (merged along the hierarchy)
    defaults: ClassVar[dict[str, Any]] = {}  # the other parameters and their defaults (merged likewise)
    exports_diffusers: ClassVar[bool] = False  # stages/export.py writes its chain for stock diffusers
    adapter_history: ClassVar[bool] = False  # task metrics delta_norm_mean / _max (the LoRA-type plots)
    penalised: ClassVar[bool] = False  # with adapter_history: the raw penalty forget_raw per step too
    code_modules: ClassVar[tuple] = ()  # helper modules of this package the method depends on

    def __init__(self, params: dict):
        self.params = self.resolve_params(params)
        self.model = None
        self.env = MethodEnv()

    @classmethod
    def display_name(cls) -> str:
        return cls.label or cls.name

    @classmethod
    def _merged(cls, attribute: str) -> list:
        return [c.__dict__[attribute] for c in reversed(cls.__mro__) if attribute in c.__dict__]

    @classmethod
    def required_params(cls) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for names in cls._merged("required") for k in names))

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for defaults in cls._merged("defaults"):
            out.update(defaults)
        return out

    @classmethod
    def known_params(cls) -> tuple[str, ...]:
        return tuple(sorted({*cls.required_params(), *cls.param_defaults(), *LOOP_PARAMS}))

    @classmethod
    def resolve_params(cls, params: Mapping) -> dict:
        """params.yaml's entry (one benchmark's values, ``config.method_params``) over the defaults."""
        return {**cls.param_defaults(), **params}

    @classmethod
    def parameter_cost(cls, params: dict, unet) -> tuple[int, int]:
        """(U-Net parameters trained, U-Net parameters stored) per task with ``params`` on ``unet`` (a meta-device
        U-Net: shapes only), the report's N_param (``metrics/param_cost.py``). Every method states its own."""
        raise PipelineError(f"methods.{cls.name}: no parameter-cost formula (define parameter_cost on its class, "
                            "docs/write_your_own_method.md)")

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

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Inverse of ``trainable_state`` (resuming from a checkpoint)."""

    def step_metrics(self) -> dict[str, float]:
        """Numbers logged every step besides the loss terms (e.g. the unweighted penalty)."""
        return {}

    def task_metrics(self) -> dict[str, float]:
        return {}

    def inference_groups(self, concepts: list[int]) -> list[list[int]]:
        """Concepts sampled with one model state (default: one merged model serves all of them)."""
        return [list(concepts)]

    def prepare_inference(self, concepts: list[int] | None = None) -> None:  # noqa: B027 - optional hook, no-op by default
        """After ``restore_task`` of tasks 1..t: the model as it samples ``concepts`` (default: as restored)."""

    def training_recipe(self, task: int) -> tuple | None:
        """A hashable description of how task ``task`` trains, from the state its chain left after task
        t-1: where the trained tensors start, which loss, which of this method's parameters enter it, and
        what ``end_task`` saves. Two methods whose recipes are equal for every task 1..t (and whose
        shared training settings are equal) write bit-identical task folders up to ``config.json``;
        ``shared_tasks.py`` then trains the job once and copies it. None (the default): never shared."""
        return None


def _check_names(names, where: str) -> None:
    for name in names:
        if name not in METHODS:
            raise PipelineError(f"{where}: {name!r} is not a method (known: {known_methods()})")


def _check_entries(methods: Mapping, where: str, complete: bool) -> None:
    """Every ``methods.<name>`` is a registered method and takes each key given; ``complete``: gives every
    required one too."""
    for name, entry in methods.items():
        if name not in METHODS:
            raise PipelineError(f"{where}methods.{name}: unknown method (known: {known_methods()})")
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise PipelineError(f"{where}methods.{name}: a mapping of parameters, got {entry!r}")
        cls = METHODS[name]
        known = cls.known_params()
        for key in entry:
            if key not in known:
                raise PipelineError(f"{where}methods.{name}.{key}: unknown parameter of method {name} "
                                    f"(known: {', '.join(known)})")
        if complete:
            for key in cls.required_params():
                if key not in entry:
                    raise PipelineError(f"{where}methods.{name}.{key}: required parameter of method {name} missing")


def check_config(cfg: Mapping) -> None:
    """params.yaml's methods against the registry, after ``utils.config.load`` (which checks the values' types):
    the method names of ``train.methods``, ``methods`` and ``resources.<rule>.methods``, and each method's
    parameter keys, in the resolved configuration and in every profile's overlay. Errors are one line naming the key."""
    _check_names(cfg["train"]["methods"], "train.methods")
    _check_entries(cfg["methods"], "", complete=True)
    for name in cfg["train"]["methods"]:
        if name not in cfg["methods"]:
            raise PipelineError(f"methods.{name}: no parameters for method {name} (train.methods lists it)")
    for rule, entry in (cfg.get("resources") or {}).items():
        if isinstance(entry, Mapping) and isinstance(entry.get("methods"), Mapping):
            _check_names(entry["methods"], f"resources.{rule}.methods")
    for profile, overlay in (cfg.get("profiles") or {}).items():
        overlay = overlay or {}
        _check_names((overlay.get("train") or {}).get("methods") or [], f"profiles.{profile}.train.methods")
        _check_entries(overlay.get("methods") or {}, f"profiles.{profile}.", complete=False)
