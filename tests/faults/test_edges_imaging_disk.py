"""The disk of imaging nearly full, then full, then a file-size limit: STOW-RS and C-STORE refuse cleanly.

Real imaging processes (the console entry point: uvicorn and the DIMSE SCP) and a real Kafka node. docs/imaging.md
("C-STORE behaviour and status codes", "Storage guard"): with less than ``RADCDS_IMAGING_MIN_FREE_BYTES`` free on
the storage volume a new instance is refused with ``0xA700`` Refused: Out of Resources (PS3.4 Table B.2-1; STOW-RS:
409 with FailureReason 0xA700, PS3.18 Table 10.5.3-2) and nothing is written; a write that fails underneath
(disk full, I/O error) also answers ``0xA700`` and keeps nothing. Checked here for real:

- the storage folder is a small tmpfs mounted for the test (``mount -t tmpfs -o size=32m,nr_inodes=1024``; we run
  as root in a container). Where mounting is not permitted, the guard's minimum is set a little below the free
  space of the real disk and a ballast file pushes the free space under it; the ENOSPC cases then cannot be made
  and are skipped;
- guard refusal: the volume left with less than the minimum free, though the instance would still fit;
- guard refusal by size: more than the minimum free, but not once the instance's bytes are counted (the guard
  counts the request's bytes, so the write is never tried), while a smaller instance is still stored;
- ENOSPC past the guard: bytes to spare but no inode left (empty ballast files take them all), so the guard lets
  the instance through and creating its file fails underneath;
- EFBIG: a second imaging process under ``RLIMIT_FSIZE`` (``SIGXFSZ`` ignored), storing on the real disk;
- space back: the same process accepts again, over both doors.

"Nothing partial" is checked on the volume (no new file, no ``.incoming-`` temporary) and in imaging's database
(no ``dicom_instances`` or ``dicom_instance_attributes`` row). Instances: pydicom-data's real chest CR
(RG1_UNCI.dcm, 7.2 MB) and head CT slice (693_UNCI.dcm, 0.5 MB), with fresh UIDs (radcds_devstack.samples).
"""

from __future__ import annotations

import errno
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from radcds.adapters.db.engine import sqlite_url
from radcds.adapters.dicomweb.multipart import build_related
from radcds_devstack import processes, samples
from radcds_devstack.stack import LocalStack, Ports

from .edges import ROOT, edge_stack, log_entries

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PORTS = Ports(kafka=23192, kafka_controller=23193, imaging=23182, dimse=23112)
#: The second imaging process, under RLIMIT_FSIZE.
LIMITED_HTTP_PORT, LIMITED_DIMSE_PORT = 23183, 23113
MIB = 1024 * 1024
#: Size of the tmpfs the storage folder lives on, and the guard's minimum free space on it.
TMPFS_BYTES = 32 * MIB
#: Inodes of that tmpfs: far more than the module's instances and folders need, few enough to use up quickly.
TMPFS_INODES = 1024
TMPFS_MIN_FREE = 2 * MIB
#: Without a mount: the guard's minimum sits this far below the real disk's free space (other work on the machine
#: moves it a little), and the ballast takes twice that.
REAL_DISK_HEADROOM = 64 * MIB
#: RLIMIT_FSIZE of the limited process: the head CT (0.5 MB) fits, the chest CR (7.2 MB) does not.
FILE_SIZE_LIMIT = 4 * MIB
FAILURE_OUT_OF_RESOURCES = 0xA700
SUCCESS = 0x0000
AE_TITLE = "RADCDS"


