"""Continual-learning methods as plugins of one training loop (``training.py``).

Every module of this package is imported here, so a new method only needs its own module with a
``@register``-ed ``ContinualMethod`` subclass (see ``base.py``).
"""

import importlib
import pkgutil

from continual_diffusion.methods.base import METHODS, ContinualMethod, MethodEnv, TaskContext, make_method, method_code_files

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "ContinualMethod", "MethodEnv", "TaskContext", "make_method", "method_code_files"]
