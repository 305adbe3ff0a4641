"""Models: U-Net configurations, cross-attention K/V adapters (LoRA / C-LoRA) and their costs."""
