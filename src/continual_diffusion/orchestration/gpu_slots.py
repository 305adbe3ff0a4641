"""GPU slots: one GPU per job on a machine with several GPUs and no cluster scheduler.

``snakemake --cores all --resources gpu=N`` runs at most N jobs that ask for ``gpu: 1`` at once, but
Snakemake does not say which GPU is whose: every job would see all of them and put its model on the
first. So a job that runs on the GPU claims a slot first (``claim``, at the start of the heavy ``cdiff``
subcommands): an exclusive ``fcntl.flock`` on one of N lock files, one per GPU, held until the process
exits (the kernel drops it then, however the process ends), and ``CUDA_VISIBLE_DEVICES=<that GPU>``
with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so that the job sees only its GPU (as ``cuda:0``) and GPU
numbers mean what ``nvidia-smi`` says. This must happen before CUDA is initialised in the process:
the warm worker (warm.py) imports torch but never touches CUDA, and runs the subcommand, hence the
claim, in the forked child.

Nothing happens (``claim`` returns None) when
  * ``CUDA_VISIBLE_DEVICES`` is already set: SLURM (and other schedulers) set it to the job's own
    allocation; set it yourself to pin a process by hand (empty: no GPU at all);
  * the job runs on the CPU: ``runtime.device: cpu`` (the miniature's setting);
  * ``CDIFF_GPU_SLOTS=0``;
  * the machine has no GPU: ``CDIFF_GPUS=0``, or no ``nvidia-smi``, or it lists none.

Which GPUs: ``CDIFF_GPUS``, a count (``4``: GPUs 0-3) or a comma-separated list of GPU numbers
(``4,5,6,7``); unset, every GPU that ``nvidia-smi -L`` lists (found without initialising CUDA: this
module never imports torch). The lock files live in ``CDIFF_GPU_LOCK_DIR`` (default
``<tmp>/cdiff-gpu-slots-<uid>``, ``-slurm<job id>`` appended inside a SLURM allocation), one per GPU
number (``gpu-<n>.lock``), so runs of several checkouts on one machine share the GPUs too. Inside one
multi-GPU SLURM allocation (``salloc --gpus=8``), SLURM's ``CUDA_VISIBLE_DEVICES`` lists them all: run
``env -u CUDA_VISIBLE_DEVICES CDIFF_GPUS=$CUDA_VISIBLE_DEVICES snakemake --resources gpu=8 ...``.
When every slot is held, the job waits for one (one log line), so a run without ``--resources gpu=N``
still puts at most one job on each GPU, its other jobs waiting.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

log = logging.getLogger("continual_diffusion")

POLL_S = 1.0
_HELD: list[int] = []  # file descriptors of the slots this process holds: open until it exits


def lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the lock files are: ``CDIFF_GPU_LOCK_DIR``, or a folder in the temp dir per user (and per SLURM
    allocation: GPU numbers are the allocation's own, another job on the node numbers its GPUs alike)."""
    if environ.get("CDIFF_GPU_LOCK_DIR"):
        return Path(environ["CDIFF_GPU_LOCK_DIR"])
    slurm = f"-slurm{environ['SLURM_JOB_ID']}" if environ.get("SLURM_JOB_ID") else ""
    return Path(tempfile.gettempdir()) / f"cdiff-gpu-slots-{os.getuid()}{slurm}"


def nvidia_smi_gpus() -> list[str]:
    """The numbers of the GPUs that ``nvidia-smi -L`` lists ("GPU 0: ..." lines); [] without it."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    gpus = []
    for line in out.stdout.splitlines():
        head = line.split(":", 1)[0].split()
        if len(head) == 2 and head[0] == "GPU" and head[1].isdigit():
            gpus.append(head[1])
    return gpus


def machine_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs jobs may claim: ``CDIFF_GPUS`` (a count or a list of numbers), else ``nvidia-smi -L``."""
    spec = environ.get("CDIFF_GPUS", "").strip()
    if not spec:
        return nvidia_smi_gpus()
    if spec.isdigit():
        return [str(i) for i in range(int(spec))]
    gpus = [part.strip() for part in spec.split(",") if part.strip()]
    if not all(g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        from continual_diffusion.utils.errors import PipelineError

        raise PipelineError(f"CDIFF_GPUS={spec!r}: expected a count (4) or distinct GPU numbers (4,5,6,7)")
    return gpus


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def acquire(gpus: Sequence[str], directory: Path, timeout: float | None = None) -> tuple[str, int] | None:
    """Lock the first free GPU of ``gpus`` (in order, so that a lone job gets the first): (GPU, fd).
    All held: poll until one frees, at most ``timeout`` seconds (None: no limit; then None)."""
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    told = False
    while True:
        for gpu in gpus:
            fd = _try_lock(directory / f"gpu-{gpu}.lock")
            if fd is not None:
                return gpu, fd
        if timeout is not None and time.monotonic() - start >= timeout:
            return None
        if not told:
            log.info("all %d GPU slots (%s) are held by other jobs: waiting for one", len(gpus), directory)
            told = True
        time.sleep(POLL_S)


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:
        return False


def wants_gpu(cfg: Mapping | None) -> bool:
    """Whether a job of this configuration runs on the GPU: ``runtime.device`` is not cpu."""
    runtime = (cfg or {}).get("runtime") or {}
    return str(runtime.get("device", "cpu")) != "cpu"


def claim(cfg: Mapping | None, environ: MutableMapping[str, str] = os.environ,
          timeout: float | None = None) -> str | None:
    """Give this process one GPU of its own for its lifetime (module docstring): the GPU number it
    now sees as ``cuda:0``, or None when nothing was done."""
    if "CUDA_VISIBLE_DEVICES" in environ or environ.get("CDIFF_GPU_SLOTS", "1") == "0" or not wants_gpu(cfg):
        return None
    gpus = machine_gpus(environ)
    if not gpus:
        return None
    if _cuda_initialised():
        log.warning("GPU slot: CUDA is already initialised in this process; CUDA_VISIBLE_DEVICES left unset")
        return None
    directory = lock_dir(environ)
    got = acquire(gpus, directory, timeout=timeout)
    if got is None:
        return None
    gpu, fd = got
    _HELD.append(fd)
    environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    environ["CUDA_VISIBLE_DEVICES"] = gpu
    log.info("GPU slot: this job runs on GPU %s of %s (CUDA_VISIBLE_DEVICES=%s; lock %s)", gpu, ",".join(gpus),
             gpu, directory / f"gpu-{gpu}.lock")
    return gpu


def release_all() -> None:
    """Drop this process's slots (tests; a job keeps its slot until it exits)."""
    while _HELD:
        fd = _HELD.pop()
        try:
            os.close(fd)
        except OSError:
            pass
