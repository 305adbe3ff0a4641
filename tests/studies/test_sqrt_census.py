"""studies/sqrt_census.py: it finds the square roots that reach MKL's vector math, and their callers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from continual_diffusion.utils.numerics import exact_sqrt

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "sqrt_census.py"


def _load():
    spec = importlib.util.spec_from_file_location("sqrt_census", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def roots_of_a_step():
    """What a job's step does: an AdamW update, a power 0.5 and an rsqrt."""
    p = torch.ones(8, requires_grad=True)
    optimizer = torch.optim.AdamW([p], lr=1e-3)
    (p * torch.arange(8.0)).square().sum().backward()
    optimizer.step()
    return torch.full((4,), 2.0) ** 0.5, torch.rsqrt(torch.full((4,), 4.0)), torch.arange(4) ** 2


def test_roots_are_counted_with_their_callers_and_none_under_exact_sqrt():
    census = _load()
    _, found = census.count_roots(roots_of_a_step)
    callers = set(found["sqrt"])
    assert any(c.startswith("torch/optim/adam.py") for c in callers)
    assert any("test_sqrt_census.py" in c and "roots_of_a_step" in c for c in callers)
    assert sum(found["rsqrt"].values()) == 1
    with exact_sqrt():
        _, inside = census.count_roots(roots_of_a_step)
    assert not inside["sqrt"] and sum(inside["rsqrt"].values()) == 1


def test_the_suite_covers_every_computing_stage_and_method():
    census = _load()
    jobs = dict(census.suite_jobs(Path("/tmp/w"), "portable", ["clora", "generative_replay"]))
    assert list(jobs) == ["evaluator", "train clora task 1", "train clora task 2", "evaluate clora task 2",
                          "train generative_replay task 1", "train generative_replay task 2",
                          "evaluate generative_replay task 2"]
    assert all(argv[-2:] == ["--set", "cpu_isa=portable"] for argv in jobs.values())
    assert jobs["evaluate clora task 2"][0] == "evaluate-task" and "train.steps.faces=3" in jobs["train clora task 1"]
