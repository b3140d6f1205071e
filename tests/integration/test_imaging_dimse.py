"""The imaging DIMSE SCP against an independent DICOM implementation: dcmtk's echoscu and storescu.

The SCP runs in this process with the same wiring as the service (ImagingService over SQLite and a
filesystem store); only the event publisher is a fake, so no Kafka is needed. dcmtk is required, not
optional: `.ci/run` installs it (Debian package ``dcmtk``) and a missing binary fails these tests.

Fixtures, all real images shipped in registry packages (found offline with ``get_testdata_file``):
- RG1_UNCI.dcm: PA chest radiograph (CR), uncompressed (pydicom-data 1.0.0)
- 693_UNCI.dcm: head CT slice, uncompressed (pydicom-data 1.0.0)
- RG1_J2KR.dcm: the same chest radiograph, JPEG 2000 lossless (pydicom-data 1.0.0)
- CT_small.dcm: 128x128 CT slice (pydicom 3.0.2 test files)
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay
from radcds.domain.events import INSTANCE_STORED
from radcds_devstack.testing import RecordingPublisher
from radcds_imaging.adapters.storage import FilesystemInstanceStore
from radcds_imaging.api.dimse import DimseConfig, DimseServer, store_port
from radcds_imaging.handlers import ImagingService

pytestmark = [pytest.mark.integration]

OUR_AET = "RADCDS"
CALLER = "RADCDS_TEST"
UNCOMPRESSED = ("RG1_UNCI.dcm", "693_UNCI.dcm", "CT_small.dcm")
JPEG2000_FILE = "RG1_J2KR.dcm"


def _dcmtk(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"dcmtk's {tool} is not on PATH: install the Debian package 'dcmtk' (.ci/run does)")
    return path


def _testdata(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"{name} not found: install pydicom-data==1.0.0 (it ships the test images offline)")
    return Path(path)


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[DimseServer, ImagingService, RecordingPublisher, Path]]:
    engine = make_engine(sqlite_url(tmp_path / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    publisher = RecordingPublisher()
    service = ImagingService(
        engine=engine,
        store=FilesystemInstanceStore(tmp_path / "store"),
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://imaging.test",
    )
    config = DimseConfig(
        ae_title=OUR_AET,
        host="127.0.0.1",
        port=0,
        allowed_calling_aets=frozenset({CALLER}),
        network_timeout_s=30,
        acse_timeout_s=30,
        dimse_timeout_s=30,
        stop_grace_s=2,
    )
    with DimseServer(config, store=store_port(service)) as server:
        yield server, service, publisher, tmp_path / "store"
    engine.dispose()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_echoscu_from_allowed_caller_exits_zero(scp):
    server, *_ = scp
    port = str(server.address[1])
    result = _run(_dcmtk("echoscu"), "-aet", CALLER, "-aec", OUR_AET, "127.0.0.1", port)
    assert result.returncode == 0, result.stdout + result.stderr


def _assert_stored_unchanged(service: ImagingService, paths: list[Path]) -> None:
    for path in paths:
        sent = pydicom.dcmread(path)
        data = service.retrieve_instance(
            study=sent.StudyInstanceUID, series=sent.SeriesInstanceUID, instance=sent.SOPInstanceUID
        )
        assert data is not None, f"{path.name} was not stored"
        stored = pydicom.dcmread(io.BytesIO(data))
        # Each file travels in its own transfer syntax (all are accepted): nothing is transcoded.
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID, path.name
        assert stored.SOPClassUID == sent.SOPClassUID, path.name
        assert stored.PixelData == sent.PixelData, path.name


def _announced(publisher: RecordingPublisher) -> list[str]:
    return sorted(p["instance"]["sopInstanceUid"] for k, p, _, _ in publisher.events if k is INSTANCE_STORED)


def test_storescu_default_proposal_stores_uncompressed_cr_and_ct_each_once(scp):
    # storescu's default proposal: every storage SOP class it knows, uncompressed transfer syntaxes only.
    server, service, publisher, _ = scp
    paths = [_testdata(name) for name in UNCOMPRESSED]
    result = _run(
        _dcmtk("storescu"), "-aet", CALLER, "-aec", OUR_AET, "127.0.0.1", str(server.address[1]), *map(str, paths)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_stored_unchanged(service, paths)
    assert _announced(publisher) == sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in paths)


def test_storescu_proposing_jpeg2000_stores_jpeg2000_and_uncompressed_files_each_once(scp):
    # -xv: propose JPEG 2000 lossless beside the uncompressed syntaxes. storescu never proposes a file's own
    # compressed syntax by itself and cannot decompress JPEG 2000, so a modality sending such files needs it.
    server, service, publisher, _ = scp
    paths = [_testdata(name) for name in (*UNCOMPRESSED, JPEG2000_FILE)]
    result = _run(
        _dcmtk("storescu"),
        "-xv",
        "-aet",
        CALLER,
        "-aec",
        OUR_AET,
        "127.0.0.1",
        str(server.address[1]),
        *map(str, paths),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_stored_unchanged(service, paths)
    assert pydicom.dcmread(paths[-1]).file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert _announced(publisher) == sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in paths)


def test_storescu_from_calling_ae_not_allowed_fails_and_stores_nothing(scp):
    server, _, publisher, store_root = scp
    result = _run(
        _dcmtk("storescu"),
        "-aet",
        "UNKNOWN_MODALITY",
        "-aec",
        OUR_AET,
        "127.0.0.1",
        str(server.address[1]),
        str(_testdata("CT_small.dcm")),
    )
    assert result.returncode != 0
    assert "rejected" in (result.stdout + result.stderr).lower()
    assert not publisher.events
    assert not list(store_root.rglob("*.dcm"))
