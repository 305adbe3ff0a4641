"""Deterministic procedural generators of learnable concepts (faces, waterfall landmarks)."""

from .source import GENERATORS, SyntheticSource

__all__ = ["GENERATORS", "SyntheticSource"]
