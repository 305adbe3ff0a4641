"""Utilities of every layer: configuration, errors, atomic file output, progress bars, device and numerics."""
