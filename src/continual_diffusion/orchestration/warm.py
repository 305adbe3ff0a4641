"""Warm worker: a fork server that runs the heavy ``cdiff`` subcommands without re-importing torch.

Every Snakemake job is a fresh ``python -m continual_diffusion ...`` process, and importing torch,
diffusers and transformers costs seconds per job. The warm worker imports them once; each job then
becomes a ``fork()`` of that process. Results are bit-identical to a direct run: the child runs the
same ``cli.main(argv)`` in the job's own working directory, environment and stdio, and the server
runs no torch op and starts no thread before forking (numpy's OpenBLAS pool, created at import, is
shut down by OpenBLAS's own fork handler and recreated in the child on first use).

Protocol (one Unix stream socket, one connection per job):

1. The client (``run_via_worker``, called by ``__main__`` when ``CDIFF_WARM`` names the socket and
   the subcommand is one of ``WARM_COMMANDS``) connects and sends an 8-byte big-endian length with
   its fds 0, 1 and 2 attached (SCM_RIGHTS), then that many bytes of JSON:
   ``{"argv", "cwd", "env", "python"}``.
2. The server checks that the client would have imported the same thing: the same interpreter and
   sys.path (``python``), the same import-time environment (``_IMPORT_ENV``: PYTHON*, OMP_*, HF_*,
   ...) and unchanged package source files. If not, it answers ``{"fallback": reason}`` and the
   client runs the command in-process, as without a worker. Otherwise it forks and answers the
   child's ``{"pid": N}``; the child waits for that answer to be sent before it does anything.
3. The child restores default signal handlers, puts the client's fds on 0/1/2, enters ``cwd``,
   replaces ``os.environ`` with ``env`` (plus what the imports set in it, as they would in a fresh
   process: torch's TORCHINDUCTOR_CACHE_DIR), runs ``cli.main(argv)`` exactly as
   the normal entry point does (SystemExit, uncaught exceptions, atexit handlers), flushes stdio and
   answers ``{"status": N}`` (or ``{"signal": N}`` where a direct run would have died of signal N).
   Should the client disappear, the child kills itself with SIGTERM.
4. The client forwards the SIGINT / SIGTERM / SIGHUP it receives to the child's pid and exits with
   the child's status. A connection that closes before the pid means nothing ran: the client falls
   back to running in-process. One that closes after the pid but without a status is a crashed
   child: ``cdiff: error: warm worker process <pid> ended without an exit status``, status 1.

The server (``serve``) binds its socket before importing (a client connecting meanwhile waits),
reaps its children, and exits, removing the socket, on SIGTERM, when the socket file disappears or
is replaced, when ``parent_pid`` (the Snakemake process) no longer exists, or after ``idle_timeout``
seconds with neither a connection nor a running child. ``start_server`` / ``stop_server`` are what
the Snakefile's onstart / onsuccess / onerror handlers call.

This module stays light (no torch at import): ``__main__`` imports it on every warm-eligible job.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

# Subcommands that load torch and the model: worth a fork of the warm worker.
WARM_COMMANDS = frozenset({"train-task", "evaluate-task", "evaluator", "export"})

# Environment variables that the pre-imported libraries may read at import time: a client whose values
# differ would not get what a fresh process gets, so it runs in-process instead.
_IMPORT_ENV = re.compile(r"^(PYTHON|OMP_|MKL_|KMP_|OPENBLAS_|GOTO_|VECLIB_|NUMEXPR_|ATEN_|ONEDNN_|DNNL_|TORCH|PYTORCH_|"
                         r"CUDA_|HF_|HUGGINGFACE_|TRANSFORMERS_|DIFFUSERS_|TOKENIZERS_|XDG_CACHE_HOME$|HOME$)")
_HEADER = struct.Struct(">Q")
_POLL_S = 0.5


def _python_identity() -> dict:
    """What decides which modules an interpreter imports."""
    return {"prefix": sys.prefix, "version": sys.version, "path": list(sys.path)}


def _same_python(a: dict, b: dict) -> bool:
    """The same interpreter and sys.path, but for the first entry (the script's folder or cwd, set per job)."""
    return (a.get("prefix"), a.get("version"), a.get("path", [None])[1:]) == (b["prefix"], b["version"], b["path"][1:])


def _import_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if _IMPORT_ENV.match(k)}


