"""Where a job's diffusion model runs and in which precision (``runtime`` in params.yaml).

  runtime.device  cpu | cuda | auto   auto = cuda when a GPU is visible, else cpu
  runtime.dtype   fp32 | bf16 | auto  auto = bf16 on cuda, fp32 on cpu

The same code runs on both devices:
  * every random stream (noise, timesteps, batch indices, token initialisation, sampling noise) is drawn
    on a seeded CPU generator and moved to the device afterwards, so the CPU results are bit-identical
    to a run without this module, and a GPU run draws the same numbers;
  * bf16 is mixed precision, never bf16 weights: the frozen U-Net and text encoder run their forward
    passes under ``torch.autocast(bfloat16)``, while every weight stays fp32: the trainable tensors
    (LoRA A/B, K/V weights, the U-Net of DreamBooth, the token row), the optimizer state, C-LoRA's folded
    K/V base weights (a 5e-6 step is below bf16's half-ulp of about 6e-5 at |w| ~ 0.03: it would vanish)
    and the VAE, which encodes and decodes outside autocast;
  * on cuda, TF32 is allowed for fp32 matmuls and convolutions.
A job records its resolved runtime in its ``config.json`` when it is not the CPU in fp32 (the miniature's
setting, whose records predate this module and stay unchanged).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from continual_diffusion.utils.errors import PipelineError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: str  # "fp32" | "bf16"

    @property
    def is_default(self) -> bool:
        """The CPU in fp32: what every job ran before the runtime setting existed."""
        return self.device.type == "cpu" and self.dtype == "fp32"

    def autocast(self):
        """Context of the frozen networks' forward passes: bf16 autocast, or nothing in fp32."""
        if self.dtype == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on this device (the same object when it is already there)."""
        return tensor.to(self.device)

    def record(self) -> dict | None:
        """What a job's config.json records: None for the CPU in fp32, else the resolved device and dtype."""
        if self.is_default:
            return None
        return {"device": str(self.device), "dtype": self.dtype,
                "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None}


CPU_FP32 = Runtime(torch.device("cpu"), "fp32")


def resolve(settings: Mapping | None) -> Runtime:
    """The ``runtime`` section resolved on this machine; one-line errors for a bad value or a missing GPU."""
    settings = dict(settings or {})
    device, dtype = str(settings.get("device", "cpu")), str(settings.get("dtype", "fp32"))
    if device not in DEVICES:
        raise PipelineError(f"runtime.device: unknown device {device!r} ({' | '.join(DEVICES)})")
    if dtype not in DTYPES:
        raise PipelineError(f"runtime.dtype: unknown dtype {dtype!r} ({' | '.join(DTYPES)})")
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise PipelineError("runtime.device: cuda, but torch sees no CUDA device (torch "
                            f"{torch.__version__}, CUDA {torch.version.cuda}: check the NVIDIA driver and "
                            "CUDA_VISIBLE_DEVICES, or set runtime.device to auto or cpu)")
    if dtype == "auto":
        dtype = "bf16" if device == "cuda" else "fp32"
    if dtype == "bf16" and device == "cpu":
        raise PipelineError("runtime.dtype: bf16 needs runtime.device cuda (the CPU path is fp32 only)")
    return Runtime(torch.device(device), dtype)


def prepare_device(runtime: Runtime) -> None:
    """Process-wide settings of the device: TF32 for fp32 matmuls and convolutions on cuda."""
    if runtime.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
