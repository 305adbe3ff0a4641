"""Square roots that every CPU rounds alike, for the jobs of ``cpu_isa: portable``.

torch takes the square root of a float CPU tensor with MKL's vector math. On AMD CPUs (and on Intel CPUs
under ``MKL_CBWR=COMPATIBLE``) that kernel starts from the approximate ``rsqrtps`` instruction, whose bits
the x86 specification leaves to each CPU design, and it is not correctly rounded (about 17% of float32
results differ from the exact one on an AMD EPYC): studies/results/cross_vendor.md. A pipeline job takes
such roots in three places, found with ``studies/sqrt_census.py``: AdamW's second-moment root, the noise
schedule's ``sqrt(abar_t)`` / ``sqrt(1 - abar_t)`` (diffusers' ``add_noise``) and the samplers' sigmas
(``alpha_t = 1 / sqrt(sigma_t^2 + 1)``).

Under ``cpu_isa: portable`` a job runs in ``exact_sqrt()`` (``job_numerics``, entered by cli.py around each
computing stage): a torch function mode that computes
``sqrt(x)`` and ``x ** 0.5`` of CPU float32 / float64 tensors with numpy's square root, which is IEEE 754's
correctly rounded one (``sqrtps`` / ``sqrtpd``: the same bits on every x86-64 CPU). That covers AdamW too:
its foreach and single-tensor forms take the root through ``torch._foreach_sqrt`` / ``Tensor.sqrt``. With the
ISA caps and ``MKL_CBWR=COMPATIBLE`` (config.ISA_ENVIRONMENT) that removes the vendor-dependent steps found on
the pipeline's path.

While ``portable`` is an option, not the default, this module is not among the stages' code dependencies
(pipeline.py): under the default ``cpu_isa`` it changes nothing a stage writes. Making ``portable`` the default
adds it there, with the re-recorded run that such a switch needs anyway.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

PORTABLE = "portable"  # the params.yaml cpu_isa value that asks for exact square roots


def portable(cpu_isa: str) -> bool:
    return cpu_isa == PORTABLE


def _exact(t: torch.Tensor) -> bool:
    """A tensor whose root torch would take with MKL's vector math: CPU float32 / float64."""
    return isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def _numpy_sqrt(t: torch.Tensor) -> torch.Tensor:
    """sqrt(t), correctly rounded (IEEE 754): numpy's square root, the hardware instruction."""
    values = t.detach().numpy()
    return torch.from_numpy(np.sqrt(values, out=np.empty_like(values)))  # out=: an array even for 0-d


class _ExactSqrtFunction(torch.autograd.Function):
    """y = sqrt(x) correctly rounded; dy/dx = 1 / (2 y) (torch's own formula for sqrt's gradient)."""

    @staticmethod
    def forward(ctx, x):
        y = _numpy_sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad / (2 * y)


def exact_sqrt_of(t: torch.Tensor) -> torch.Tensor:
    """sqrt(t) with IEEE rounding for CPU float tensors (differentiable); torch's sqrt otherwise."""
    if not _exact(t):
        return torch.sqrt(t)
    if t.requires_grad and torch.is_grad_enabled():
        return _ExactSqrtFunction.apply(t)
    return _numpy_sqrt(t)


def _is_half(exponent) -> bool:
    return isinstance(exponent, (int, float)) and not isinstance(exponent, bool) and exponent == 0.5


_ROOTS = {torch.sqrt, torch.Tensor.sqrt}
_ROOTS_INPLACE = {torch.sqrt_, torch.Tensor.sqrt_} if hasattr(torch, "sqrt_") else {torch.Tensor.sqrt_}
_POWERS = {torch.pow, torch.Tensor.pow, torch.Tensor.__pow__}
_POWERS_INPLACE = {torch.Tensor.pow_, torch.Tensor.__ipow__}
_FOREACH = {torch._foreach_sqrt}
_FOREACH_INPLACE = {torch._foreach_sqrt_}
_REROUTED = _ROOTS | _ROOTS_INPLACE | _POWERS | _POWERS_INPLACE | _FOREACH | _FOREACH_INPLACE


class ExactSqrtMode(TorchFunctionMode):
    """Reroutes sqrt / pow(., 0.5) of CPU float tensors to ``exact_sqrt_of``; every other call runs as is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _REROUTED:  # first: every call of the job passes here
            return func(*args, **kwargs)
        if not kwargs and args and _exact(args[0]):
            x = args[0]
            if func in _ROOTS and len(args) == 1:
                return exact_sqrt_of(x)
            if func in _POWERS and len(args) == 2 and _is_half(args[1]):
                return exact_sqrt_of(x)
            if func in _ROOTS_INPLACE and len(args) == 1:
                return x.copy_(_numpy_sqrt(x))
            if func in _POWERS_INPLACE and len(args) == 2 and _is_half(args[1]):
                return x.copy_(_numpy_sqrt(x))
        if not kwargs and len(args) == 1 and isinstance(args[0], (list, tuple)) and all(map(_exact, args[0])):
            if func in _FOREACH:
                return [exact_sqrt_of(t) for t in args[0]]
            if func in _FOREACH_INPLACE:
                for t in args[0]:
                    t.copy_(_numpy_sqrt(t))
                return None
        return func(*args, **kwargs)


def exact_sqrt(enabled: bool = True):
    """Context: inside it, square roots of CPU float tensors are correctly rounded (``ExactSqrtMode``)."""
    return ExactSqrtMode() if enabled else contextlib.nullcontext()


def job_numerics(cfg: dict):
    """Context of one computing job (cli.py: evaluator, train-task, evaluate-task, base-model, pretrain-base):
    ``exact_sqrt`` when the job's ``cpu_isa`` is portable, nothing otherwise."""
    return exact_sqrt(portable(cfg["cpu_isa"]))
