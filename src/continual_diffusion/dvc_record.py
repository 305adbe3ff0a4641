"""Record in DVC what a plain ``snakemake`` run has completed, so ``dvc repro`` then has nothing to do.

A stage is recorded (``dvc commit --force <stage>``) when all its outputs exist and a dry run of
its Snakemake target schedules no job, i.e. Snakemake itself considers it up to date; anything
else is left for ``dvc repro`` to (re)run. See pipeline.py for the division of labour.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from .errors import PipelineError
from .pipeline import STAGES

log = logging.getLogger(__name__)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", CDIFF_DVC_RECORD="0")
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def pending_rules(targets: list[str], snakemake_args: list[str]) -> set[str] | None:
    """Rules with jobs still to run for ``targets`` (dry run), or None when the dry run failed."""
    cmd = [sys.executable, "-m", "snakemake", *targets, *snakemake_args, "--dry-run", "--nolock", "--quiet", "rules"]
    result = _run(cmd)
    if result.returncode != 0:
        log.warning("snakemake dry run failed; not recording in DVC:\n%s", result.stderr[-2000:])
        return None
    text = result.stdout + result.stderr
    pending = set()
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_][\w]*)\s+(\d+)\s*$", line.strip())
        if match and match.group(1) != "total" and int(match.group(2)) > 0:
            pending.add(match.group(1))
    return pending


def record(cfg: dict, snakemake_args: list[str] = ()) -> list[str]:
    """Commit the up-to-date stages into dvc.lock; returns their names."""
    if not Path(".dvc").is_dir():
        raise PipelineError(".dvc: not a DVC repository (run `dvc init` or skip dvc-record)")
    profile = cfg["profile"]
    built = [s for s in STAGES if all(Path(o).exists() for o in s.outs_for(profile))]
    if not built:
        return []
    pending = pending_rules([s.name for s in built], list(snakemake_args))
    if pending is None:
        return []
    complete = [s.name for s in built if not (pending & {*s.rules, s.name})]
    if not complete:
        return []
    result = _run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", *complete])
    if result.returncode != 0:
        lines = [l for l in (result.stderr + "\n" + result.stdout).splitlines() if l.strip()]
        raise PipelineError(f"dvc commit {' '.join(complete)}: {lines[-1] if lines else f'exit status {result.returncode}'}")
    log.info("recorded in dvc.lock: %s", ", ".join(complete))
    return complete
