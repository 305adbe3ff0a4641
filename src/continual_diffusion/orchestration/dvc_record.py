"""Record in DVC what a plain ``snakemake`` run has completed, so ``dvc repro`` then has nothing to do.

A stage is recorded (``dvc commit --force <stage>``) when all its outputs exist and a dry run of
its Snakemake target schedules no job, i.e. Snakemake itself considers it up to date; anything
else is left for ``dvc repro`` to (re)run. See pipeline.py for the division of labour.

Chains that params.yaml does not ask for (e.g. seeds 1-2 left by a ``--config 'seeds=[0,1,2]'``
run) live inside the same ``runs/`` / ``results/`` directories; recording those would put in
dvc.lock a directory that ``dvc repro`` cannot rebuild. Such stages, and every stage downstream of
them, are not recorded until the extra chains are moved away (a warning names the first one).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from continual_diffusion.orchestration.pipeline import STAGES
from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError

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


def stray_chains(cfg: dict) -> list[Path]:
    """``runs|results/<profile>/<benchmark>/<method>/seed_<s>`` folders outside the params' chains."""
    profile = cfg["profile"]
    wanted = {layout.chain_dir("", b, m, s).parts for b in cfg["benchmarks"] for m in cfg["train"]["methods"]
              for s in cfg["seeds"]}
    strays = []
    for root in ("runs", "results"):
        for folder in sorted(layout.profile_root(root, profile).glob(layout.CHAIN_GLOB)):
            if folder.is_dir() and tuple(folder.parts[-3:]) not in wanted:
                strays.append(folder)
    return strays


def recordable(built: list, strays: list[Path], profile: str) -> list:
    """The stages of ``built`` (pipeline order) before the first one whose outputs hold a stray chain."""
    kept = []
    for stage in built:
        if any(Path(o) in stray.parents for o in stage.outs_for(profile) for stray in strays):
            break
        kept.append(stage)
    return kept


def record(cfg: dict, snakemake_args: list[str] = ()) -> list[str]:
    """Commit the up-to-date stages into dvc.lock; returns their names."""
    if not Path(".dvc").is_dir():
        raise PipelineError(".dvc: not a DVC repository (run `dvc init` or skip dvc-record)")
    profile = cfg["profile"]
    built = [s for s in STAGES if all(Path(o).exists() for o in s.outs_for(profile))]
    strays = stray_chains(cfg)
    if strays:
        kept = recordable(built, strays, profile)
        log.warning("%s: chain not in params.yaml (seeds/methods/benchmarks); not recording %s in DVC "
                    "until it is moved away", strays[0], ", ".join(s.name for s in built if s not in kept))
        built = kept
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
        lines = [line for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
        raise PipelineError(f"dvc commit {' '.join(complete)}: {lines[-1] if lines else f'exit status {result.returncode}'}")
    log.info("recorded in dvc.lock: %s", ", ".join(complete))
    return complete