def _say(message: str) -> None:
    """One line in the server log (the server's stderr)."""
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} warm[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


# ----- client

def _send_request(sock: socket.socket, argv: list[str]) -> None:
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                          "python": _python_identity()}).encode()
    socket.send_fds(sock, [_HEADER.pack(len(payload))], [0, 1, 2])
    sock.sendall(payload)


def _read_message(sock: socket.socket, buffer: bytearray) -> dict | None:
    """The next JSON line from the worker; None at end of stream."""
    while b"\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def run_via_worker(socket_path: str, argv: list[str]) -> int | None:
    """Run ``cdiff argv`` in a fork of the warm worker at ``socket_path``; its exit status, or None when
    no worker took the command (none listening, or it declined): the caller then runs it in-process."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "send_fds"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError:
        sock.close()
        return None

    # Signals: recorded until the child's pid is known, then forwarded to it.
    child: list[int] = []
    received: list[int] = []

    def send(signum):
        try:
            os.kill(child[0], signum)
        except ProcessLookupError:
            pass

    def forward(signum, _frame):
        received.append(signum)
        if child:
            send(signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in forwarded}
    last = None
    try:
        buffer = bytearray()
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            _send_request(sock, argv)
            first = _read_message(sock, buffer)
        except (OSError, ValueError):
            first = None
        if first is not None and "pid" in first:
            child.append(int(first["pid"]))
            for signum in list(received):  # those that came before the pid
                send(signum)
            try:
                last = _read_message(sock, buffer)
            except (OSError, ValueError):
                last = None
    finally:
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if not child:  # nothing ran (no fork, or a refused request): run in-process, after any signal that came
        for signum in received:
            os.kill(os.getpid(), signum)
        return None
    if last is not None and "status" in last:
        return int(last["status"])
    died_of = last.get("signal") if last is not None else (received[-1] if received else None)
    if died_of is not None:
        # As a direct run would: die of the signal that ended the child (forwarded, or an uncaught
        # KeyboardInterrupt in it).
        signal.signal(died_of, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
        return 128 + died_of
    print(f"cdiff: error: warm worker process {child[0]} ended without an exit status", file=sys.stderr)
    return 1


# ----- server

def _preload() -> None:
    """Import what train-task / evaluate-task / export import, without running any torch op."""
    import numpy  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    from diffusers import (  # noqa: F401
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from PIL import Image  # noqa: F401
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: F401

    try:
        from peft import LoraConfig  # noqa: F401
    except ImportError:
        pass
    from continual_diffusion.core import sampling, training  # noqa: F401
    from continual_diffusion.data import task_images  # noqa: F401
    from continual_diffusion.metrics import suite  # noqa: F401
    from continual_diffusion.models import lora, sd_v1_architecture, tiny, tokenizer  # noqa: F401
    from continual_diffusion.stages import base_model, evaluate, export, identity_evaluator, train  # noqa: F401
    from continual_diffusion.stages.report import grids  # noqa: F401


def _code_state() -> dict[str, tuple[int, int]]:
    """mtime and size of every loaded module of this package: an edited file makes the server stale."""
    root = Path(__file__).resolve().parents[1]  # the package
    state = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(root):
            try:
                st = os.stat(path)
            except OSError:
                continue
            state[path] = (st.st_mtime_ns, st.st_size)
    return state


def _receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
    try:
        while len(header) < _HEADER.size:
            more = conn.recv(_HEADER.size - len(header))
            if not more:
                raise ConnectionError("request truncated")
            header += more
        (size,) = _HEADER.unpack(header)
        payload = bytearray()
        while len(payload) < size:
            more = conn.recv(min(65536, size - len(payload)))
            if not more:
                raise ConnectionError("request truncated")
            payload.extend(more)
        request = json.loads(payload)
        if len(fds) != 3:
            raise ConnectionError(f"expected 3 file descriptors, got {len(fds)}")
        return request, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _reply(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _exit_status(code) -> int:
    """What the interpreter makes of SystemExit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


_ENTRY: list = []  # the command line's main(argv) -> int, handed to ``serve`` (forked children inherit it)


