"""radcds benchmarks: each row is measured against a baseline from the same run (see bench/README.md)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: The service under test (and its infrastructure) runs on SERVICE_CPU, the load generator on LOAD_CPU.
SERVICE_CPU, LOAD_CPU = 1, 0


def can_pin() -> bool:
    """Whether this process may use both CPUs the benchmarks pin to (else nothing is pinned, and the report says so)."""
    return {SERVICE_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


@contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Run this process on one CPU for the block (``sched_setaffinity``, the call ``taskset`` makes); every process
    started inside the block inherits that CPU and keeps it afterwards."""
    own = os.sched_getaffinity(0)
    if can_pin():
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def service_cpu() -> AbstractContextManager[None]:
    """Start the service under test (and what it needs) inside this block: it runs on SERVICE_CPU."""
    return on_cpu(SERVICE_CPU)


def load_cpu() -> AbstractContextManager[None]:
    """Generate load inside this block: this process runs on LOAD_CPU."""
    return on_cpu(LOAD_CPU)


def timed(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> list[float]:
    """Seconds per call, ``repeat`` samples after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def row(name: str, samples: list[float], baseline: list[float]) -> str:
    med, base = statistics.median(samples), statistics.median(baseline)
    p95 = sorted(samples)[int(0.95 * (len(samples) - 1))]
    return f"| {name} | {med * 1e3:.3f} | {p95 * 1e3:.3f} | {1 / med:,.0f} | {base * 1e3:.3f} | {med / base:.1f}x |"


HEADER = (
    "| benchmark | median ms | p95 ms | ops/s | baseline median ms | ratio (radcds / baseline) |\n"
    "| --- | --- | --- | --- | --- | --- |"
)


def _findings_analysis():
    """A findings payload's analysis: one CT instance, six measurements."""
    from radcds.domain import codes
    from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

    return ImageAnalysis(
        InstanceReference("1.2.3", "1.2.3.4", "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.2"),
        StudyContext(patient_id="P", modality="CT", study_date="20260101"),
        ModelIdentity("pixel_statistics", "1"),
        measurements=tuple(Measurement(codes.MEAN_PIXEL_VALUE, float(i), codes.UNIT_HOUNSFIELD) for i in range(6)),
    )


def bench_codec() -> str:
    from radcds.adapters.kafka.codec import decode, encode
    from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced

    payload = ImagingFindingsProduced(_findings_analysis()).to_payload()

    def radcds() -> None:
        m = encode(FINDINGS_PRODUCED, payload, event_id="x", source="/b", subject="1.2.3")
        decode(list(m.headers.items()), None, m.value)

    def baseline() -> None:
        json.loads(json.dumps(payload))

    return row(
        "event codec (encode+validate+decode+validate)", timed(radcds, repeat=2000), timed(baseline, repeat=2000)
    )


def bench_payload_declaration() -> str:
    """The findings payload to and from its declaration (radcds.domain.wire), against a JSON round trip of it."""
    from radcds.domain.events import ImagingFindingsProduced

    analysis = _findings_analysis()
    payload = ImagingFindingsProduced(analysis).to_payload()

    def radcds() -> None:
        ImagingFindingsProduced.from_payload(ImagingFindingsProduced(analysis).to_payload())

    def baseline() -> None:
        json.loads(json.dumps(payload))

    return row(
        "findings payload to_payload+from_payload (declared codec)",
        timed(radcds, repeat=2000),
        timed(baseline, repeat=2000),
    )


def machine() -> dict[str, str]:
    """What the report ran on: CPU model and count, memory, kernel, Python, the commit."""
    import platform
    import subprocess

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    mem = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} CPU(s)",
        "memory": f"{int(mem) / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load average at start (1, 5, 15 min)": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "commit": revision + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
        "pinning": f"service under test on CPU {SERVICE_CPU}, load generator on CPU {LOAD_CPU}"
        if can_pin()
        else "none (fewer than 2 CPUs usable)",
    }


def _micro() -> str:
    return "\n".join([HEADER, bench_codec(), bench_payload_declaration()])


