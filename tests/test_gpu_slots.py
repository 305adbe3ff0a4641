"""The GPU-slot picker (gpu_slots.py): concurrent jobs get different GPUs, a held slot is skipped and freed
when its process ends, a scheduler's CUDA_VISIBLE_DEVICES and CPU runs are left alone, no GPU means no-op;
the heavy subcommands claim a slot first, also in a fork of the warm worker. No GPU needed: the GPUs are
named by CDIFF_GPUS (or a fake nvidia-smi) and the lock files live in a temporary folder."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from continual_diffusion import cli
from continual_diffusion.orchestration import gpu_slots, warm
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import REPO, env_with_venv

GPU_CFG = {"runtime": {"device": "cuda"}}
PARAMS = str(REPO / "params.yaml")

# A process that claims a slot as a job would, prints what it got, and holds it until its stdin closes.
CLAIMER = ("import sys; from continual_diffusion.orchestration import gpu_slots; "
           "print(gpu_slots.claim({'runtime': {'device': 'auto'}}), flush=True); sys.stdin.read()")
# A process that holds the lock of one GPU (argv[1]: the lock file) until its stdin closes.
HOLDER = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
          "print('held', flush=True); sys.stdin.read()")


@pytest.fixture(autouse=True)
def _release():
    yield
    gpu_slots.release_all()


def env_for(lock_dir: Path, **extra) -> dict:
    env = env_with_venv()
    env.update(PYTHONPATH=str(REPO / "src"), CDIFF_GPU_LOCK_DIR=str(lock_dir))
    for key in ("CUDA_VISIBLE_DEVICES", "CDIFF_GPUS", "CDIFF_GPU_SLOTS", "CDIFF_WARM"):
        env.pop(key, None)
    env.update(extra)
    return env


def start(code: str, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read()
    return line


def finish(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(30)


def test_two_acquisitions_get_different_slots(tmp_path):
    first = gpu_slots.acquire(["0", "1"], tmp_path)
    second = gpu_slots.acquire(["0", "1"], tmp_path)
    assert (first[0], second[0]) == ("0", "1")
    assert gpu_slots.acquire(["0", "1"], tmp_path, timeout=0) is None  # both held (flock: per open file)
    os.close(first[1])
    again = gpu_slots.acquire(["0", "1"], tmp_path, timeout=0)
    assert again[0] == "0"
    for fd in (second[1], again[1]):
        os.close(fd)


def test_two_job_processes_get_different_gpus(tmp_path):
    env = env_for(tmp_path, CDIFF_GPUS="2")
    jobs = [start(CLAIMER, env) for _ in range(2)]
    try:
        assert sorted(first_line(job) for job in jobs) == ["0", "1"]
        third = start(CLAIMER, env)  # both GPUs held: it waits
        time.sleep(1.5)
        assert third.poll() is None and not third.stdout.closed
        finish(jobs[1])  # a job ends (its lock goes with it): the waiting one gets that GPU
        assert first_line(third) in ("0", "1")
        finish(third)
    finally:
        for job in jobs:
            if job.poll() is None:
                finish(job)


def test_a_held_slot_is_skipped_and_freed_when_its_process_ends(tmp_path):
    holder = start(HOLDER, env_for(tmp_path), str(tmp_path / "gpu-0.lock"))
    try:
        assert first_line(holder) == "held"
        environ = {"CDIFF_GPUS": "2", "CDIFF_GPU_LOCK_DIR": str(tmp_path)}
        assert gpu_slots.claim(GPU_CFG, environ) == "1"
        assert environ["CUDA_VISIBLE_DEVICES"] == "1" and environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    finally:
        finish(holder)
    gpu_slots.release_all()
    environ = {"CDIFF_GPUS": "2", "CDIFF_GPU_LOCK_DIR": str(tmp_path)}
    assert gpu_slots.claim(GPU_CFG, environ) == "0"


def test_all_slots_held_waits_for_one(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "POLL_S", 0.05)
    holder = start(HOLDER, env_for(tmp_path), str(tmp_path / "gpu-0.lock"))
    try:
        assert first_line(holder) == "held"
        assert gpu_slots.acquire(["0"], tmp_path, timeout=0.3) is None
    finally:
        finish(holder)
    got = gpu_slots.acquire(["0"], tmp_path, timeout=10)
    assert got is not None and got[0] == "0"
    os.close(got[1])


@pytest.mark.parametrize("preset", ["3", "", "GPU-0a1b"])
def test_a_preset_cuda_visible_devices_is_left_alone(tmp_path, preset):
    environ = {"CUDA_VISIBLE_DEVICES": preset, "CDIFF_GPUS": "2", "CDIFF_GPU_LOCK_DIR": str(tmp_path / "locks")}
    assert gpu_slots.claim(GPU_CFG, environ) is None
    assert environ == {"CUDA_VISIBLE_DEVICES": preset, "CDIFF_GPUS": "2", "CDIFF_GPU_LOCK_DIR": str(tmp_path / "locks")}
    assert not (tmp_path / "locks").exists()


@pytest.mark.parametrize("cfg", [None, {}, {"runtime": {"device": "cpu", "dtype": "fp32"}}])
def test_cpu_runs_take_no_slot(tmp_path, cfg):
    environ = {"CDIFF_GPUS": "2", "CDIFF_GPU_LOCK_DIR": str(tmp_path / "locks")}
    assert gpu_slots.claim(cfg, environ) is None
    assert "CUDA_VISIBLE_DEVICES" not in environ and not (tmp_path / "locks").exists()


def test_cdiff_gpu_slots_0_turns_it_off(tmp_path):
    environ = {"CDIFF_GPUS": "2", "CDIFF_GPU_SLOTS": "0", "CDIFF_GPU_LOCK_DIR": str(tmp_path)}
    assert gpu_slots.claim(GPU_CFG, environ) is None and "CUDA_VISIBLE_DEVICES" not in environ


def fake_nvidia_smi(folder: Path, output: str, status: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    echo = "".join(f"echo '{line}'\n" for line in output.splitlines())  # builtins only: PATH has just this folder
    script.write_text(f"#!/bin/sh\n{echo}exit {status}\n")
    script.chmod(0o755)
    return folder


def test_zero_gpus_is_a_no_op(tmp_path, monkeypatch):
    environ = {"CDIFF_GPUS": "0", "CDIFF_GPU_LOCK_DIR": str(tmp_path / "locks")}
    assert gpu_slots.claim(GPU_CFG, environ) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi: a CPU-only machine
    environ = {"CDIFF_GPU_LOCK_DIR": str(tmp_path / "locks")}
    assert gpu_slots.machine_gpus(environ) == []
    assert gpu_slots.claim(GPU_CFG, environ) is None
    assert "CUDA_VISIBLE_DEVICES" not in environ and not (tmp_path / "locks").exists()
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "failing", "NVIDIA-SMI has failed", status=9)))
    assert gpu_slots.machine_gpus({}) == []


def test_the_gpus_come_from_nvidia_smi_or_cdiff_gpus(tmp_path, monkeypatch):
    listing = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)\n"
               "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-66666666-7777-8888-9999-000000000000)\n"
               "  MIG 1g.10gb Device 0: (UUID: MIG-aaaa)")
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "bin", listing)))
    assert gpu_slots.machine_gpus({}) == ["0", "1"]
    assert gpu_slots.machine_gpus({"CDIFF_GPUS": "3"}) == ["0", "1", "2"]
    assert gpu_slots.machine_gpus({"CDIFF_GPUS": "4, 5,7"}) == ["4", "5", "7"]
    with pytest.raises(PipelineError, match="CDIFF_GPUS"):
        gpu_slots.machine_gpus({"CDIFF_GPUS": "a,b"})
    environ = {"CDIFF_GPU_LOCK_DIR": str(tmp_path / "locks")}
    assert gpu_slots.claim({"runtime": {"device": "auto"}}, environ) == "0"
    assert (tmp_path / "locks" / "gpu-0.lock").exists()


def test_the_default_lock_folder_is_per_user():
    assert gpu_slots.lock_dir({}) == Path(tempfile.gettempdir()) / f"cdiff-gpu-slots-{os.getuid()}"
    assert gpu_slots.lock_dir({"CDIFF_GPU_LOCK_DIR": "/x/y"}) == Path("/x/y")
    assert gpu_slots.lock_dir({"SLURM_JOB_ID": "77"}).name == f"cdiff-gpu-slots-{os.getuid()}-slurm77"


@pytest.mark.parametrize("argv", [
    ["train-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1", "--base", "b",
     "--runs", "r", "--checkpoints", "c"],
    ["evaluate-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1", "--base", "b",
     "--runs", "r", "--evaluator", "e", "--out", "o"],
    ["evaluator", "--benchmark", "faces", "--tasks", "t", "--out", "o"],
    ["export", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--base", "b", "--runs", "r", "--out", "o"],
])
def test_the_heavy_subcommands_claim_a_slot_before_they_run(monkeypatch, capsys, argv):
    seen = []

    def claim(cfg, *args, **kwargs):
        seen.append(cfg)
        raise PipelineError("stopped after the claim")

    monkeypatch.setattr(gpu_slots, "claim", claim)
    assert cli.main([*argv, "--params", PARAMS, "--set", "runtime.device=cuda"]) == 1
    assert "cdiff: error: stopped after the claim" in capsys.readouterr().err
    assert len(seen) == 1 and seen[0]["runtime"]["device"] == "cuda" and seen[0]["profile"] == "tiny"


def test_a_job_of_the_warm_worker_claims_its_slot_in_the_forked_child(tmp_path, tmp_path_factory):
    # The server imported torch (and never initialised CUDA): the child takes the slot, and releases it
    # when it exits, so the next job gets the same GPU; a GPU held elsewhere is skipped.
    snapshot = tmp_path_factory.mktemp("snapshot")  # frozen: an edit of src/ mid-test would make the server decline
    shutil.copytree(REPO / "src" / "continual_diffusion", snapshot / "src" / "continual_diffusion",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "workflow" / "schemas", snapshot / "workflow" / "schemas")
    folder = Path(tempfile.mkdtemp(prefix="cdg", dir="/tmp"))  # Unix socket paths: at most ~108 bytes
    env = env_for(tmp_path / "locks", PYTHONPATH=str(snapshot / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CDIFF_GPUS="2")
    env.pop("CDIFF_OVERRIDES", None)
    socket_path = str(folder / "w.sock")
    server = warm.start_server(socket_path, env, folder / "warm.log", os.getpid())
    assert server is not None, (folder / "warm.log").read_text()
    args = ["export", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--base", "b", "--runs", "r",
            "--out", "o", "--params", PARAMS, "--set", "runtime.device=cuda"]

    def job() -> str:
        result = subprocess.run([sys.executable, "-m", "continual_diffusion", *args], cwd=tmp_path,
                                env={**env, "CDIFF_WARM": socket_path}, capture_output=True, text=True, timeout=120)
        assert "CUDA is already initialised" not in result.stderr
        return result.stderr

    try:
        for _ in range(2):
            assert "this job runs on GPU 0 of 0,1 (CUDA_VISIBLE_DEVICES=0" in job()
        holder = start(HOLDER, env, str(tmp_path / "locks" / "gpu-0.lock"))
        try:
            assert first_line(holder) == "held"
            assert "this job runs on GPU 1 of 0,1" in job()
        finally:
            finish(holder)
        log = (folder / "warm.log").read_text()
        assert log.count(f"started in {tmp_path}: export") == 3, log  # every job ran in a fork of the server
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
