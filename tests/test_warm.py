"""The warm worker (warm.py): a command run through it gives what a direct run gives (output, status,
bytes), falls back to running in-process without a server, and dies with its client."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from continual_diffusion.orchestration import warm
from tests.helpers import REPO, env_with_venv
from tests.model_fixtures import saved_base, write_task

PARAMS = str(REPO / "params.yaml")
# A client that reports a refused or failed connection as status 99 instead of running in-process.
CLIENT = ("import sys; from continual_diffusion.orchestration.warm import run_via_worker as r; "
          "s = r(sys.argv[1], sys.argv[2:]); sys.exit(99 if s is None else s)")


SRC = REPO / "src"  # replaced by a snapshot (src_snapshot): an edit of the working tree mid-test would make
                   # the server decline (package source changed) and the test fail


@pytest.fixture(scope="module", autouse=True)
def src_snapshot(tmp_path_factory):
    global SRC
    root = tmp_path_factory.mktemp("snapshot")
    SRC = root / "src"
    shutil.copytree(REPO / "src" / "continual_diffusion", SRC / "continual_diffusion",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "workflow" / "schemas", root / "workflow" / "schemas")  # config.SCHEMA_PATH
    yield SRC


def job_env(**extra) -> dict:
    """The environment of the server and of every client (direct or warm): the same import-time values."""
    env = env_with_venv()
    env.update(PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for key in ("CDIFF_WARM", "CDIFF_OVERRIDES"):
        env.pop(key, None)
    env.update(extra)
    return env


def short_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cdw", dir="/tmp"))  # Unix socket paths: at most ~108 bytes


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


class Server:
    def __init__(self, folder: Path, parent_pid: int):
        self.folder, self.socket, self.log = folder, str(folder / "w.sock"), folder / "warm.log"
        self.proc = warm.start_server(self.socket, job_env(), self.log, parent_pid)
        assert self.proc is not None, self.log.read_text()

    def line(self, *needles: str, timeout: float = 60) -> str:
        """The first server log line containing every one of ``needles`` (waits for it)."""
        def find():
            return next((line for line in self.log.read_text().splitlines() if all(n in line for n in needles)), None)
        return wait_for(find, timeout, lambda: f"{needles!r} in the warm log:\n{self.log.read_text()}")

    def child_pid(self, needle: str) -> int:
        """The pid of the child started for the request containing ``needle``."""
        return int(self.line(" started in ", needle).split(" pid ", 1)[1].split()[0])


@pytest.fixture(scope="module")
def server():
    folder = short_dir()
    srv = Server(folder, os.getpid())
    yield srv
    srv.proc.terminate()  # SIGTERM: exits 0 and removes its socket
    assert srv.proc.wait(30) == 0 and not os.path.exists(srv.socket), srv.log.read_text()
    assert "stopped (SIGTERM)" in srv.log.read_text()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """What a smoke train-task reads: a tiny base, one faces task under data/smoke."""
    root = tmp_path_factory.mktemp("warm")
    saved_base(root / "base")
    write_task(root / "data" / "smoke" / "tasks" / "faces" / "task_01", seed=1)
    return root


def cdiff(args, cwd=REPO, warm_socket=None, **kwargs):
    env = job_env(**({"CDIFF_WARM": warm_socket} if warm_socket else {}))
    return subprocess.run([sys.executable, "-m", "continual_diffusion", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, **kwargs)


def outcome(result: subprocess.CompletedProcess) -> tuple:
    return result.returncode, result.stdout, result.stderr


def train_args(runs: str, *extra: str) -> list[str]:
    return ["train-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1", "--base", "base",
            "--runs", runs, "--checkpoints", f"ck_{runs}", "--params", PARAMS, "--set", "profile=smoke", *extra]


@pytest.mark.parametrize("args, status", [
    (["config", "--params", PARAMS, "--set", "profile=smoke", "data.faces"], 0),
    (["config", "--params", PARAMS, "--set", "profile=smoke", "no.such.key"], 1),  # cdiff: error: ...
    (["config", "--no-such-option"], 2),  # argparse's usage error
])
def test_the_protocol_gives_the_direct_output_and_status(server, args, status):
    direct = cdiff(args)
    via = subprocess.run([sys.executable, "-c", CLIENT, server.socket, *args], cwd=REPO, env=job_env(),
                         capture_output=True, text=True, timeout=120)
    assert direct.returncode == status
    assert outcome(via) == outcome(direct)
    if status == 1:
        assert via.stderr == "cdiff: error: no.such.key: no such parameter\n"


@pytest.mark.parametrize("args", [
    ["train-task", "--benchmark", "faces", "--method", "nope", "--seed", "7", "--task", "1", "--base", "b",
     "--runs", "r", "--checkpoints", "c", "--params", PARAMS, "--set", "profile=smoke"],
    ["evaluate-task", "--benchmark", "faces", "--method", "clora", "--seed", "7"],
    ["export", "--help"],
])
def test_a_heavy_subcommand_goes_through_the_worker_with_the_direct_result(server, args):
    direct = cdiff(args)
    via = cdiff(args, warm_socket=server.socket)
    assert outcome(via) == outcome(direct)
    server.line(f"started in {REPO}: {' '.join(args)}")  # it did run in a fork of the server
    if args[0] == "train-task":
        assert direct.returncode == 1
        assert direct.stderr == "cdiff: error: --method nope: not in train.methods (clora, lora_sequential)\n"


def test_train_task_through_the_worker_writes_the_direct_bytes(server, workspace):
    direct = cdiff(train_args("direct"), cwd=workspace)
    via = cdiff(train_args("via"), cwd=workspace, warm_socket=server.socket)
    assert direct.returncode == 0, direct.stderr
    assert via.returncode == 0, via.stderr
    server.line(f"started in {workspace}: {' '.join(train_args('via'))}")
    for name in ("task.safetensors", "metrics.json"):
        assert (workspace / "via" / "task_01" / name).read_bytes() == \
            (workspace / "direct" / "task_01" / name).read_bytes()


def test_without_a_server_or_with_a_stale_socket_the_command_runs_in_process(tmp_path):
    folder = short_dir()
    try:
        stale = str(folder / "stale.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(stale)  # the file stays; nobody listens
        missing = str(folder / "missing.sock")
        assert warm.run_via_worker(stale, ["config"]) is None
        assert warm.run_via_worker(missing, ["config"]) is None
        for args in (["train-task", "--help"], ["train-task", "--benchmark", "faces", "--method", "nope", "--seed", "0",
                                                "--task", "1", "--base", "b", "--runs", "r", "--checkpoints", "c",
                                                "--params", PARAMS, "--set", "profile=smoke"]):
            direct = outcome(cdiff(args))
            assert outcome(cdiff(args, warm_socket=stale)) == direct
            assert outcome(cdiff(args, warm_socket=missing)) == direct
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start_long_job(server, workspace, runs: str) -> tuple[subprocess.Popen, int]:
    client = subprocess.Popen([sys.executable, "-m", "continual_diffusion",
                               *train_args(runs, "--set", "train.steps.faces=1000000")],
                              cwd=workspace, env=job_env(CDIFF_WARM=server.socket),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return client, server.child_pid(f"--runs {runs} ")


def finish(client: subprocess.Popen, server, timeout: float = 30) -> tuple[str, str]:
    """The client's output once it exits; a client still running after ``timeout`` s is killed and the
    failure shows the server's log and the client's last output (what it was doing)."""
    try:
        return client.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        client.kill()
        out, err = client.communicate()
        raise AssertionError(f"client {client.pid} still running after {timeout} s\n--- warm log:\n"
                             f"{server.log.read_text()[-3000:]}\n--- client stderr:\n{err[-2000:]}") from None


def test_killing_the_client_kills_its_child(server, workspace):
    client, child = start_long_job(server, workspace, "killed")
    client.send_signal(signal.SIGTERM)
    finish(client, server)
    assert client.returncode == -signal.SIGTERM  # as a direct run killed by SIGTERM
    assert server.line(f"pid {child} ended by signal {int(signal.SIGTERM)}", timeout=30)
    assert not (workspace / "killed" / "task_01").exists()


def test_a_child_that_ends_without_a_status_is_an_error(server, workspace):
    client, child = start_long_job(server, workspace, "crashed")
    os.kill(child, signal.SIGKILL)
    _, err = finish(client, server)
    assert client.returncode == 1
    assert err.splitlines()[-1] == f"cdiff: error: warm worker process {child} ended without an exit status"


def test_the_server_exits_when_its_parent_is_gone():
    folder = short_dir()
    parent = subprocess.Popen(["sleep", "300"])
    try:
        srv = Server(folder, parent.pid)
        parent.kill()
        parent.wait()
        assert srv.proc.wait(90) == 0
        assert not os.path.exists(srv.socket)
        assert f"stopped (parent {parent.pid} gone)" in srv.log.read_text()
    finally:
        parent.kill()
        shutil.rmtree(folder, ignore_errors=True)


def test_warm_serve_has_help(capsys):
    from continual_diffusion.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["warm-serve", "--help"])
    assert exit_info.value.code == 0
    assert "usage: cdiff warm-serve" in capsys.readouterr().out
