import os
import sys


def _via_warm_worker() -> int | None:
    """With CDIFF_WARM naming a warm worker's socket, a heavy subcommand runs in a fork of it (warm.py);
    None: run here. Kept light: no torch import on this path."""
    socket_path = os.environ.get("CDIFF_WARM", "")
    if socket_path in ("", "0") or len(sys.argv) < 2:
        return None
    from continual_diffusion.orchestration.warm import WARM_COMMANDS, run_via_worker

    return run_via_worker(socket_path, sys.argv[1:]) if sys.argv[1] in WARM_COMMANDS else None


_status = _via_warm_worker()
if _status is None:
    from continual_diffusion.cli import main

    _status = main()
raise SystemExit(_status)
