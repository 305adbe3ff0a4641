"""Deterministic procedural generators of learnable concepts (faces, waterfall landmarks)."""

from continual_diffusion.data.synthetic.source import GENERATORS, SyntheticSource

__all__ = ["GENERATORS", "SyntheticSource"]