def _run_cli(argv: list[str]) -> dict:
    """``main(argv)`` as ``python -m continual_diffusion`` runs it, up to interpreter exit."""
    import atexit
    import threading

    main = _ENTRY[0]
    outcome: dict
    try:
        outcome = {"status": _exit_status(main(argv))}
    except SystemExit as exc:
        outcome = {"status": _exit_status(exc.code)}
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        outcome = {"signal": int(signal.SIGINT)}  # Python dies of SIGINT on an uncaught KeyboardInterrupt
    except BaseException:
        sys.excepthook(*sys.exc_info())
        outcome = {"status": 1}
    try:  # interpreter shutdown: join non-daemon threads, then the atexit handlers (logging.shutdown, ...)
        getattr(threading, "_shutdown", lambda: None)()
        atexit._run_exitfuncs()
    except BaseException:
        sys.excepthook(*sys.exc_info())
    return outcome


def _child(conn: socket.socket, request: dict, fds: list[int], effects: dict[str, str | None]) -> int:
    """In the forked child: become the job's process, run the command, report its status."""
    import importlib
    import tempfile
    import threading

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    if not getattr(sys.stdout, "write_through", True):  # a fresh process line-buffers stdout on a terminal only
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for key, value in effects.items():  # what the pre-imports did to the environment, as in a fresh process
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    sys.argv = [sys.argv[0], *request["argv"]]
    sys.path[0] = request["python"]["path"][0]  # a fresh process's first entry: its script's folder or cwd
    importlib.invalidate_caches()
    tempfile.tempdir = None  # recomputed from the job's TMPDIR, as in a fresh process

    finished = threading.Event()

    def watch_client():  # the client never writes again: end of stream means it is gone
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_client, name="warm-client-watch", daemon=True).start()
    outcome = _run_cli(request["argv"])
    finished.set()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        _reply(conn, outcome)
    except OSError:
        pass
    if "signal" in outcome:
        signal.signal(outcome["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), outcome["signal"])
        return 128 + outcome["signal"]
    return outcome["status"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"ended by signal {os.WTERMSIG(status)}"
    return f"exited {os.WEXITSTATUS(status)}"


def _reap(children: dict[int, tuple[float, str]]) -> bool:
    """Log and forget the children that have ended; whether any had."""
    reaped = False
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            break
        if pid == 0:
            break
        began, what = children.pop(pid, (time.monotonic(), "?"))
        _say(f"pid {pid} {_ended(status)} after {time.monotonic() - began:.1f} s: {what}")
        reaped = True
    return reaped


def serve(socket_path: str | os.PathLike, entry, parent_pid: int | None = None, idle_timeout: float = 900.0) -> None:
    """Run the warm worker on ``socket_path`` until SIGTERM, the socket's removal, ``parent_pid``'s end
    or ``idle_timeout`` seconds without a connection or a running child. ``entry``: the command line's
    ``main(argv) -> int`` that each forked child runs (``cli.main``; passed in, so this layer never imports it)."""
    _ENTRY[:] = [entry]
    path = str(socket_path)
    identity = _python_identity()
    stop: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("SIGTERM"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job's Ctrl-C reaches its child through its client

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}.tmp"
    try:
        os.unlink(staging)
    except FileNotFoundError:
        pass
    listener.bind(staging)
    listener.listen(64)
    os.replace(staging, path)  # clients see the socket only once it listens
    inode = os.stat(path).st_ino
    children: dict[int, tuple[float, str]] = {}
    try:
        started = time.monotonic()
        environ_before = dict(os.environ)
        import_env = _import_env(environ_before)
        _preload()
        # What the imports did to the environment (torch sets TORCHINDUCTOR_CACHE_DIR, ...): a fresh
        # process has it too, so every child gets it on top of its client's environment.
        effects = {k: v for k, v in os.environ.items() if environ_before.get(k) != v}
        effects.update({k: None for k in environ_before if k not in os.environ})
        import threading

        if threading.active_count() > 1:
            raise RuntimeError(f"threads exist after the imports ({threading.enumerate()}): not forking")
        code = _code_state()
        _say(f"ready on {path} ({time.monotonic() - started:.1f} s of imports, {len(sys.modules)} modules, "
             f"parent {parent_pid}; the imports set {', '.join(sorted(effects)) or 'no environment variable'})")
        last_activity = time.monotonic()
        while not stop:
            if _reap(children):
                last_activity = time.monotonic()
            try:
                if os.stat(path).st_ino != inode:
                    stop.append("socket replaced")
                    inode = None
                    break
            except FileNotFoundError:
                stop.append("socket removed")
                inode = None
                break
            if parent_pid is not None and not _alive(parent_pid):
                stop.append(f"parent {parent_pid} gone")
                break
            if not children and time.monotonic() - last_activity > idle_timeout:
                stop.append(f"idle for {idle_timeout:.0f} s")
                break
            try:
                ready, _, _ = select.select([listener], [], [], _POLL_S)
            except InterruptedError:
                continue
            if not ready:
                continue
            conn, _ = listener.accept()
            last_activity = time.monotonic()
            _accept(conn, identity, import_env, effects, code, children, listener, stop)
    finally:
        listener.close()
        deadline = time.monotonic() + 2.0  # children that reported their status may still be exiting
        while children and time.monotonic() < deadline:
            if not _reap(children):
                time.sleep(0.05)
        if inode is not None:
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass
        _say(f"stopped ({', '.join(stop) or 'error'}); {len(children)} job(s) still running")


def _accept(conn, identity, import_env, effects, code, children, listener, stop) -> None:
    """Read one request; answer a fallback or fork its child."""
    fds: list[int] = []
    try:
        conn.settimeout(30)
        request, fds = _receive_request(conn)
        conn.settimeout(None)
        from continual_diffusion.utils.config import OFFLINE_ENV

        env = _import_env({**OFFLINE_ENV, **request["env"]})  # cli.main's defaults apply before any import
        # (a value that the imports themselves set, such as torch's TORCHINDUCTOR_CACHE_DIR, is no difference)
        differ = sorted(k for k in set(import_env) | set(env)
                        if import_env.get(k) != env.get(k) and not (k in effects and env.get(k) == effects[k]))
        reason = None
        if not _same_python(request.get("python") or {}, identity):
            reason = "another interpreter or sys.path"
        elif differ:
            reason = f"import-time environment differs ({', '.join(differ)})"
        elif _code_state() != code:
            reason = "package source changed since the server started"
            stop.append(reason)
        if reason:
            _say(f"declined ({reason}): {' '.join(request['argv'])}")
            _reply(conn, {"fallback": reason})
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # The server, not the child, announces the pid, and the child starts only once it has: a child
        # that dies at any point is then reported as a crash, never taken for "nothing ran" (which the
        # client would answer by running the command again, in-process).
        go_read, go_write = os.pipe()
        # A job's signals are held across the fork until the child has its own handlers: the pid may be
        # announced, and a signal forwarded to it, at any moment.
        job_signals = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD}
        held = signal.pthread_sigmask(signal.SIG_BLOCK, job_signals)
        pid = os.fork()
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if pid == 0:
            status = 70
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
                listener.close()
                os.close(go_write)
                try:
                    announced = os.read(go_read, 1)
                except KeyboardInterrupt:  # before anything ran: die of it, as a direct run would
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    os.kill(os.getpid(), signal.SIGINT)
                    raise
                os.close(go_read)
                if announced:
                    status = _child(conn, request, fds, effects)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(go_read)
        what = " ".join(request["argv"])
        children[pid] = (time.monotonic(), what)
        try:
            _reply(conn, {"pid": pid})
            os.write(go_write, b"1")
        finally:
            os.close(go_write)  # unannounced (the client is gone): the child exits without running
        _say(f"pid {pid} started in {request['cwd']}: {what}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _say(f"bad request: {exc!r}")
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


# ----- Snakemake side (onstart / onsuccess / onerror)

def socket_path_for(pid: int) -> str:
    """A short per-run socket path (Unix sockets allow about 108 bytes)."""
    import tempfile

    folder = tempfile.gettempdir()
    if len(folder) > 60:
        folder = "/tmp"
    return os.path.join(folder, f"cdiff-warm-{os.getuid()}-{pid}.sock")


def start_server(socket_path: str, env: dict[str, str], log: Path, parent_pid: int, wait_s: float = 60.0):
    """Start ``cdiff warm-serve`` in the background with the jobs' environment ``env``; wait until its
    socket exists. The process, or None when no socket appeared in ``wait_s`` (jobs then run in-process)."""
    import subprocess

    log.parent.mkdir(parents=True, exist_ok=True)
    command = ["python", "-m", "continual_diffusion", "warm-serve", "--socket", socket_path,
               "--parent-pid", str(parent_pid)]
    with open(log, "w") as out:  # python: looked up on env's PATH, as a job's shell does
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(socket_path):
            return proc
        time.sleep(0.05)
    stop_server(proc, socket_path)
    return None


def stop_server(proc, socket_path: str, wait_s: float = 10.0) -> None:
    """SIGTERM the server, wait for it, remove its socket if it left one."""
    import subprocess

    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:
        os.unlink(socket_path)
    except FileNotFoundError:
        pass
