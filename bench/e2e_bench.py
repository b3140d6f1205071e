"""End to end: chest CR and head CT studies from STOW-RS to the ORU^R01 an MLLP peer ACKed (issue #15).

The whole stack runs on PostgreSQL (Kafka KRaft, Triton on CPU, every service but the worklist), started from
this process while it is pinned to CPU 1 (``os.sched_setaffinity``; every process it starts inherits the mask):
the stack gets one core. The load generator (bench/e2e_load.py) runs in its own process under ``taskset -c 0``,
the other core: it sends each study's ORM^O01 over MLLP and then its images over STOW-RS at a fixed rate (open
loop), serves the EHR fusion reads, and is the integration engine ACKing reporting's ORUs. Two chest radiographs
(RG1_UNCI.dcm, 1 instance) for each head CT (693_UNCI.dcm, ``--ct-slices`` instances), 40 patients in turn, so
later studies have priors.

Per study: STOW start (t0), the ACK of its first ORU (the preliminary report, t1) and of its first ORU carrying
fusion's "Comparison with priors" section (t2). Imaging's quiet period (``STUDY_QUIET_PERIOD_S``, 1 s here: the
time imaging waits after a study's last instance before announcing it) is subtracted and stated. Baseline, same
run: the STOW-RS round trip alone (t0 to the STOW response), the one step a PACS would also take.

Phases: a warm-up (not counted), ``--minutes`` sustained at ``--rate`` studies/min (memory sampled), then steps of
increasing rate, ``--step-seconds`` each, draining between steps; a step is *sustained* when every study of it
finished within ``--drain`` s after the step's last STOW, the median latency of its last third is under twice
that of its first third (the queue did not grow), and the studies done per minute (from the step's start to its
last ORU) are at least 95 % of the rate offered (the stack kept up: a step whose backlog built up from its start
grows no faster in its last third, so the median test alone let a 120/min step with a 25 s median pass).
With ``--consumers 2`` a second instance of imaging, inference,
fusion and reporting joins (same consumer groups: the 6 partitions are shared; STOW alternates between the two
imagings).

Run: ``flock /tmp/radcds-it.lock .venv/bin/python bench/e2e_bench.py [--minutes 5] [--consumers 1]``
(about 12 minutes); ``make bench`` runs it with 1 and then 2 consumers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import LOAD_CPU, ROOT, SERVICE_CPU, can_pin, service_cpu

#: Ports apart from `make up` (1xxxx, 8xxx), the integration tests (2xxxx) and the fault suite.
BASE = 20000
QUIET_PERIOD_S = 1.0
CONSUMERS = ("imaging", "inference", "fusion", "reporting")
SERVICES = ("imaging", "inference", "reporting", "referral", "fusion")


def _ports() -> Any:
    from radcds_devstack.stack import Ports

    return Ports(
        kafka=BASE + 92, kafka_controller=BASE + 93, triton_http=BASE + 100, triton_grpc=BASE + 101,
        triton_metrics=BASE + 102, imaging=BASE + 82, inference=BASE + 83, inference_grpc=BASE + 51,
        dimse=BASE + 12, reporting=BASE + 85, reporting_mllp=BASE + 75, referral=BASE + 81, fusion=BASE + 84,
        worklist=BASE + 86, oidc=BASE + 90, postgres=BASE + 32,
    )  # fmt: skip


def _second_instance(stack: Any, service: str) -> tuple[str, int]:
    """Start ``<service>-2``: the same settings and consumer group, its own ports. Returns (name, HTTP port)."""
    from radcds_devstack import processes

    p = f"RADCDS_{service.upper()}_"
    port = stack.ports.http(service) + 100
    env = stack.service_env(service) | {f"{p}HTTP_PORT": str(port)}
    env[f"{p}TRACE_FILE"] = str(stack.run_dir / "traces" / f"{service}-2.jsonl")
    if service == "imaging":
        env[f"{p}DIMSE_PORT"] = str(stack.ports.dimse + 100)
    if service == "inference":
        env[f"{p}GRPC_PORT"] = str(stack.ports.inference_grpc + 100)
    if service == "reporting":
        env[f"{p}MLLP_PORT"] = str(stack.ports.reporting_mllp + 100)
    name = f"{service}-2"
    processes.start(name, [sys.executable, "-m", f"radcds_{service}"], run_dir=stack.run_dir, env=env, cwd=stack.root)
    processes.wait_until(
        lambda: processes.http_ok(f"http://{stack.host}:{port}/readyz"),
        timeout_s=120,
        what=name,
        alive=(name, stack.run_dir),
    )
    return name, port


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants (uvicorn workers, Triton's stubs), MiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class MemorySampler:
    """RSS of every radcds service (and its second instance), every 5 s, with monotonic times."""

    def __init__(self, stack: Any, names: list[str]) -> None:
        from radcds_devstack import processes

        self.pids = {n: pid for n in names if (pid := processes.pid_of(n, stack.run_dir)) is not None}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self) -> dict[str, float]:
        return {n: _tree_rss_mib(pid) for n, pid in self.pids.items()}

    def _run(self) -> None:
        while not self._stop.wait(5):
            self.samples.append((time.monotonic(), self.snapshot()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def peak_between(self, t0: float, t1: float) -> dict[str, float]:
        inside = [s for t, s in self.samples if t0 <= t <= t1]
        return {n: max((s.get(n, 0.0) for s in inside), default=0.0) for n in self.pids}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


#: The share of the offered rate a sustained step completes per minute (see the module docstring).
KEPT_UP = 0.95


def _phase_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per phase: completed, latency percentiles (quiet period excluded), throughput, sustained or not."""
    rows = []
    for phase in result["phases"]:
        studies = [s for s in result["studies"] if s["phase"] == phase["name"]]
        done = [s for s in studies if s["fusion_oru_acked"] is not None]
        first = [s["first_oru_acked"] - s["stow_start"] - QUIET_PERIOD_S for s in studies if s["first_oru_acked"]]
        full = [s["fusion_oru_acked"] - s["stow_start"] - QUIET_PERIOD_S for s in done]
        stow = [s["stow_end"] - s["stow_start"] for s in studies if s["stow_end"]]
        ordered = [s["fusion_oru_acked"] - s["stow_start"] for s in sorted(done, key=lambda s: s["stow_start"])]
        third = max(1, len(ordered) // 3)
        growing = len(ordered) >= 3 and statistics.median(ordered[-third:]) > 2 * statistics.median(ordered[:third])
        finished_at = max((s["fusion_oru_acked"] for s in done), default=phase["end"])
        rows.append(
            {
                "phase": phase["name"],
                "offered_per_min": phase["rate_per_min"],
                "seconds": phase["seconds"],
                "studies": len(studies),
                "completed": len(done),
                "stow_failed": sum(1 for s in studies if s["stow_status"] not in (200, 202)),
                "duplicate_orus_max": max((s["orus"] for s in studies), default=0),
                "first_oru": {q: _pct(first, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
                "fusion_oru": {q: _pct(full, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
                "stow": {q: _pct(stow, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
                "done_per_min": len(done) / max(1e-9, finished_at - phase["start"]) * 60,
                "sustained": len(done) == len(studies)
                and not growing
                and len(done) / max(1e-9, finished_at - phase["start"]) * 60 >= KEPT_UP * phase["rate_per_min"],
            }
        )
    return rows


def run_once(*, consumers: int, minutes: float, rate: float, steps: list[float], step_seconds: float,
             drain_s: float, ct_slices: int) -> dict[str, Any]:  # fmt: skip
    """One stack, one generator, every phase; returns the generator's records, memory and the phase rows."""
    from radcds_devstack import processes
    from radcds_devstack.stack import LocalStack

    ports = _ports()
    oru_port, ehr_port = BASE + 76, BASE + 77
    extra = {f"RADCDS_{s.upper()}_ENVIRONMENT": "test" for s in SERVICES}
    extra |= {f"RADCDS_{s.upper()}_LOG_LEVEL": "WARNING" for s in SERVICES}
    extra |= {
        "RADCDS_IMAGING_STUDY_QUIET_PERIOD_S": str(QUIET_PERIOD_S),
        "RADCDS_REPORTING_MLLP_DESTINATIONS": f"127.0.0.1:{oru_port}",
        "RADCDS_FUSION_EHR_FHIR_BASE_URL": f"http://127.0.0.1:{ehr_port}/fhir",
        "RADCDS_FUSION_EHR_AUTH": "none",
        "RADCDS_FUSION_EHR_PATIENT_IDENTIFIER_SYSTEM": "urn:oid:2.16.840.1.113883.3.999",
    }
    run_dir = ROOT / ".run" / f"bench-e2e-{consumers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=ports, postgres=True, triton=True, extra_env=extra)
    extra_names: list[str] = []
    imaging_urls = [f"http://127.0.0.1:{ports.imaging}"]
    load = None
    try:
        with service_cpu():  # every process of the stack inherits the service CPU
            stack.up(services=SERVICES)
            if consumers == 2:
                for service in CONSUMERS:
                    name, port = _second_instance(stack, service)
                    extra_names.append(name)
                    if service == "imaging":
                        imaging_urls.append(f"http://127.0.0.1:{port}")
        argv = ["taskset", "-c", str(LOAD_CPU)] if can_pin() else []
        argv += [sys.executable, str(ROOT / "bench" / "e2e_load.py")]
        argv += [a for u in imaging_urls for a in ("--imaging", u)]
        argv += ["--orm-port", str(ports.reporting_mllp), "--oru-port", str(oru_port), "--ehr-port", str(ehr_port)]
        argv += ["--ct-slices", str(ct_slices)]
        load = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert load.stdin is not None and load.stdout is not None
        assert json.loads(load.stdout.readline()) == {"ready": True}
        sampler = MemorySampler(stack, [*SERVICES, *extra_names])
        time.sleep(5)
        idle = sampler.snapshot()
        sampler.start()
        phases = [{"name": "warm-up", "rate_per_min": 30, "seconds": 20, "drain_s": drain_s}]
        if minutes > 0:
            phases.append({"name": f"sustained {rate:g}/min", "rate_per_min": rate, "seconds": minutes * 60,
                           "drain_s": drain_s})  # fmt: skip
        phases += [
            {"name": f"step {r:g}/min", "rate_per_min": r, "seconds": step_seconds, "drain_s": drain_s} for r in steps
        ]
        load.stdin.write(json.dumps({"phases": phases}) + "\n")
        load.stdin.flush()
        result = json.loads(load.stdout.readline())
        load.wait(30)
        sampler.stop()
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        for name in extra_names:
            processes.stop(name, run_dir)
        stack.down()
        stack.discard_postgres_data()
        if not os.environ.get("RADCDS_KEEP_BENCH_RUN"):
            shutil.rmtree(run_dir, ignore_errors=True)
    result["rows"] = [r for r in _phase_rows(result) if r["phase"] != "warm-up"]
    result["memory_idle_mib"] = idle
    loaded = [p for p in result["phases"] if p["name"] != "warm-up"]
    result["memory_loaded_mib"] = sampler.peak_between(loaded[0]["start"], loaded[-1]["end"]) if loaded else {}
    result["consumers"] = consumers
    result["ct_slices"] = ct_slices
    return result


def _ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1e3:,.0f}"  # NaN when nothing finished


def table(results: list[dict[str, Any]]) -> str:
    """The markdown report of one or more runs (1 and 2 consumers)."""
    out = [
        "### End to end: STOW-RS → Kafka → Triton → fusion → DiagnosticReport → ORU^R01 ACKed by an MLLP peer",
        "",
        f"Stack (PostgreSQL, Kafka, Triton CPU, 5 services) pinned to CPU {SERVICE_CPU}; the load generator (ORM^O01 "
        f"in, STOW-RS, the EHR, the MLLP peer) in its own process, `taskset -c {LOAD_CPU}`. Two chest CRs per "
        f"head CT of {results[0]['ct_slices']} slices; open loop at a fixed rate. Latencies exclude imaging's "
        f"quiet period of {QUIET_PERIOD_S:g} s (subtracted). Baseline: the STOW-RS round trip of the same studies.",
        "",
        "| consumers | phase | studies (done) | first ORU ACKed p50 / p95 / p99 ms | ORU with fusion's comparison "
        "ACKed p50 / p95 / p99 ms | baseline STOW-RS p50 ms | ratio p50 / baseline | done per min | sustained |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for res in results:
        for r in res["rows"]:
            f, u, s = r["first_oru"], r["fusion_oru"], r["stow"]
            ratio = u["p50"] / s["p50"] if s["p50"] and u["p50"] == u["p50"] else float("nan")
            out.append(
                f"| {res['consumers']} | {r['phase']} | {r['studies']} ({r['completed']}) | "
                f"{_ms(f['p50'])} / {_ms(f['p95'])} / {_ms(f['p99'])} | {_ms(u['p50'])} / {_ms(u['p95'])} / "
                f"{_ms(u['p99'])} | {_ms(s['p50'])} | {ratio:.1f}x | {r['done_per_min']:.1f} | "
                f"{'yes' if r['sustained'] else 'no'} |"
            )
    for res in results:
        best = max((r["offered_per_min"] for r in res["rows"] if r["sustained"]), default=0)
        out.append("")
        out.append(
            f"{res['consumers']} consumer instance(s) per service: sustained maximum of the rates tried "
            f"{best:g} studies/min; STOW failures {sum(r['stow_failed'] for r in res['rows'])}; "
            f"ORUs from other accessions {res['unknown_orus']}."
        )
    out += ["", "Resident memory (MiB, process and children): idle after the warm-up, and the peak under load (the "
            "sustained run and the steps).", ""]  # fmt: skip
    out += ["| service | " + " | ".join(f"{r['consumers']} consumer(s) idle / loaded" for r in results) + " |"]
    out += ["| --- |" + " --- |" * len(results)]
    for name in results[-1]["memory_idle_mib"]:
        cells = [
            f"{r['memory_idle_mib'].get(name, 0):.0f} / {r['memory_loaded_mib'].get(name, 0):.0f}"
            if name in r["memory_idle_mib"] else "—"
            for r in results
        ]  # fmt: skip
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += [
        "",
        "A step is sustained when all its studies finished within the drain time after its last STOW, the median "
        "latency of its last third stayed under twice that of its first third, and it completed at least "
        f"{KEPT_UP:.0%} of the offered rate per minute.",
    ]
    return "\n".join(out)


def run(consumers: tuple[int, ...] = (1, 2), **kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
    """``make bench``: the sustained run and the steps with 1 consumer, then the steps with 2."""
    results = []
    for n in consumers:
        opts = {"minutes": 5.0, "rate": 30.0, "steps": [30.0, 60.0, 90.0, 120.0], "step_seconds": 60.0,
                "drain_s": 90.0, "ct_slices": 8} | kwargs  # fmt: skip
        if n > 1:
            opts["minutes"] = 0  # scaling: the steps only
        results.append(run_once(consumers=n, **opts))
    return table(results), results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--consumers", type=int, action="append", help="1 and/or 2 (default both)")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--steps", default="30,60,90,120", help="rates of the steps, studies/min")
    parser.add_argument("--step-seconds", type=float, default=60.0)
    parser.add_argument("--drain", type=float, default=90.0)
    parser.add_argument("--ct-slices", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the raw records here")
    parser.add_argument("--render", type=Path, help="print the table again from raw records (--json, or a report's)")
    a = parser.parse_args()
    if a.render:
        raw = json.loads(a.render.read_text())
        again = raw["e2e"] if isinstance(raw, dict) else raw
        for result in again:
            result["rows"] = [r for r in _phase_rows(result) if r["phase"] != "warm-up"]
        print(table(again))
        return
    steps = [float(x) for x in a.steps.split(",") if x]
    results = []
    for n in a.consumers or [1, 2]:
        minutes = a.minutes if n == 1 or a.consumers else 0
        results.append(run_once(consumers=n, minutes=minutes, rate=a.rate, steps=steps,
                                step_seconds=a.step_seconds, drain_s=a.drain, ct_slices=a.ct_slices))  # fmt: skip
    print(table(results))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
