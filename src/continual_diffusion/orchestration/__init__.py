"""Orchestration: the stage list behind the Snakefile and dvc.yaml, DVC recording, the record of a run,
the warm worker, GPU slots and Snakemake's timers. It sits above the stages and below ``cli``."""
