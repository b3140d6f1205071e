"""``python -m radcds_devstack {up,down,status,demo,run}`` (used by the Makefile)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from radcds_devstack import processes
from radcds_devstack.stack import SERVICES, LocalStack, Ports


def _stack(args: argparse.Namespace) -> LocalStack:
    root = Path(args.root).resolve()
    run_dir = Path(args.run_dir).resolve() if args.run_dir else root / ".run"
    postgres = args.postgres or os.environ.get("RADCDS_STACK_POSTGRES", "") == "1"
    return LocalStack(root=root, run_dir=run_dir, ports=Ports.from_env(), postgres=postgres)


def worklist_banner(stack: LocalStack) -> str:
    """Where the radiologist's worklist is and how to sign in to it (the development accounts of the stack's
    OpenID Provider; any password)."""
    from radcds_worklist.adapters.oidc import DEVELOPMENT_USERS

    accounts = ", ".join(f"{u.login} ({'/'.join(sorted(r.value for r in u.roles))})" for u in DEVELOPMENT_USERS)
    return (
        f"worklist: http://{stack.host}:{stack.ports.worklist}/  sign in with a development account: {accounts};"
        " any password (the stack's OpenID Provider, development only)"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command and act on the local stack."""
    parser = argparse.ArgumentParser(prog="radcds_devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "demo", "run"])
    parser.add_argument("--root", default=".", help="repository root")
    parser.add_argument("--run-dir", default=None, help="logs, pids and data (default ROOT/.run)")
    parser.add_argument("--postgres", action="store_true", help="use PostgreSQL instead of SQLite")
    args = parser.parse_args(argv)
    stack = _stack(args)

    if args.command == "down":
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if args.command == "status":
        for name in ("kafka", "triton", "postgres", "oidc", *SERVICES):
            pid = processes.pid_of(name, stack.run_dir)
            print(f"{name:<10} {'running pid ' + str(pid) if pid else 'stopped'}")
        return 0
    if args.command == "demo":
        from radcds_devstack.demo import run_all

        run_all(stack)
        return 0

    print(f"starting the local stack (logs in {stack.run_dir / 'logs'}) ...", flush=True)
    stack.up()
    p = stack.ports
    print(
        f"ready: Kafka {stack.bootstrap} | Triton gRPC :{p.triton_grpc} | imaging http://{stack.host}:{p.imaging}"
        f"/dicom-web (DIMSE :{p.dimse} AE RADCDS) | inference :{p.inference} (gRPC :{p.inference_grpc}) | reporting "
        f"(HL7 MLLP :{p.reporting_mllp}) "
        f"http://{stack.host}:{p.reporting}/fhir | referral http://{stack.host}:{p.referral}/cds-services"
        f" | fusion http://{stack.host}:{p.fusion}/fhir",
        flush=True,
    )
    print(worklist_banner(stack), flush=True)
    if args.command == "up":
        return 0

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        from radcds_devstack.demo import run_all

        run_all(stack)
        print("\n" + worklist_banner(stack) + "\nThe demo's studies are on the worklist.", flush=True)
        print("\nServing. Press Ctrl-C to stop everything.", flush=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", flush=True)
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
