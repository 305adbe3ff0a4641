"""The identity classifier of the miniature (trained by the ``identity_evaluator`` stage) and its folder.

``models/<profile>/evaluator/<benchmark>/`` holds ``classifier.safetensors`` and ``evaluator.json`` (classes,
parameters, held-out accuracies). Classes: the benchmark's task concepts plus "other".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from continual_diffusion.utils.errors import PipelineError

WEIGHTS = "classifier.safetensors"
MANIFEST = "evaluator.json"
OTHER = "other"
OTHER_OFFSET = 10_000  # image indices of "other" renders: disjoint from the concepts' held-out indices


class IdentityNet(nn.Module):
    """Area-resize to ``input_size``, five stride-2 3x3 conv blocks (GroupNorm, SiLU), global average
    pool, embedding, classes. Judging identity at a reduced size keeps the decision on what a
    sample shows (colours, shapes, layout) rather than on sharpness the generator cannot reach."""

    def __init__(self, n_classes: int, width: int = 32, embedding: int = 64, input_size: int | None = None):
        super().__init__()
        self.input_size = input_size
        chans = [3, width, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1),
                       nn.GroupNorm(8, chans[i + 1]), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.embed = nn.Linear(chans[-1], embedding)
        self.head = nn.Linear(embedding, n_classes)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="area")
        return self.embed(self.features(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.nn.functional.silu(self.embedding(x)))


def to_input(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images_uint8))
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def predict(net: IdentityNet, images_uint8, batch: int = 256) -> torch.Tensor:
    """Class probabilities, N x (n_concepts + 1)."""
    net.eval()
    x = to_input(images_uint8)
    with torch.no_grad():
        return torch.cat([net(x[i:i + batch]).softmax(dim=1) for i in range(0, x.shape[0], batch)])


def load_evaluator(folder: Path) -> tuple[IdentityNet, dict]:
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise PipelineError(f"{folder / MANIFEST}: evaluator not built (run the evaluator stage)")
    report = json.loads((folder / MANIFEST).read_text())
    net = IdentityNet(len(report["classes"]), width=report["params"]["width"], input_size=report["params"].get("input_size"))
    net.load_state_dict(load_file(str(folder / WEIGHTS)))
    net.eval()
    return net, report
