"""Train jobs that several methods share: trained once, copied to the others.

Some methods' chains compute the same task by construction. In the default method list:
  * task 1 of sequential Custom Diffusion, its constrained merge, generative replay and the offline
    upper bound: K/V fine-tuning from the base on concept 1 (no earlier task to continue from, merge,
    replay or remember);
  * every task of the merge and of the offline upper bound (mode ``separate``): both fine-tune task t from
    the base on concept t alone, and differ only in how they sample afterwards.
Each method states this with ``ContinualMethod.training_recipe(task)``. Two jobs of the same benchmark,
seed and task share when their methods' recipes are equal for every task 1..t (so their chains hold the
same tensors up to t-1) and their shared training settings (``config.chain_settings`` without the
method's own parameters) are equal. The job of the first such method in ``train.methods`` trains; the
others copy its ``task.safetensors``, ``log.json`` and ``metrics.json`` and write their own
``config.json`` (``chain.copy_task``): the same bytes they would have trained, in a fraction of the time.
``train.share_identical_tasks: false`` trains every job (tests/test_shared_tasks.py compares both).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from continual_diffusion.methods import make_method
from continual_diffusion.utils.config import chain_settings


def sharing_key(cfg: Mapping, benchmark: str, method: str, task: int) -> str | None:
    """What task ``task`` of the (benchmark, method) chain computes, as a string; None when it is the
    method's own (a recipe of some task 1..t is None)."""
    settings = chain_settings(cfg, benchmark, method)
    instance = make_method(method, settings["method"])
    recipes = [instance.training_recipe(t) for t in range(1, task + 1)]
    if any(r is None for r in recipes):
        return None
    shared = {k: v for k, v in settings.items() if k != "method"}
    return json.dumps({"settings": shared, "recipes": [list(r) for r in recipes]}, sort_keys=True)


def source_method(cfg: Mapping, benchmark: str, method: str, task: int) -> str | None:
    """The method whose job for this task trains what ``method``'s would (the first of ``train.methods``
    with the same ``sharing_key``), or None when ``method`` trains it itself: sharing is off, the key is
    None, or ``method`` comes first."""
    if not cfg["train"].get("share_identical_tasks", False):
        return None
    key = sharing_key(cfg, benchmark, method, task)
    if key is None:
        return None
    for other in cfg["train"]["methods"]:
        if other == method:
            return None
        if sharing_key(cfg, benchmark, other, task) == key:
            return other
    return None
