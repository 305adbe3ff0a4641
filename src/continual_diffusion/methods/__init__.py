"""Continual-learning methods as plugins of one training loop (``training.py``).

Every module of this package is imported here, so a new method only needs its own module with a
``@register``-ed ``ContinualMethod`` subclass (see ``base.py``) and its params.yaml entry
(docs/write_your_own_method.md); the schema's method names, the report's labels and cost table and
the export list all come from this registry.
"""

import importlib
import pkgutil

from continual_diffusion.methods.base import (
    METHODS,
    ContinualMethod,
    MethodEnv,
    TaskContext,
    check_config,
    make_method,
    method_code_files,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")


def exporting_methods(names) -> list[str]:
    """Those of ``names`` whose chains export to stock diffusers (``exports_diffusers``), in that order."""
    return [m for m in names if m in METHODS and METHODS[m].exports_diffusers]


def adapter_history_methods() -> list[str]:
    """Methods that log per-task adapter norms (the LoRA-type plots), sorted."""
    return sorted(m for m, cls in METHODS.items() if cls.adapter_history)


def method_label(name: str) -> str:
    """The paper's row name of a method id (the id itself for an unregistered name)."""
    return METHODS[name].display_name() if name in METHODS else name


__all__ = ["METHODS", "ContinualMethod", "MethodEnv", "TaskContext", "adapter_history_methods", "check_config",
           "exporting_methods", "make_method", "method_code_files", "method_label"]
