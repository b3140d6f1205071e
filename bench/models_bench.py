"""Each model through Triton (gRPC aio, as the inference service calls it) against the same algorithm in process.

For ``chest_ctr`` (the real PA chest CR RG1_UNCI.dcm, prepared to 488x460 INT16) and
``head_ct_hyperdensity`` (the real head CT slice 693_UNCI.dcm, 512x512 HU), at concurrency 1, 4
and 8, with system shared memory on and off:

- **Triton**: :class:`radcds_inference.adapters.triton.aio.AsyncTritonModels` ``infer`` (breaker, retries,
  batching, shared memory: the service's own path) against a tritonserver this script starts on
  free ports (nvidia-pytriton wheel, models/ as committed);
- **in process**: the model's numeric core imported from ``models/<name>/1/model.py``
  (``measure_ctr`` / ``find_hyperdensities``) on the same prepared pixels, ``concurrency`` threads.

Reported: latency p50 and p99 per request, throughput (requests/s), and the ratio Triton p50 /
in-process p50 at the same concurrency. Target (issue #5): the CR model's Triton path costs at most
1.3x the in-process compute. Run: ``.venv/bin/python bench/models_bench.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, load_cpu, service_cpu

CONCURRENCY = (1, 4, 8)
OUTPUTS = ("STATUS", "MEASUREMENTS", "LOCATIONS")
TARGET_RATIO = 1.3


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _load(name: str) -> Any:
    from radcds_devstack.testing import model_code

    return model_code(ROOT / "models", name)


def _cases() -> list[tuple[str, dict[str, np.ndarray], Callable[[], object]]]:
    """(model, one request's inputs with batch 1, the in-process call on the same pixels)."""
    from radcds_inference.adapters.dicom.preprocess import prepare_series
    from radcds_inference.adapters.triton.manifest import load_manifest
    from radcds_inference.handlers import model_inputs

    manifest = load_manifest(ROOT / "models")
    chest, head = _load("chest_ctr"), _load("head_ct_hyperdensity")
    cases = []
    for model, file in (("chest_ctr", "RG1_UNCI.dcm"), ("head_ct_hyperdensity", "693_UNCI.dcm")):
        entry = manifest.entry(model)
        series = prepare_series([pydicom.dcmread(get_testdata_file(file))], entry.preprocessing)
        inputs = model_inputs(entry, series)
        image = inputs["IMAGE"][0]
        if model == "chest_ctr":
            spacing = tuple(float(v) for v in inputs["PIXEL_SPACING"][0])

            def in_process(image: np.ndarray = image, spacing: tuple[float, ...] = spacing) -> object:
                r = chest.measure_ctr(image)
                return r.status, r.measurements(spacing), r.locations()
        else:
            spacing3 = tuple(float(v) for v in inputs["SPACING"][0])

            def in_process(image: np.ndarray = image, spacing: tuple[float, ...] = spacing3) -> object:
                r = head.find_hyperdensities(image, spacing)
                return r.status, r.measurements(), r.locations()

        cases.append((model, inputs, in_process))
    return cases


def _stats(latencies: list[float], wall: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99, len(ordered) / wall


def bench_in_process(fn: Callable[[], object], *, concurrency: int, requests: int) -> tuple[float, float, float]:
    """p50 s, p99 s, requests/s of ``fn`` called ``requests`` times by ``concurrency`` threads."""
    for _ in range(2):
        fn()

    def one(_: int) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    return _stats(latencies, time.perf_counter() - start)


async def bench_triton(
    url: str, model: str, inputs: dict[str, np.ndarray], *, shared_memory: str, concurrency: int, requests: int
) -> tuple[float, float, float]:
    """p50 s, p99 s, requests/s of ``AsyncTritonModels.infer`` with ``concurrency`` requests in flight."""
    from radcds_inference.adapters.triton.aio import AsyncTritonModels

    models = AsyncTritonModels(url, timeout_s=120, shared_memory=shared_memory)  # type: ignore[arg-type]
    try:
        for _ in range(3):
            await models.infer(model, "1", inputs, OUTPUTS)
        latencies: list[float] = []
        queue = iter(range(requests))

        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                await models.infer(model, "1", inputs, OUTPUTS)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return _stats(latencies, time.perf_counter() - start)
    finally:
        await models.close()


def main(argv: list[str] | None = None) -> str:
    """Start tritonserver, measure every (model, concurrency, shared memory) cell, print and return the table."""
    from radcds_devstack import processes
    from radcds_devstack.stack import LocalStack, Ports

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per cell (default 48)")
    args = parser.parse_args(argv)
    http, grpc_port, metrics = _free_ports(3)
    run_dir = ROOT / ".run" / f"models-bench-{os.getpid()}"
    stack = LocalStack(
        root=ROOT, run_dir=run_dir, ports=Ports(triton_http=http, triton_grpc=grpc_port, triton_metrics=metrics)
    )
    with service_cpu():  # tritonserver on the service CPU; the client and the in-process baseline on the other
        stack.triton_server.start()
    lines = [
        "| model | concurrency | shared memory | Triton p50 ms | Triton p99 ms | Triton req/s "
        "| in-process p50 ms | in-process p99 ms | in-process req/s | ratio p50 (Triton / in-process) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    try:
        stack.triton_server.wait(timeout_s=180)
        url = f"127.0.0.1:{grpc_port}"
        with load_cpu():
            lines += _measure_all(url, args.requests)
    finally:
        processes.stop("triton", run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    table = "\n".join(lines)
    print(f"## Models: Triton (gRPC aio) vs in-process (target: chest_ctr <= {TARGET_RATIO}x)\n")
    print(table)
    return table


def _measure_all(url: str, requests: int) -> list[str]:
    """Every (model, concurrency, shared memory) cell against the same algorithm in process."""
    lines = []
    for model, inputs, in_process in _cases():
        for concurrency in CONCURRENCY:
            local = bench_in_process(in_process, concurrency=concurrency, requests=requests)
            for shared in ("none", "system"):
                remote = asyncio.run(
                    bench_triton(url, model, inputs, shared_memory=shared, concurrency=concurrency, requests=requests)
                )
                lines.append(
                    f"| {model} | {concurrency} | {'on' if shared == 'system' else 'off'} "
                    f"| {remote[0] * 1e3:.1f} | {remote[1] * 1e3:.1f} | {remote[2]:.1f} "
                    f"| {local[0] * 1e3:.1f} | {local[1] * 1e3:.1f} | {local[2]:.1f} "
                    f"| {remote[0] / local[0]:.2f}x |"
                )
    return lines


if __name__ == "__main__":
    main()
