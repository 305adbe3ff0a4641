"""Datasets: synthetic generators, CelebA-HQ and Google Landmarks v2 readers, and the task sampler."""
