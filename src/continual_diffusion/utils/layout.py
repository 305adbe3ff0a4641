"""The output layout of a chain: where a task's files live (one place for every path formula)."""

from __future__ import annotations

from pathlib import Path

TASK_FILE = "task.safetensors"  # a finished task's tensors: ``method.<name>`` from ``end_task`` and ``token.row``


def task_dir(chain: Path, task: int) -> Path:
    """``<chain>/task_XX``: task ``task`` of a chain folder (runs/, results/ or checkpoints/)."""
    return Path(chain) / f"task_{task:02d}"
