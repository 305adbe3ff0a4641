"""Snakemake's rescheduling timers: what `max-jobs-per-timespan` costs, and ending them with the run.

With a job rate limit set (Snakemake's default is ``100/1s``), every pass of Snakemake's scheduling loop
(``JobScheduler.schedule``, snakemake 9) starts a ``threading.Timer`` that wakes the loop again one
timespan later, and that wake-up starts the next timer. A pass that a finished job triggers thus adds
one more chain of wake-ups that never ends: after ``n`` finished jobs the loop runs about ``n`` times per
timespan, each time sizing the inputs of every ready job and solving the job selection. In the default
run (380 jobs, up to 100 timer threads) the Snakemake process itself used 1018 CPU seconds of a 3177 s
run on two cores, 16% of the machine that the jobs then lacked
(``studies/results/default_run_tiny_20261204-2040.md``).

The default workflow profile (``profiles/default/config.yaml``) therefore sets a timespan of 10 s: the same
chains wake ten times less often. Timers are ordinary (non-daemon) threads, so the interpreter would
wait at exit for the last one to fire, up to a timespan after the last job; the Snakefile's onsuccess /
onerror handlers call ``end_rescheduling_timers`` to cancel them, so the run ends when its work does.
"""

from __future__ import annotations

import threading


def end_rescheduling_timers() -> int:
    """Cancel every pending ``threading.Timer`` of this process (called once the workflow is over, when no
    scheduling pass is needed any more); the number cancelled."""
    pending = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t is not threading.current_thread()]
    for timer in pending:
        timer.cancel()
    return len(pending)
