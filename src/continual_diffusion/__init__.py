"""Continual Diffusion / C-LoRA reproduction pipeline (Smith et al., TMLR 2024)."""

__version__ = "0.1.0"
