"""radcds benchmarks: each row is measured against a baseline from the same run (see bench/README.md)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


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


def main() -> int:
    print("radcds benchmarks (baseline measured in the same run; see bench/README.md)\n", flush=True)
    lines = [HEADER, bench_codec(), bench_payload_declaration()]
    table = "\n".join(lines)
    print(table, flush=True)
    from models_bench import main as models_main

    print("\nmodels through Triton (gRPC aio) vs the same algorithm in process\n", flush=True)
    models = models_main([])
    table += "\n\n" + models
    from imaging_bench import run as imaging_run
    from referral_bench import run as referral_run

    print("\nimaging ingest against Orthanc (same files, same machine, same run)\n", flush=True)
    imaging = imaging_run()
    print(imaging, flush=True)
    table += "\n\n" + imaging

    print("\nreferral (CDS Hooks order-sign over HTTP, load generator on the same 2 cores)\n", flush=True)
    referral = referral_run()
    print(referral)
    table += "\n\n" + referral

    import contextlib
    import io

    from fhir_bench import main as fhir_main
    from hl7_bench import run as hl7_run

    print("\nHL7 v2 ORU^R01 over MLLP with ACKs (radcds sender vs python-hl7's client, same server)\n", flush=True)
    hl7 = hl7_run()
    print(hl7, flush=True)
    table += "\n\n" + hl7

    print("\nreporting FHIR read/search latency (uvicorn on loopback, populated SQLite)\n", flush=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        fhir_main()
    print(captured.getvalue(), flush=True)
    table += "\n\n" + captured.getvalue()

    from fusion_bench import main as fusion_main

    print("\nfusion per findings event (EHR on loopback) beside reporting's handler of the same event\n", flush=True)
    table += "\n\n" + fusion_main()
    from fusion_stack_bench import run as fusion_stack_run

    print("\nfusion through the stack (Kafka, reporting and fusion processes, EHR on loopback)\n", flush=True)
    fusion_stack = fusion_stack_run()
    print(fusion_stack, flush=True)
    table += "\n\n" + fusion_stack
    from worklist_bench import run as worklist_run

    print("\nthe worklist page (5,000 studies) and a live row, in headless Chromium\n", flush=True)
    worklist = worklist_run()
    print(worklist, flush=True)
    table += "\n\n" + worklist
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
