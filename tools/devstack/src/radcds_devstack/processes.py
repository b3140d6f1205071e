"""Starting, tracking and stopping background processes by pid file and process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 (a loopback readiness probe)."""
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback probe
        return bool(resp.status == 200)


def start(name: str, argv: list[str], *, run_dir: Path, env: dict[str, str], cwd: Path, user: str | None = None) -> int:
    """Start ``argv`` in its own session, logging to ``run_dir/logs/<name>.log``; returns the pid."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "pids").mkdir(parents=True, exist_ok=True)
    log = (run_dir / "logs" / f"{name}.log").open("ab")
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs["user"] = user
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True, **kwargs
    )  # type: ignore[call-overload]
    (run_dir / "pids" / f"{name}.pid").write_text(str(proc.pid))
    return int(proc.pid)


def pid_of(name: str, run_dir: Path) -> int | None:
    """The recorded pid of ``name`` if that process still runs."""
    path = run_dir / "pids" / f"{name}.pid"
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        _reap(pid)  # a child of ours that exited is a zombie until reaped, and would look alive
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        return int(path.read_text().strip())
    return pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(name: str, run_dir: Path, *, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 20.0) -> bool:
    """Signal the process group of ``name``, wait, then SIGKILL; True if something was stopped."""
    pid = pid_of(name, run_dir)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.3)
        _reap(pid)
    (run_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)
    return True


def wait_until(
    check: object, *, timeout_s: float, what: str, interval_s: float = 0.5, alive: tuple[str, Path] | None = None
) -> None:
    """Poll ``check()`` until it is true; fail early if the process named in ``alive`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: S110 - a failing probe just means "not yet"
            pass
        if alive is not None and pid_of(*alive) is None:
            log = alive[1] / "logs" / f"{alive[0]}.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what}: process {alive[0]} exited during start-up; log tail:\n{tail}")
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s")
