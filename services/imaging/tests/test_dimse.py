"""DIMSE Verification and Storage SCP, exercised by a real pynetdicom SCU over TCP on 127.0.0.1.

The SCP stores through a real ImagingService (SQLite and filesystem store in tmp_path); only the event
publisher is a fake. Fixture: pydicom's CT_small.dcm (a 128x128 CT slice shipped in pydicom's test files).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay, pending_count
from radcds.domain.events import INSTANCE_STORED
from radcds_devstack.testing import RecordingPublisher
from radcds_imaging.adapters.part10 import FAILURE_CANNOT_UNDERSTAND
from radcds_imaging.adapters.storage import FilesystemInstanceStore
from radcds_imaging.api.dimse import (
    DEFAULT_TRANSFER_SYNTAXES,
    STATUS_PROCESSING_FAILURE,
    DimseConfig,
    DimseServer,
    dimse_config_from_settings,
    store_port,
)
from radcds_imaging.handlers import ImagingService

# pydicom's CT_small.dcm: a 128x128 CT slice, Explicit VR Little Endian (pydicom test files).
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
OUR_AET = "RADCDS"
CALLER = "RADCDS_TEST"
TIMEOUT_S = 10.0


@dataclass
class Scp:
    server: DimseServer
    service: ImagingService
    publisher: RecordingPublisher
    store_root: Path

    @property
    def port(self) -> int:
        return self.server.address[1]


def _service(tmp_path: Path) -> tuple[ImagingService, RecordingPublisher]:
    engine = make_engine(sqlite_url(tmp_path / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    publisher = RecordingPublisher()
    store = FilesystemInstanceStore(tmp_path / "store")
    return ImagingService(
        engine=engine,
        store=store,
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://imaging.test",
    ), (publisher)


def _config(**overrides: Any) -> DimseConfig:
    values: dict[str, Any] = {
        "ae_title": OUR_AET,
        "host": "127.0.0.1",
        "port": 0,
        "allowed_calling_aets": frozenset({CALLER}),
        "max_associations": 3,
        "network_timeout_s": TIMEOUT_S,
        "acse_timeout_s": TIMEOUT_S,
        "dimse_timeout_s": TIMEOUT_S,
        "stop_grace_s": 2.0,
    }
    return DimseConfig(**(values | overrides))


@pytest.fixture
def make_scp(tmp_path: Path) -> Iterator[Any]:
    servers: list[DimseServer] = []

    def make(**overrides: Any) -> Scp:
        service, publisher = _service(tmp_path)
        server = DimseServer(_config(**overrides), store=store_port(service))
        server.start()
        servers.append(server)
        return Scp(server, service, publisher, tmp_path / "store")

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def scp(make_scp: Any) -> Scp:
    return make_scp()


def _scu(calling: str = CALLER, *, contexts: list[tuple[str, list[str] | None]] | None = None) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    for sop_class, syntaxes in contexts or [(Verification, None), (CTImageStorage, None)]:
        if syntaxes is None:
            ae.add_requested_context(sop_class)
        else:
            ae.add_requested_context(sop_class, syntaxes)
    return ae


def _associate(scp: Scp, *, calling: str = CALLER, called: str = OUR_AET, **kw: Any) -> Association:
    return _scu(calling, **kw).associate("127.0.0.1", scp.port, ae_title=called)


def _stored_count(scp: Scp) -> int:
    return len(list(scp.store_root.rglob("*.dcm")))


def test_c_echo_from_allowed_caller_returns_success(scp):
    assoc = _associate(scp)
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0x0000


def test_c_store_of_ct_small_returns_success_and_instance_is_retrievable_with_same_pixels(scp):
    ds = pydicom.dcmread(CT_SMALL)
    assoc = _associate(scp)
    status = assoc.send_c_store(ds)
    assoc.release()

    assert status.Status == 0x0000
    data = scp.service.retrieve_instance(
        study=ds.StudyInstanceUID, series=ds.SeriesInstanceUID, instance=ds.SOPInstanceUID
    )
    assert data is not None
    stored = pydicom.dcmread(io.BytesIO(data))
    assert stored.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert stored.SOPClassUID == ds.SOPClassUID
    assert stored.PixelData == ds.PixelData
    ((kind, payload, _, subject),) = scp.publisher.events
    assert kind is INSTANCE_STORED
    assert subject == ds.StudyInstanceUID
    assert payload["instance"]["sopInstanceUid"] == ds.SOPInstanceUID


def test_c_store_of_same_instance_twice_returns_success_both_times_and_publishes_once(scp):
    ds = pydicom.dcmread(CT_SMALL)
    assoc = _associate(scp)
    first = assoc.send_c_store(ds)
    second = assoc.send_c_store(ds)
    assoc.release()
    assert (first.Status, second.Status) == (0x0000, 0x0000)
    assert len(scp.publisher.events) == 1
    assert _stored_count(scp) == 1


def test_calling_ae_not_on_allowlist_is_rejected_permanently_and_nothing_is_stored(scp):
    assoc = _associate(scp, calling="INTRUDER")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    # A-ASSOCIATE-RJ: rejected-permanent (1), service-user (1), calling AE title not recognised (3).
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)
    assert _stored_count(scp) == 0 and not scp.publisher.events


def test_empty_allowlist_accepts_any_calling_ae(make_scp):
    scp = make_scp(allowed_calling_aets=frozenset())
    assoc = _associate(scp, calling="ANY_MODALITY")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_wrong_called_ae_is_rejected_with_called_ae_not_recognised(scp):
    assoc = _associate(scp, called="NOT_RADCDS")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x07)


def test_transfer_syntax_not_configured_rejects_the_presentation_context_and_stores_nothing(make_scp):
    scp = make_scp(transfer_syntaxes=(JPEG2000Lossless,))
    # CT Image Storage offered only uncompressed (pynetdicom's default: Explicit/Implicit LE, Deflated, Explicit BE).
    assoc = _associate(scp, contexts=[(Verification, None), (CTImageStorage, None)])
    assert assoc.is_established
    (rejected,) = assoc.rejected_contexts
    # Result 4: transfer-syntaxes-not-supported (provider rejection), PS3.8 9.3.3.2.
    assert rejected.abstract_syntax == CTImageStorage and rejected.result == 0x04
    with pytest.raises(ValueError, match="presentation context"):
        assoc.send_c_store(pydicom.dcmread(CT_SMALL))
    assoc.release()
    assert _stored_count(scp) == 0 and not scp.publisher.events


def test_configured_jpeg2000_context_is_accepted_for_jpeg2000_offer(make_scp):
    scp = make_scp(transfer_syntaxes=(JPEG2000Lossless,))
    assoc = _associate(scp, contexts=[(CTImageStorage, [JPEG2000Lossless])])
    assert assoc.is_established
    assert [cx.transfer_syntax[0] for cx in assoc.accepted_contexts] == [JPEG2000Lossless]
    assoc.release()


def test_associations_beyond_maximum_are_rejected_and_earlier_ones_keep_working(make_scp):
    scp = make_scp(max_associations=2)
    held = [_associate(scp) for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        extra = _associate(scp)
        assert extra.is_rejected
        rj = extra.acceptor.primitive
        # rejected-transient (2), service-provider presentation (3), local-limit-exceeded (2), PS3.8 9.3.4.
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)
        assert held[0].send_c_echo().Status == 0x0000
    finally:
        for a in held:
            a.release()


def test_store_port_failure_status_and_comment_reach_the_scu(tmp_path):
    server = DimseServer(_config(), store=lambda data: (FAILURE_CANNOT_UNDERSTAND, "bad\\data\n" + "x" * 100))
    with server:
        assoc = _scu().associate("127.0.0.1", server.address[1], ae_title=OUR_AET)
        status = assoc.send_c_store(pydicom.dcmread(CT_SMALL))
        assoc.release()
    assert status.Status == FAILURE_CANNOT_UNDERSTAND
    assert len(status.ErrorComment) <= 64 and "\\" not in status.ErrorComment


def test_store_port_exception_answers_processing_failure_and_scp_keeps_serving(tmp_path):
    def broken(data: bytes) -> tuple[int, str]:
        raise RuntimeError("disk on fire")

    with DimseServer(_config(), store=broken) as server:
        assoc = _scu().associate("127.0.0.1", server.address[1], ae_title=OUR_AET)
        status = assoc.send_c_store(pydicom.dcmread(CT_SMALL))
        echo = assoc.send_c_echo()
        assoc.release()
    assert status.Status == STATUS_PROCESSING_FAILURE
    assert echo.Status == 0x0000


def test_instance_received_while_the_broker_is_down_is_stored_and_announced_once_it_is_back(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    store = FilesystemInstanceStore(tmp_path / "store")
    publisher = RecordingPublisher(fail=True)
    service = ImagingService(
        engine=engine,
        store=store,
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://x",
    )
    with DimseServer(_config(), store=store_port(service)) as server:
        assoc = _scu().associate("127.0.0.1", server.address[1], ae_title=OUR_AET)
        status = assoc.send_c_store(pydicom.dcmread(CT_SMALL))
        assoc.release()
    assert status.Status == 0x0000
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 1
    assert not publisher.events and pending_count(engine) == 1
    publisher.fail = False
    assert service.outbox.drain() == 1
    assert [e[1]["instance"]["sopInstanceUid"] for e in publisher.events] == [pydicom.dcmread(CT_SMALL).SOPInstanceUID]
    assert pending_count(engine) == 0


class FullDiskStore(FilesystemInstanceStore):
    """The filesystem store of a full disk: every write fails."""

    def put(self, key: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")


def test_instance_on_full_disk_answers_a700_and_nothing_is_announced(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "imaging.db"))
    migrate(engine, chain="radcds_imaging.db")
    publisher = RecordingPublisher()
    service = ImagingService(
        engine=engine,
        store=FullDiskStore(tmp_path / "store"),
        outbox=OutboxRelay(engine, publisher, name="imaging-outbox"),
        public_base_url="http://x",
    )
    with DimseServer(_config(), store=store_port(service)) as server:
        assoc = _scu().associate("127.0.0.1", server.address[1], ae_title=OUR_AET)
        status = assoc.send_c_store(pydicom.dcmread(CT_SMALL))
        assoc.release()
    assert status.Status == 0xA700
    assert not publisher.events


def test_same_instance_stored_concurrently_from_several_associations_stays_retrievable(tmp_path):
    # A modality that retries on a new association while the first send is still being stored.
    service, publisher = _service(tmp_path)
    port = store_port(service)
    data = CT_SMALL.read_bytes()
    ds = pydicom.dcmread(CT_SMALL)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(port(data)[0])) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [0x0000] * 6
    assert (
        service.retrieve_instance(study=ds.StudyInstanceUID, series=ds.SeriesInstanceUID, instance=ds.SOPInstanceUID)
        == CT_SMALL.read_bytes()
    )
    assert len(publisher.events) == 1


def test_server_stop_frees_the_port_and_running_reflects_state(tmp_path):
    server = DimseServer(_config(), store=lambda data: (0, "stored"))
    assert not server.running
    server.start()
    port = server.address[1]
    assert server.running
    server.stop()
    assert not server.running
    assoc = _scu().associate("127.0.0.1", port, ae_title=OUR_AET)
    assert not assoc.is_established


def test_invalid_config_values_raise_value_error():
    with pytest.raises(ValueError, match="AE title"):
        _config(ae_title="THIS_AE_TITLE_IS_TOO_LONG")
    with pytest.raises(ValueError, match="AE title"):
        _config(allowed_calling_aets=frozenset({"BAD\\AET"}))
    with pytest.raises(ValueError, match="max_associations"):
        _config(max_associations=0)
    with pytest.raises(ValueError, match="transfer_syntaxes"):
        _config(transfer_syntaxes=("not-a-uid",))


@dataclass
class _Settings:
    ae_title: str = OUR_AET
    dimse_host: str = "0.0.0.0"
    dimse_port: int = 11112
    dimse_allowed_calling_aets: tuple[str, ...] | str = ("CT01", "MR01")
    dimse_max_associations: int = 5
    dimse_network_timeout_s: float = 60.0
    dimse_acse_timeout_s: float = 30.0
    dimse_dimse_timeout_s: float = 30.0
    dimse_transfer_syntaxes: list[str] | None = None


def test_config_from_settings_uses_default_transfer_syntaxes_when_none_given():
    config = dimse_config_from_settings(_Settings())
    assert config.allowed_calling_aets == frozenset({"CT01", "MR01"})
    assert config.max_associations == 5 and config.port == 11112
    assert config.transfer_syntaxes == DEFAULT_TRANSFER_SYNTAXES
    assert dimse_config_from_settings(_Settings(dimse_allowed_calling_aets="CT01, MR01")).allowed_calling_aets == (
        frozenset({"CT01", "MR01"})
    )
    assert dimse_config_from_settings(_Settings(dimse_transfer_syntaxes=[JPEG2000Lossless])).transfer_syntaxes == (
        JPEG2000Lossless,
    )