@dataclass
class Volume:
    """The storage volume of the imaging process under test, and a ballast file that eats its free space."""

    root: Path
    #: A dedicated small filesystem (so a write can really run out of space).
    small: bool
    min_free_bytes: int

    @property
    def instances(self) -> Path:
        return self.root / "instances"

    @property
    def ballast(self) -> Path:
        return self.root / "ballast.bin"

    @property
    def inode_ballast(self) -> Path:
        return self.root / "inode-ballast"

    def free(self) -> int:
        return shutil.disk_usage(self.root).free

    def fill(self, *, leaving: int) -> None:
        """Grow the ballast until about ``leaving`` bytes are free (written bytes: tmpfs allocates no holes)."""
        missing = self.free() - leaving
        block = b"\0" * MIB
        with self.ballast.open("ab") as fh:
            while missing > 0:
                fh.write(block[: min(MIB, missing)])
                missing -= MIB
        assert self.free() <= leaving + MIB

    def fill_below_the_guard(self) -> None:
        """Leave less free than the guard's minimum (1 MiB less on tmpfs, more than a head CT slice needs)."""
        self.fill(leaving=self.min_free_bytes - (MIB if self.small else REAL_DISK_HEADROOM))

    def use_up_inodes(self) -> int:
        """Create empty files until the filesystem has no inode left (bytes stay free); returns how many."""
        self.inode_ballast.mkdir(exist_ok=True)
        made = 0
        with pytest.raises(OSError, match="No space left") as full:  # noqa: PT012 - the loop ends only when the filesystem refuses
            while True:
                (self.inode_ballast / f"{made:06d}").touch(exist_ok=False)
                made += 1
        assert full.value.errno == errno.ENOSPC, full.value
        return made

    def drain(self) -> None:
        self.ballast.unlink(missing_ok=True)
        if self.inode_ballast.exists():
            shutil.rmtree(self.inode_ballast)

    def files(self) -> set[Path]:
        """Every file under the instance folder (temporaries included)."""
        return {p for p in self.instances.rglob("*") if p.is_file()}


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},nr_inodes={TMPFS_INODES},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@dataclass
class Imaging:
    stack: LocalStack
    volume: Volume
    http: str
    dimse_port: int
    database: Path
    log_name: str


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with edge_stack("imaging-disk", PORTS) as stack:
        yield stack


@pytest.fixture(scope="module")
def imaging(stack: LocalStack) -> Iterator[Imaging]:
    """imaging storing on a small tmpfs (or, where mounting is refused, on the real disk with a high guard)."""
    root = stack.run_dir / "volume"
    small = _mount_tmpfs(root)
    if small:
        min_free = TMPFS_MIN_FREE
    else:
        root.mkdir(parents=True, exist_ok=True)
        min_free = shutil.disk_usage(root).free - REAL_DISK_HEADROOM
    volume = Volume(root, small, min_free)
    database = stack.run_dir / "imaging.db"  # on the real disk: the rows are checked, the volume fills
    stack.extra_env.update(
        {
            "RADCDS_IMAGING_STORAGE_DIR": str(volume.instances),
            "RADCDS_IMAGING_DATABASE_URL": sqlite_url(database),
            "RADCDS_IMAGING_MIN_FREE_BYTES": str(min_free),
            "RADCDS_IMAGING_MIN_FREE_RATIO": "0",
        }
    )
    try:
        stack.start_service("imaging")
        stack.wait_service("imaging")
        yield Imaging(stack, volume, f"http://{stack.host}:{PORTS.imaging}", PORTS.dimse, database, "imaging")
    finally:
        processes.stop("imaging", stack.run_dir)
        volume.drain()
        if small:
            subprocess.run(["umount", str(root)], check=False)


