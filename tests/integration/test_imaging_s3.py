"""Imaging with the S3-compatible storage option, against a real S3 server (S3Proxy from Maven Central).

A second imaging process (its own HTTP port, its own SQLite database, DIMSE off) stores in a bucket of
an S3Proxy started for this module; it publishes on the session's real Kafka broker. Files: pydicom's
CT_small and pydicom-data's chest CR (RG1_UNCI), each with fresh UIDs.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pydicom
import pytest
from botocore.config import Config
from pydicom.data import get_testdata_file

from radcds.adapters.dicomweb.multipart import build_related
from radcds.domain.events import INSTANCE_STORED
from radcds_devstack import processes
from radcds_devstack.demo import with_fresh_uids
from radcds_devstack.stack import S3_DEV_CREDENTIALS, LocalStack

from .helpers import eventually, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

S3_PORT = 29000
HTTP_PORT = 28092
BUCKET = "radcds-itest"
PREFIX = "site-a"


def _s3_client() -> object:
    identity, credential = S3_DEV_CREDENTIALS
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{S3_PORT}",
        aws_access_key_id=identity,
        aws_secret_access_key=credential,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


@pytest.fixture(scope="module")
def s3_imaging(stack: LocalStack) -> Iterator[str]:
    """Base URL of an imaging service storing in S3Proxy."""
    stack.s3_proxy(port=S3_PORT).start()
    stack.s3_proxy(port=S3_PORT).wait()
    env = stack.service_env("imaging")
    data = stack.run_dir / "data" / "imaging-s3"
    identity, credential = S3_DEV_CREDENTIALS
    env |= {
        "RADCDS_IMAGING_HTTP_PORT": str(HTTP_PORT),
        "RADCDS_IMAGING_PUBLIC_BASE_URL": f"http://127.0.0.1:{HTTP_PORT}",
        "RADCDS_IMAGING_DIMSE_ENABLED": "false",
        # This process goes away when the module ends: it must not announce studies (study.available)
        # that inference would then try to retrieve from it for the rest of the session.
        "RADCDS_IMAGING_STUDY_QUIET_PERIOD_S": "86400",
        "RADCDS_IMAGING_STORAGE_DIR": str(data / "unused"),
        "RADCDS_IMAGING_DATABASE_URL": f"sqlite:///{data / 'imaging.db'}",
        "RADCDS_IMAGING_TRACE_FILE": str(data / "traces.jsonl"),
        "RADCDS_IMAGING_STORAGE_BACKEND": "s3",
        "RADCDS_IMAGING_S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
        "RADCDS_IMAGING_S3_BUCKET": BUCKET,
        "RADCDS_IMAGING_S3_PREFIX": PREFIX,
        "RADCDS_IMAGING_S3_ACCESS_KEY_ID": identity,
        "RADCDS_IMAGING_S3_SECRET_ACCESS_KEY": credential,
        "RADCDS_IMAGING_S3_CREATE_BUCKET": "true",
    }
    data.mkdir(parents=True, exist_ok=True)

    processes.start(
        "imaging-s3", [sys.executable, "-m", "radcds_imaging"], run_dir=stack.run_dir, env=env, cwd=stack.root
    )
    base = f"http://127.0.0.1:{HTTP_PORT}"
    try:
        processes.wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=3).status_code == 200,
            timeout_s=90,
            what="imaging on S3",
            alive=("imaging-s3", stack.run_dir),
        )
        yield base
    finally:
        processes.stop("imaging-s3", stack.run_dir)
        processes.stop("s3proxy", stack.run_dir)


def _stow(base: str, parts: list[bytes]) -> httpx.Response:
    body, boundary = build_related([("application/dicom", p) for p in parts])
    return httpx.post(
        f"{base}/dicom-web/studies",
        content=body,
        timeout=60,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
    )


def _objects() -> dict[str, bytes]:
    client = _s3_client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")  # type: ignore[attr-defined]
    return {
        o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()  # type: ignore[attr-defined]
        for o in listed.get("Contents", [])
    }


def _fresh(name: str) -> tuple[bytes, pydicom.Dataset]:
    data = with_fresh_uids(Path(get_testdata_file(name)))
    return data, pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def test_stow_to_s3_backed_imaging_stores_objects_byte_identical_and_announces_them(stack, s3_imaging):
    (ct, ct_ds), (cr, cr_ds) = _fresh("CT_small.dcm"), _fresh("RG1_UNCI.dcm")
    response = _stow(s3_imaging, [ct, cr])
    assert response.status_code == 200, response.text
    objects = _objects()
    by_uid = objects
    for data, ds in ((ct, ct_ds), (cr, cr_ds)):
        keys = [k for k in by_uid if f"/{ds.SOPInstanceUID}." in k]
        assert len(keys) == 1 and keys[0].startswith(f"{PREFIX}/{ds.StudyInstanceUID}/")
        assert by_uid[keys[0]] == data
        series = f"{s3_imaging}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        url = f"{series}/instances/{ds.SOPInstanceUID}"
        wado = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'}, timeout=30)
        assert wado.status_code == 200 and data in wado.content

    def announced() -> bool:
        payloads = [json.loads(r.value) for r in read_topic(stack, INSTANCE_STORED.topic)]
        uids = {p["instance"]["sopInstanceUid"] for p in payloads}
        return {ct_ds.SOPInstanceUID, cr_ds.SOPInstanceUID} <= uids

    eventually(announced, timeout_s=60, what="instance.stored events for the S3-stored instances")


def test_same_instance_sent_twice_to_s3_backed_imaging_is_one_object(s3_imaging):
    data, ds = _fresh("CT_small.dcm")
    assert _stow(s3_imaging, [data]).status_code == 200
    again = _stow(s3_imaging, [data])
    assert again.status_code == 200
    assert len([k for k in _objects() if f"/{ds.SOPInstanceUID}." in k]) == 1


def test_s3_store_down_fails_the_part_with_a700_keeps_nothing_and_recovers(stack, s3_imaging):
    processes.stop("s3proxy", stack.run_dir)
    try:
        eventually(
            lambda: httpx.get(f"{s3_imaging}/readyz", timeout=10).status_code == 503,
            timeout_s=60,
            what="readiness to report the store down",
        )
        data, ds = _fresh("CT_small.dcm")
        response = _stow(s3_imaging, [data])
        assert response.status_code == 409, response.text
        failed = response.json()["00081198"]["Value"][0]
        assert failed["00081197"]["Value"] == [0xA700]
        found = httpx.get(
            f"{s3_imaging}/dicom-web/studies/{ds.StudyInstanceUID}/instances",
            headers={"Accept": "application/dicom+json"},
            timeout=10,
        )
        assert found.status_code == 204
    finally:
        stack.s3_proxy(port=S3_PORT).start()
        stack.s3_proxy(port=S3_PORT).wait()
    eventually(
        lambda: _stow(s3_imaging, [_fresh("CT_small.dcm")[0]]).status_code == 200,
        timeout_s=60,
        what="storing again once S3 is back",
    )
