"""snakemake_timers.py: the default profile's job-rate timespan and the timers cancelled with the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from continual_diffusion.orchestration.snakemake_timers import end_rescheduling_timers

REPO = Path(__file__).resolve().parents[1]


def test_pending_timers_are_cancelled_and_their_threads_end():
    fired = []
    timer = threading.Timer(60, lambda: fired.append(True))
    timer.start()
    assert end_rescheduling_timers() >= 1
    timer.join(5)
    assert not timer.is_alive() and not fired


def test_the_default_profile_sets_a_long_timespan_that_never_limits_the_default_run():
    from snakemake.settings.types import MaxJobsPerTimespan

    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    limit = MaxJobsPerTimespan.parse_choice(profile["max-jobs-per-timespan"])
    assert limit.timespan >= 10          # ten times fewer wake-ups than Snakemake's 100/1s
    assert limit.max_jobs >= 400          # more than the default run's ~380 jobs in one timespan: never binds


def test_the_snakefile_cancels_the_timers_on_success_and_on_error():
    text = (REPO / "Snakefile").read_text()
    for handler in ("onsuccess", "onerror"):
        block = re.search(rf"^{handler}:\n((?:    .*\n)+)", text, re.M)
        assert block and "end_rescheduling_timers()" in block.group(1), handler


def test_a_run_with_a_long_timespan_ends_with_its_last_job(tmp_path):
    """Without the handler, Snakemake would wait for the last 60-second timer after the last job."""
    (tmp_path / "Snakefile").write_text(
        "from continual_diffusion.orchestration.snakemake_timers import end_rescheduling_timers\n"
        "rule all:\n    input: expand('out/{i}', i=range(4))\n"
        "rule one:\n    output: 'out/{i}'\n    shell: 'touch {output}'\n"
        "onsuccess:\n    end_rescheduling_timers()\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--max-jobs-per-timespan", "1000/60s"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list((tmp_path / "out").iterdir())) == 4
    assert elapsed < 45, f"{elapsed:.0f} s: the run waited for its rescheduling timers"