def _limit_file_size() -> None:
    """In the child before exec: files it writes may not grow past FILE_SIZE_LIMIT (write() then fails with EFBIG:
    SIGXFSZ, which would kill the process instead, is ignored, as Python does at start-up anyway)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.fixture(scope="module")
def limited(stack: LocalStack) -> Iterator[Imaging]:
    """A second imaging process on the real disk whose files may not grow past FILE_SIZE_LIMIT."""
    name = "imaging-fsize"
    root = stack.run_dir / name
    volume = Volume(root, small=False, min_free_bytes=0)
    database = root / "imaging.db"
    env = stack.service_env("imaging")
    env.update(
        {
            "RADCDS_IMAGING_HTTP_PORT": str(LIMITED_HTTP_PORT),
            "RADCDS_IMAGING_DIMSE_PORT": str(LIMITED_DIMSE_PORT),
            "RADCDS_IMAGING_PUBLIC_BASE_URL": f"http://{stack.host}:{LIMITED_HTTP_PORT}",
            "RADCDS_IMAGING_STORAGE_DIR": str(volume.instances),
            "RADCDS_IMAGING_DATABASE_URL": sqlite_url(database),
            "RADCDS_IMAGING_MIN_FREE_BYTES": "0",
            "RADCDS_IMAGING_MIN_FREE_RATIO": "0",
            "RADCDS_IMAGING_TRACE_FILE": str(stack.run_dir / "traces" / f"{name}.jsonl"),
        }
    )
    (stack.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    with (stack.run_dir / "logs" / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "radcds_imaging"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_limit_file_size,
        )
    (stack.run_dir / "pids").mkdir(parents=True, exist_ok=True)
    (stack.run_dir / "pids" / f"{name}.pid").write_text(str(proc.pid))
    http = f"http://{stack.host}:{LIMITED_HTTP_PORT}"
    try:
        processes.wait_until(
            lambda: processes.http_ok(f"{http}/readyz"), timeout_s=90, what=name, alive=(name, stack.run_dir)
        )
        yield Imaging(stack, volume, http, LIMITED_DIMSE_PORT, database, name)
    finally:
        processes.stop(name, stack.run_dir)


def _stow(imaging: Imaging, ds: Dataset) -> httpx.Response:
    body, boundary = build_related([("application/dicom", samples.part10(ds))])
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return httpx.post(
        f"{imaging.http}/dicom-web/studies", content=body, headers={"Content-Type": content_type}, timeout=60
    )


def _c_store(imaging: Imaging, ds: Dataset) -> tuple[int, str]:
    """C-STORE ``ds`` to imaging (PS3.4 B.2.3); returns the status and the Error Comment (0000,0902)."""
    ae = AE(ae_title="FAULTS_EDGES")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(ds.SOPClassUID, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", imaging.dimse_port, ae_title=AE_TITLE)
    assert assoc.is_established, "imaging refused the association"
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status is not None and "Status" in status, "no C-STORE response"
    return int(status.Status), str(status.get("ErrorComment", ""))


def _stow_failure_reasons(response: httpx.Response) -> list[int]:
    """FailureReason (0008,1197) of each FailedSOPSequence (0008,1198) item of a STOW-RS response."""
    failed = response.json().get("00081198", {}).get("Value", [])
    return [item["00081197"]["Value"][0] for item in failed]


def _rows(imaging: Imaging, sop_instance_uid: str) -> int:
    """Rows of one instance in imaging's database (the instance row and its QIDO-RS attributes)."""
    with sqlite3.connect(f"file:{imaging.database}?mode=ro", uri=True) as db:
        return sum(
            db.execute(f"SELECT COUNT(*) FROM {table} WHERE sop_instance_uid = ?", (sop_instance_uid,)).fetchone()[0]
            for table in ("dicom_instances", "dicom_instance_attributes")
        )


def _assert_nothing_kept(imaging: Imaging, ds: Dataset, files_before: set[Path]) -> None:
    after = imaging.volume.files()
    assert after == files_before, f"files left behind: {sorted(str(p) for p in after - files_before)}"
    assert not [p for p in after if p.name.startswith(".incoming-")]
    assert _rows(imaging, ds.SOPInstanceUID) == 0
    qido = httpx.get(f"{imaging.http}/dicom-web/instances", params={"SOPInstanceUID": ds.SOPInstanceUID}, timeout=30)
    assert qido.status_code == 204


def _refused_over_both_doors(imaging: Imaging, ds: Dataset) -> str:
    """STOW-RS then C-STORE ``ds``: both refused with 0xA700 and nothing kept; returns the C-STORE Error Comment."""
    before = imaging.volume.files()
    response = _stow(imaging, ds)
    assert response.status_code == 409, response.text
    assert _stow_failure_reasons(response) == [FAILURE_OUT_OF_RESOURCES]
    _assert_nothing_kept(imaging, ds, before)
    status, comment = _c_store(imaging, ds)
    assert status == FAILURE_OUT_OF_RESOURCES
    _assert_nothing_kept(imaging, ds, before)
    return comment


def _stored(imaging: Imaging, ds: Dataset) -> bool:
    return _rows(imaging, ds.SOPInstanceUID) > 0