def _models() -> str:
    from models_bench import main as models_main

    return models_main([])


def _fhir() -> str:
    import contextlib
    import io

    from fhir_bench import main as fhir_main

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        fhir_main()
    return captured.getvalue()


def _e2e(raw: dict[str, object]) -> str:
    from e2e_bench import run as e2e_run

    text, results = e2e_run()
    raw["e2e"] = results
    return text


def _lazy(module: str, function: str) -> Callable[[], str]:
    def call() -> str:
        return str(getattr(__import__(module), function)())

    return call


#: (key, title, how its load is placed, the function): in this order in the report.
SECTIONS: list[tuple[str, str, str, Callable[..., str]]] = [
    ("micro", "event codec and payload declaration, in process", "one process (no server)", _micro),
    ("e2e", "end to end, STOW-RS to the ORU ACKed", "stack on the service CPU, generator `taskset` on the other",
     _e2e),
    ("referral", "referral: CDS Hooks order-sign latency curve, workers, overload with and without shedding",
     "referral on the service CPU, generator on the other", _lazy("referral_bench", "run")),
    ("imaging", "imaging ingest against Orthanc (C-STORE and STOW-RS)",
     "both PACS on the service CPU, storescu and the STOW client on the other", _lazy("imaging_bench", "run")),
    ("models", "models through Triton (gRPC aio) against the same algorithm in process",
     "tritonserver on the service CPU; client and in-process baseline on the other", _models),
    ("hl7", "HL7 v2 ORU^R01 over MLLP with ACKs (radcds sender against python-hl7's client, same server)",
     "one process, both sides (not pinned)", _lazy("hl7_bench", "run")),
    ("fhir", "reporting FHIR read and search latency (uvicorn on loopback, populated SQLite)",
     "uvicorn in a thread of the generator's process (not pinned)", _fhir),
    ("fusion", "fusion per findings event, in process, beside reporting's handler",
     "one process (not pinned)", _lazy("fusion_bench", "main")),
    ("fusion-stack", "fusion through the stack (Kafka, reporting and fusion processes)",
     "services on the service CPU, generator on the other", _lazy("fusion_stack_bench", "run")),
    ("worklist", "the worklist page (5,000 studies) and a live row, in headless Chromium",
     "worklist on the service CPU, Chromium on the other", _lazy("worklist_bench", "run")),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Every benchmark (or those named in ``RADCDS_BENCH_ONLY``, comma-separated keys), one report:
    ``bench/results/<time>.md`` and ``.json``, copied to ``latest.md`` / ``latest.json``."""
    only = {k for k in os.environ.get("RADCDS_BENCH_ONLY", "").split(",") if k}
    info = machine()
    raw: dict[str, object] = {"machine": info, "sections": []}
    parts = [
        "# radcds benchmark report",
        "",
        "Every row is measured against a baseline from the same run on the same machine (bench/README.md says what "
        "each compares); ratios travel between machines better than absolute figures. Each benchmark's load is "
        "bounded in count and time (see its module). Nothing here is asserted: benchmarks measure, tests check.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
    ]
    failed = 0
    for key, title, placement, fn in SECTIONS:
        if only and key not in only:
            continue
        print(f"\n## {title}\n", flush=True)
        started = time.perf_counter()
        try:
            text = fn(raw) if fn is _e2e else fn()
            error = None
        except Exception as e:  # a failed benchmark is reported, and the others still run
            text, error = f"**failed**: {type(e).__name__}: {e}", repr(e)
            failed += 1
        seconds = time.perf_counter() - started
        print(text, flush=True)
        parts += [f"## {title}", "", f"Load placement: {placement}. Wall time {seconds:.0f} s.", "", text, ""]
        sections = raw["sections"]
        assert isinstance(sections, list)
        sections.append({"key": key, "title": title, "seconds": seconds, "markdown": text, "error": error})
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = "\n".join(parts)
    for name in (stamp, "latest"):
        (RESULTS / f"{name}.md").write_text(report)
        (RESULTS / f"{name}.json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"\nreport: {RESULTS / (stamp + '.md')} (and latest.md, latest.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
