"""The bits of each kind of operation the miniature runs, on fixed inputs: which op family gives different
results on two CPUs (or natively and under emulation, studies/cross_vendor_emulated.py --ops).

    python studies/op_fingerprint.py            # prints {op: sha256 of its outputs (first 16 hex)}

Shapes are the miniature's (batch 4, 16x16x4 latents, 32/64 U-Net channels, text width 64, 8x8 attention);
forward and backward where training runs both. One thread; the ISA caps come from the environment.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def fingerprints() -> dict[str, str]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)

    def rand(*shape, grad=False):
        t = torch.randn(*shape, generator=g)
        return t.requires_grad_(grad)

    def digest(*tensors) -> str:
        h = hashlib.sha256()
        for t in tensors:
            h.update(t.detach().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    out = {}
    x, w = rand(256, 64, grad=True), rand(64, 64, grad=True)
    y = F.linear(x, w)
    y.square().sum().backward()
    out["linear (MKL sgemm) fwd+bwd"] = digest(y, x.grad, w.grad)
    q, k, v = rand(8, 64, 8), rand(8, 32, 8), rand(8, 32, 8)
    out["bmm (attention scores)"] = digest(torch.bmm(q, k.transpose(1, 2)))
    out["softmax"] = digest(torch.softmax(rand(8, 64, 32), dim=-1))
    out["scaled_dot_product_attention"] = digest(F.scaled_dot_product_attention(q, k, v))
    xc, wc = rand(4, 32, 16, 16, grad=True), rand(64, 32, 3, 3, grad=True)
    yc = F.conv2d(xc, wc, padding=1)
    yc.square().sum().backward()
    out["conv2d 3x3 (oneDNN) fwd+bwd"] = digest(yc, xc.grad, wc.grad)
    out["conv2d 1x1"] = digest(F.conv2d(rand(4, 64, 8, 8), rand(32, 64, 1, 1)))
    out["group_norm"] = digest(F.group_norm(rand(4, 64, 8, 8), 8, rand(64), rand(64)))
    out["layer_norm"] = digest(F.layer_norm(rand(4, 32, 64), (64,), rand(64), rand(64)))
    z = rand(4, 64, 8, 8)
    out["silu"] = digest(F.silu(z))
    out["gelu"] = digest(F.gelu(z))
    out["exp / log / rsqrt"] = digest(torch.exp(z), torch.log(z.abs() + 1), torch.rsqrt(z.abs() + 1))
    pos = z.abs() + 0.1
    out["sqrt (float32)"] = digest(torch.sqrt(pos))
    out["pow 0.5 (float32; diffusers' schedulers)"] = digest(pos**0.5)
    out["sqrt (float64)"] = digest(torch.sqrt(pos.double()))
    from continual_diffusion.utils.numerics import exact_sqrt

    with exact_sqrt():  # cpu_isa: portable
        out["sqrt, pow 0.5 (float32, float64) under exact_sqrt"] = digest(torch.sqrt(pos), pos**0.5,
                                                                           torch.sqrt(pos.double()))
    out["div / reciprocal"] = digest(z / pos, pos.reciprocal())
    out["sin / cos (timestep embedding)"] = digest(torch.sin(z * 10), torch.cos(z * 10))
    out["interpolate nearest (upsample)"] = digest(F.interpolate(z, scale_factor=2.0, mode="nearest"))
    out["sum / mean reductions"] = digest(z.sum(dim=(1, 2, 3)), z.mean(), z.var(dim=1))
    start = rand(64, 64)
    for label, kwargs in (("foreach, torch's default", {}), ("single tensor", {"foreach": False}),
                          ("fused", {"fused": True})):
        p = start.clone().requires_grad_(True)
        opt = torch.optim.AdamW([p], lr=1e-3, **kwargs)
        for _ in range(3):
            opt.zero_grad()
            (p.square().sum()).backward()
            opt.step()
        out[f"AdamW {label} (3 steps)"] = digest(p)
    p = start.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=1e-3)
    with exact_sqrt():
        for _ in range(3):
            opt.zero_grad()
            (p.square().sum()).backward()
            opt.step()
    out["AdamW foreach under exact_sqrt (3 steps)"] = digest(p)
    return out


if __name__ == "__main__":
    print(json.dumps(fingerprints(), indent=1))