def test_volume_below_the_guard_minimum_refuses_stow_rs_with_a700_and_keeps_nothing(imaging):
    ds = samples.head_ct()  # 0.5 MB: it would fit, the guard refuses it
    imaging.volume.fill_below_the_guard()
    try:
        before = imaging.volume.files()
        response = _stow(imaging, ds)
        assert response.status_code == 409, response.text
        assert _stow_failure_reasons(response) == [FAILURE_OUT_OF_RESOURCES]
        _assert_nothing_kept(imaging, ds, before)
    finally:
        imaging.volume.drain()


def test_volume_below_the_guard_minimum_refuses_c_store_with_a700_and_keeps_nothing(imaging):
    ds = samples.head_ct()
    imaging.volume.fill_below_the_guard()
    try:
        before = imaging.volume.files()
        status, comment = _c_store(imaging, ds)
        assert status == FAILURE_OUT_OF_RESOURCES
        assert comment.startswith("storage nearly full")
        _assert_nothing_kept(imaging, ds, before)
    finally:
        imaging.volume.drain()


def _not_stored_errors(imaging: Imaging) -> list[str]:
    """``error_class`` of imaging's "instance not stored" logs: the write failures it answered 0xA700."""
    entries = log_entries(imaging.stack, imaging.log_name)
    return [e.get("error_class", "") for e in entries if e.get("message") == "instance not stored"]


def test_instance_bigger_than_the_space_above_the_minimum_is_refused_before_any_write_and_a_small_one_stored(
    imaging,
):
    if not imaging.volume.small:
        pytest.skip("mount -t tmpfs is not permitted here: no small filesystem to fill")
    cr, ct = samples.chest_cr(), samples.head_ct()  # 7.2 MB and 0.5 MB
    # More than the guard's minimum free, less than the minimum plus the chest CR: only the head CT fits.
    imaging.volume.fill(leaving=imaging.volume.min_free_bytes + 2 * MIB)
    try:
        errors_before = len(_not_stored_errors(imaging))
        assert _refused_over_both_doors(imaging, cr).startswith("storage nearly full")
        # The guard refused both before writing: no write failed underneath.
        assert len(_not_stored_errors(imaging)) == errors_before
        assert _c_store(imaging, ct)[0] == SUCCESS
        assert _stored(imaging, ct)
    finally:
        imaging.volume.drain()


def test_write_with_no_inode_left_past_the_guard_fails_with_a700_and_keeps_nothing(imaging):
    if not imaging.volume.small:
        pytest.skip("mount -t tmpfs is not permitted here: no small filesystem to run out of")
    ds = samples.head_ct()
    assert imaging.volume.use_up_inodes() > 0
    try:
        assert imaging.volume.free() > imaging.volume.min_free_bytes + 4 * MIB  # the guard sees room in bytes
        _refused_over_both_doors(imaging, ds)
        # Both refusals came from creating the file failing (ENOSPC), not from the guard.
        assert _not_stored_errors(imaging)[-2:] == ["OSError", "OSError"]
    finally:
        imaging.volume.drain()


def test_space_returned_stores_again_over_stow_rs_and_c_store(imaging):
    imaging.volume.fill_below_the_guard()
    refused = samples.head_ct()
    assert _c_store(imaging, refused)[0] == FAILURE_OUT_OF_RESOURCES
    imaging.volume.drain()
    stowed, sent = samples.chest_cr(), samples.head_ct()
    response = _stow(imaging, stowed)
    assert response.status_code == 200, response.text
    assert _c_store(imaging, sent)[0] == SUCCESS
    assert _c_store(imaging, refused)[0] == SUCCESS  # the sender's retry now succeeds
    for ds in (stowed, sent, refused):
        assert _stored(imaging, ds)
    url = response.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    assert samples.part10(stowed) in httpx.get(url, timeout=60).content


def test_write_over_the_file_size_limit_fails_with_a700_and_keeps_nothing(limited):
    small, big = samples.head_ct(), samples.chest_cr()
    assert _c_store(limited, small)[0] == SUCCESS  # under the limit: stored
    _refused_over_both_doors(limited, big)
    assert _not_stored_errors(limited)[-2:] == ["OSError", "OSError"]  # EFBIG from write(), not a crash
    assert processes.http_ok(f"{limited.http}/readyz")
