"""The async Triton adapter (tritonclient.grpc.aio) against the real tritonserver: batching by
max_batch_size, system shared memory on and off, retries and the circuit breaker across a restart.

Starts its own tritonserver (nvidia-pytriton wheel) on ports 26100-26102 serving models/.
Real image: 693_UNCI.dcm (head CT slice, pydicom-data), repeated as the slices of one batch.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radcds_devstack import processes
from radcds_devstack.stack import LocalStack, Ports
from radcds_inference.adapters.dicom.preprocess import prepare_series
from radcds_inference.adapters.triton.aio import AsyncTritonModels
from radcds_inference.adapters.triton.breaker import BreakerState, CircuitBreaker
from radcds_inference.adapters.triton.errors import TritonUnavailable
from radcds_inference.adapters.triton.manifest import load_manifest

pytestmark = [pytest.mark.integration, pytest.mark.triton]

ROOT = Path(__file__).resolve().parents[2]
PORTS = Ports(triton_http=26100, triton_grpc=26101, triton_metrics=26102)
URL = f"127.0.0.1:{PORTS.triton_grpc}"


@pytest.fixture(scope="module")
def triton() -> Iterator[LocalStack]:
    run_dir = ROOT / ".run" / f"triton-aio-it-{os.getpid()}"
    stack = LocalStack(root=ROOT, run_dir=run_dir, ports=PORTS)
    stack.triton_server.start()
    try:
        stack.triton_server.wait(timeout_s=180.0)
        yield stack
    finally:
        processes.stop("triton", run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def _head_inputs(slices: int) -> dict[str, np.ndarray]:
    entry = load_manifest(ROOT / "models").entry("head_ct_hyperdensity")
    series = prepare_series([pydicom.dcmread(get_testdata_file("693_UNCI.dcm"))], entry.preprocessing)
    images = np.repeat(series.pixels, slices, axis=0)
    spacing = np.tile(np.array([*series.pixel_spacing_mm, series.slice_thickness_mm], np.float32), (slices, 1))
    return {"IMAGE": images, "SPACING": spacing}


@pytest.mark.parametrize("shared_memory", ["none", "system"])
def test_more_slices_than_max_batch_size_are_split_and_all_answered(triton, shared_memory):
    async def run():
        models = AsyncTritonModels(URL, timeout_s=60, shared_memory=shared_memory)
        try:
            out = await models.infer(
                "head_ct_hyperdensity", "1", _head_inputs(20), ("STATUS", "MEASUREMENTS", "LOCATIONS")
            )
            ready = await models.models_ready([("head_ct_hyperdensity", "1"), ("chest_ctr", "1")])
            return out, ready
        finally:
            await models.close()

    out, ready = asyncio.run(run())
    assert out["STATUS"].shape == (20, 1) and out["MEASUREMENTS"].shape == (20, 8)  # max_batch_size 16: 2 requests
    assert (out["STATUS"] == 0).all()
    assert (out["MEASUREMENTS"][:, 0] == 0).all()  # the real slice is negative
    assert np.allclose(out["MEASUREMENTS"][:, 6], out["MEASUREMENTS"][0, 6])
    assert ready == {"head_ct_hyperdensity": True, "chest_ctr": True}


def test_shared_memory_regions_are_unlinked_on_close(triton):
    async def run():
        models = AsyncTritonModels(URL, timeout_s=60, shared_memory="system")
        await models.infer("head_ct_hyperdensity", "1", _head_inputs(2), ("STATUS",))
        names = [r.key for r in models._shared._all]
        await models.close()
        return names

    keys = asyncio.run(run())
    assert keys
    assert not any(Path("/dev/shm", k.lstrip("/")).exists() for k in keys)


def test_triton_down_opens_the_breaker_and_a_restart_with_shared_memory_recovers(triton):
    async def call(models):
        return await models.infer("head_ct_hyperdensity", "1", _head_inputs(1), ("STATUS",))

    async def run():
        breaker = CircuitBreaker(name="triton", failure_threshold=2, reset_timeout_s=0.5)
        models = AsyncTritonModels(URL, timeout_s=5, retries=1, backoff_s=0.05, breaker=breaker, shared_memory="system")
        try:
            await call(models)  # registers a region
            processes.stop("triton", triton.run_dir)
            with pytest.raises(TritonUnavailable):
                await call(models)
            assert breaker.state is BreakerState.OPEN
            with pytest.raises(TritonUnavailable, match="circuit open"):
                await call(models)  # fails fast while open
            triton.triton_server.start()
            await asyncio.to_thread(triton.triton_server.wait, 180.0)
            # Half-open after the reset timeout: the next call is the trial. gRPC's reconnect backoff may
            # fail the first trials right after the restart (as a consumer would see: it retries later).
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                await asyncio.sleep(0.6)
                try:
                    out = await call(models)  # Triton forgot the region: the adapter registers it again
                    break
                except TritonUnavailable:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
            return out, breaker.state
        finally:
            await models.close()

    out, state = asyncio.run(run())
    assert out["STATUS"].shape == (1, 1)
    assert state is BreakerState.CLOSED
