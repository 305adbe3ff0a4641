"""Continual-learning methods as plugins of one training loop (``training.py``)."""

from .base import METHODS, ContinualMethod, make_method
from . import lora  # noqa: F401  (registers lora_sequential and clora)

__all__ = ["METHODS", "ContinualMethod", "make_method"]
