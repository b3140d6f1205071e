"""Imaging ingest throughput: radcds imaging (a real process, with Kafka) against Orthanc 1.10, same machine, same run.

The file set of one round: RG1_UNCI.dcm and 693_UNCI.dcm (pydicom-data 1.0.0), CT_small.dcm and MR_small.dcm and
the dicomdirtests images (pydicom 3.0.2 test files). Every round rewrites Study, Series and SOP Instance UIDs, so
each round stores new instances (nothing is deduplicated). The rewrite happens outside the timed section.

Clients, the same for both targets:
- C-STORE: dcmtk ``storescu``, one association per round carrying every file of the round.
- STOW-RS: httpx, one multipart/related request per round.

Each (target, protocol) runs rounds for about ``SECONDS_PER_CASE`` seconds (at least ``MIN_ROUNDS``) after one
untimed warm-up round; the stored instance count is checked afterwards through each target's QIDO-RS / REST API.

    python bench/imaging_bench.py
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, load_cpu, service_cpu

SECONDS_PER_CASE = 12.0
MIN_ROUNDS = 2
BOUNDARY = "radcds-bench-boundary-7d1c0b"


def _orthanc_module():
    spec = importlib.util.spec_from_file_location("radcds_bench_orthanc", ROOT / "tests" / "integration" / "orthanc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def file_set() -> list[pydicom.Dataset]:
    """The datasets of one round (templates; each round gets fresh UIDs)."""
    paths = []
    for name in ("RG1_UNCI.dcm", "693_UNCI.dcm", "CT_small.dcm", "MR_small.dcm"):
        path = get_testdata_file(name)
        if path is None:
            raise RuntimeError(f"{name} not found: install pydicom-data==1.0.0")
        paths.append(Path(path))
    paths += sorted(Path(p) for p in get_testdata_files("dicomdirtests/**/*") if Path(p).is_file())
    datasets = []
    for path in paths:
        if path.name.startswith("DICOMDIR"):
            continue
        try:
            ds = pydicom.dcmread(path)  # strict: files without a File Meta header are not Part 10 files
        except InvalidDicomError:
            continue
        if "PixelData" in ds and "SOPInstanceUID" in ds:
            datasets.append(ds)
    return datasets


def fresh_round(templates: list[pydicom.Dataset]) -> tuple[list[bytes], set[str]]:
    """Part 10 bytes of every template with new UIDs (the study/series grouping kept); the new Study UIDs."""
    studies: dict[str, str] = {}
    series: dict[str, str] = {}
    out = []
    for ds in templates:
        ds = ds.copy()
        ds.StudyInstanceUID = studies.setdefault(ds.StudyInstanceUID, generate_uid())
        ds.SeriesInstanceUID = series.setdefault(ds.SeriesInstanceUID, generate_uid())
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out, set(studies.values())


def multipart(parts: list[bytes]) -> bytes:
    chunks = []
    for data in parts:
        chunks += [f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks)


@dataclass
class Target:
    name: str
    host: str
    dimse_port: int
    aet: str
    dicomweb: str  # base URL ending in /dicom-web
    count_instances: Callable[[set[str]], int]


@dataclass
class Result:
    target: str
    protocol: str
    rounds: int
    instances: int
    nbytes: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.instances / self.seconds

    @property
    def mb_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def send_c_store(target: Target, parts: list[bytes], folder: Path) -> Callable[[], None]:
    storescu = shutil.which("storescu")
    if storescu is None:
        raise RuntimeError("dcmtk's storescu is missing: apt-get install -y dcmtk")
    folder.mkdir(parents=True)
    files = []
    for i, data in enumerate(parts):
        (folder / f"{i:04d}.dcm").write_bytes(data)
        files.append(str(folder / f"{i:04d}.dcm"))
    cmd = [storescu, "-aet", "RADCDS_BENCH", "-aec", target.aet, target.host, str(target.dimse_port), *files]

    def go() -> None:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or "Store Failed" in done.stderr or "Failed" in done.stdout:
            raise RuntimeError(f"storescu to {target.name} failed ({done.returncode}): {done.stderr[-800:]}")

    return go


def send_stow(target: Target, parts: list[bytes], client: httpx.Client) -> Callable[[], None]:
    body = multipart(parts)
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        "Accept": "application/dicom+json",
    }

    def go() -> None:
        r = client.post(f"{target.dicomweb}/studies", content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"STOW-RS to {target.name} answered {r.status_code}: {r.text[:500]}")

    return go


def measure(target: Target, protocol: str, templates: list[pydicom.Dataset], scratch: Path) -> Result:
    client = httpx.Client(timeout=120)
    try:
        rounds = seconds = 0.0
        instances = nbytes = 0
        all_studies: set[str] = set()
        n = 0
        while True:
            parts, studies = fresh_round(templates)
            if protocol == "C-STORE":
                go = send_c_store(target, parts, scratch / f"{target.name}-{protocol}-{n}")
            else:
                go = send_stow(target, parts, client)
            t0 = time.perf_counter()
            go()
            elapsed = time.perf_counter() - t0
            n += 1
            all_studies |= studies
            if n == 1:
                continue  # warm-up round: stored (and counted below), not timed
            rounds += 1
            seconds += elapsed
            instances += len(parts)
            nbytes += sum(len(p) for p in parts)
            if rounds >= MIN_ROUNDS and seconds >= SECONDS_PER_CASE:
                break
        stored = target.count_instances(all_studies)
        expected = n * len(templates)
        if stored != expected:
            raise RuntimeError(f"{target.name} {protocol}: {stored} instances stored, {expected} sent")
        return Result(target.name, protocol, int(rounds), instances, nbytes, seconds)
    finally:
        client.close()


def qido_count(dicomweb: str) -> Callable[[set[str]], int]:
    def count(studies: set[str]) -> int:
        total = 0
        with httpx.Client(timeout=60) as client:
            for study in studies:
                r = client.get(
                    f"{dicomweb}/studies",
                    params={"StudyInstanceUID": study},
                    headers={"Accept": "application/dicom+json"},
                )
                if r.status_code == 200 and r.content:
                    for match in r.json():
                        total += int(match.get("00201208", {}).get("Value", [0])[0])
        return total

    return count


def table(results: list[Result], templates: list[pydicom.Dataset], wall_s: float) -> str:
    by = {(r.target, r.protocol): r for r in results}
    lines = [
        f"Ingest of {len(templates)} instances per round (fresh UIDs each round), same machine, same run "
        f"(whole bench {wall_s:.0f} s). C-STORE: dcmtk storescu, one association per round; "
        "STOW-RS: httpx, one multipart request per round.",
        "",
        "| target | protocol | rounds | instances | MB | seconds | instances/s | MB/s | radcds / Orthanc |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ratio = ""
        if r.target == "radcds" and ("Orthanc", r.protocol) in by:
            ratio = f"{r.per_s / by[('Orthanc', r.protocol)].per_s:.2f}x"
        lines.append(
            f"| {r.target} | {r.protocol} | {r.rounds} | {r.instances} | {r.nbytes / 1e6:.1f} | {r.seconds:.1f} "
            f"| {r.per_s:,.1f} | {r.mb_s:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def run() -> str:
    from radcds_devstack.stack import LocalStack, Ports

    orthanc_mod = _orthanc_module()
    t_start = time.perf_counter()
    templates = file_set()
    run_dir = ROOT / ".run" / "bench-imaging"
    shutil.rmtree(run_dir, ignore_errors=True)
    kafka, controller, imaging, dimse = orthanc_mod.free_ports(4)
    ports = Ports(kafka=kafka, kafka_controller=controller, imaging=imaging, dimse=dimse)
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=ports)
    scratch = Path(tempfile.mkdtemp(prefix="radcds-imaging-bench-"))
    orthanc = orthanc_mod.OrthancServer(scratch / "orthanc")
    results: list[Result] = []
    ok = False
    try:
        with service_cpu():  # both PACS (and Kafka) on the service CPU; storescu and the STOW client on the other
            stack.kafka_broker.start()
            orthanc.start()
            stack.kafka_broker.wait()
            stack.start_service("imaging")
        stack.wait_service("imaging")
        radcds_web = f"http://{stack.host}:{ports.imaging}/dicom-web"
        targets = [
            Target("radcds", stack.host, ports.dimse, "RADCDS", radcds_web, qido_count(radcds_web)),
            Target(
                "Orthanc", orthanc.host, orthanc.dicom_port, orthanc.aet, orthanc.dicomweb, qido_count(orthanc.dicomweb)
            ),
        ]
        with load_cpu():
            for protocol in ("C-STORE", "STOW-RS"):
                for target in targets:
                    results.append(measure(target, protocol, templates, scratch / "rounds"))
        ok = True
    finally:
        orthanc.stop()
        stack.down()
        shutil.rmtree(scratch, ignore_errors=True)
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"bench failed: logs kept in {run_dir / 'logs'}", file=sys.stderr)
    return table(results, templates, time.perf_counter() - t_start)


if __name__ == "__main__":
    print(run())
