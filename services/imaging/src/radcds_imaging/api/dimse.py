"""DICOM DIMSE entrypoint of the imaging service: a Verification and Storage SCP (PS3.4 Annex A and B).

Modalities and PACS that do not speak DICOMweb send instances here with C-STORE (PS3.7 9.1.1). This module
only translates: it accepts or rejects associations (PS3.8 7.1), re-encodes each received data set as a
Part 10 file (PS3.10 7.1) and hands it to a store port; storing, de-duplication and announcing the instance
are :class:`~radcds_imaging.handlers.ImagingService`'s job, exactly as for STOW-RS.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy.exc import SQLAlchemyError

from radcds_imaging.adapters.part10 import FAILURE_OUT_OF_RESOURCES

if TYPE_CHECKING:
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

    from radcds_imaging.handlers import ImagingService

log = logging.getLogger(__name__)

#: C-STORE response status codes (PS3.4 B.2.3, PS3.7 Annex C).
STATUS_SUCCESS = 0x0000
#: General "Processing failure" (PS3.7 C.4.2): the SCP itself failed, not the data set.
STATUS_PROCESSING_FAILURE = 0x0110

#: A store port: Part 10 bytes in, (DICOM status, message) out.
StorePort = Callable[[bytes], tuple[int, str]]

#: Default transfer syntaxes accepted for storage (PS3.5 Annex A / PS3.6 Table A-1).
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (
    # pynetdicom accepts, per presentation context, the first of OUR syntaxes that the sender proposed.
    # Lossless compressed syntaxes come first so data already compressed losslessly is stored as sent
    # (the sender need not decompress); then uncompressed; lossy syntaxes last, so uncompressed data
    # offered with a lossy option is never made lossy.
    RLELossless,  # 1.2.840.10008.1.2.5
    JPEGLosslessSV1,  # 1.2.840.10008.1.2.4.70
    JPEGLossless,  # 1.2.840.10008.1.2.4.57
    JPEGLSLossless,  # 1.2.840.10008.1.2.4.80
    JPEG2000Lossless,  # 1.2.840.10008.1.2.4.90
    ExplicitVRLittleEndian,  # 1.2.840.10008.1.2.1
    ImplicitVRLittleEndian,  # 1.2.840.10008.1.2 (the DICOM default, PS3.5 10.1)
    DeflatedExplicitVRLittleEndian,  # 1.2.840.10008.1.2.1.99
    ExplicitVRBigEndian,  # 1.2.840.10008.1.2.2 (retired, still sent by older modalities)
    JPEGLSNearLossless,  # 1.2.840.10008.1.2.4.81
    JPEG2000,  # 1.2.840.10008.1.2.4.91
    JPEGBaseline8Bit,  # 1.2.840.10008.1.2.4.50
    JPEGExtended12Bit,  # 1.2.840.10008.1.2.4.51
)

#: Every Storage SOP Class pynetdicom knows (PS3.4 B.5).
DEFAULT_STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)

#: Transfer syntaxes accepted for Verification (C-ECHO carries no data set).
_VERIFICATION_TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

# AE title: 1 to 16 characters of the default repertoire, no backslash or control characters (PS3.5 6.2, AE).
_AE_TITLE = re.compile(r"^[ -\[\]-~]{1,16}$")
# UID: dot-separated numeric components without leading zeros, at most 64 characters (PS3.5 9.1).
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _check_ae_title(value: str, what: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError(f"{what} {value!r} is not a valid AE title (1-16 printable characters, no backslash)")
    return value.strip()


def _check_uids(values: Sequence[str], what: str) -> None:
    if not values:
        raise ValueError(f"{what} must not be empty")
    bad = [v for v in values if len(v) > 64 or not _UID.match(v)]
    if bad:
        raise ValueError(f"{what}: not valid UIDs: {', '.join(bad)}")


@dataclass(frozen=True)
class DimseConfig:
    """How the DIMSE SCP presents itself and whom it lets in.

    ``port`` 0 binds an ephemeral port (tests); :attr:`DimseServer.address` reports the bound one.
    An empty ``allowed_calling_aets`` accepts any calling AE title.
    """

    ae_title: str
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aets: frozenset[str] = frozenset()
    max_associations: int = 10
    network_timeout_s: float = 60.0
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 30.0
    storage_sop_classes: tuple[str, ...] = DEFAULT_STORAGE_SOP_CLASSES
    transfer_syntaxes: tuple[str, ...] = DEFAULT_TRANSFER_SYNTAXES
    #: On stop, how long in-flight associations may finish before they are aborted.
    stop_grace_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", _check_ae_title(self.ae_title, "ae_title"))
        object.__setattr__(
            self,
            "allowed_calling_aets",
            frozenset(_check_ae_title(a, "allowed calling AE title") for a in self.allowed_calling_aets),
        )
        object.__setattr__(self, "storage_sop_classes", tuple(self.storage_sop_classes))
        object.__setattr__(self, "transfer_syntaxes", tuple(self.transfer_syntaxes))
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0-65535")
        if self.max_associations < 1:
            raise ValueError("max_associations must be at least 1")
        for name in ("network_timeout_s", "acse_timeout_s", "dimse_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.stop_grace_s < 0:
            raise ValueError("stop_grace_s must not be negative")
        _check_uids(self.storage_sop_classes, "storage_sop_classes")
        _check_uids(self.transfer_syntaxes, "transfer_syntaxes")


class DimseSettings(Protocol):
    """The settings :func:`dimse_config_from_settings` reads (fields of ``ImagingSettings``)."""

    @property
    def ae_title(self) -> str: ...
    @property
    def dimse_host(self) -> str: ...
    @property
    def dimse_port(self) -> int: ...
    @property
    def dimse_allowed_calling_aets(self) -> Collection[str]: ...
    @property
    def dimse_max_associations(self) -> int: ...
    @property
    def dimse_network_timeout_s(self) -> float: ...
    @property
    def dimse_acse_timeout_s(self) -> float: ...
    @property
    def dimse_dimse_timeout_s(self) -> float: ...
    @property
    def dimse_transfer_syntaxes(self) -> Sequence[str] | None: ...


def dimse_config_from_settings(settings: DimseSettings) -> DimseConfig:
    """The DIMSE configuration from the imaging settings (``RADCDS_IMAGING_DIMSE_*``)."""
    callers = settings.dimse_allowed_calling_aets
    if isinstance(callers, str):  # "CT01,MR01" rather than a list: never iterate it character by character
        callers = [c for c in callers.split(",") if c.strip()]
    return DimseConfig(
        ae_title=settings.ae_title,
        host=settings.dimse_host,
        port=settings.dimse_port,
        allowed_calling_aets=frozenset(callers),
        max_associations=settings.dimse_max_associations,
        network_timeout_s=settings.dimse_network_timeout_s,
        acse_timeout_s=settings.dimse_acse_timeout_s,
        dimse_timeout_s=settings.dimse_dimse_timeout_s,
        transfer_syntaxes=tuple(settings.dimse_transfer_syntaxes or DEFAULT_TRANSFER_SYNTAXES),
    )


def store_port(service: ImagingService) -> StorePort:
    """Adapt :meth:`ImagingService.store_instances` to the C-STORE store port.

    A newly stored instance and one already held (same SOP Instance UID) both answer 0x0000: the
    sender's goal, the instance being here, is met, and a retrying modality must not see a failure.
    A refused instance answers its failure reason (0xA700, 0xA900, 0xC000, 0xC122); a file store or
    database that fails underneath answers 0xA700 (Refused: Out of Resources), so the sender retries later.
    """

    def store(data: bytes) -> tuple[int, str]:
        try:
            outcome = service.store_instances(parts=[data])
        except (OSError, SQLAlchemyError) as exc:
            # The file store or the database is unavailable (disk full, I/O error, database down): transient.
            log.error("instance not stored", extra={"error_class": type(exc).__name__})
            return FAILURE_OUT_OF_RESOURCES, "storage unavailable"
        if outcome.failed:
            failure = outcome.failed[0]
            return failure.reason, failure.message
        if outcome.stored:
            return STATUS_SUCCESS, "already stored" if outcome.stored[0].duplicate else "stored"
        return STATUS_PROCESSING_FAILURE, "nothing stored"

    return store


def _error_comment(message: str) -> str:
    """An Error Comment (0000,0902) is LO: at most 64 characters, no backslash or control characters."""
    return re.sub(r"[^ -\[\]-~]", " ", message)[:64].strip()


class DimseServer:
    """A Verification SCP and Storage SCP on one AE title, started and stopped with the service."""

    def __init__(self, config: DimseConfig, *, store: StorePort) -> None:
        self._config = config
        self._store = store
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()

    @property
    def config(self) -> DimseConfig:
        """The configuration this server was built with."""
        return self._config

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when the configured one is 0."""
        if self._server is None:
            raise RuntimeError("the DIMSE server is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def _build_ae(self) -> AE:
        c = self._config
        ae = AE(ae_title=c.ae_title)
        ae.maximum_associations = c.max_associations
        ae.network_timeout = c.network_timeout_s
        ae.acse_timeout = c.acse_timeout_s
        ae.dimse_timeout = c.dimse_timeout_s
        # A-ASSOCIATE-RJ rejected-permanent, service-user: "called AE title not recognised" (PS3.8 9.3.4).
        ae.require_called_aet = True
        # ... and "calling AE title not recognised" for a caller not on the allowlist (empty: anyone).
        ae.require_calling_aet = sorted(c.allowed_calling_aets)
        ae.add_supported_context(Verification, _VERIFICATION_TRANSFER_SYNTAXES)
        for sop_class in c.storage_sop_classes:
            ae.add_supported_context(sop_class, list(c.transfer_syntaxes))
        return ae

    def start(self) -> None:
        """Bind the port and serve associations on background threads."""
        with self._lock:
            if self._server is not None:
                return
            ae = self._build_ae()
            self._server = ae.start_server(
                (self._config.host, self._config.port),
                block=False,
                evt_handlers=[
                    (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_REJECTED, self._on_rejected),
                ],
            )
        host, port = self.address
        log.info("DIMSE SCP listening", extra={"ae_title": self._config.ae_title, "host": host, "port": port})

    def stop(self) -> None:
        """Stop accepting, let in-flight associations finish for ``stop_grace_s``, then abort the rest."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        # Close the listening socket first so nothing new arrives while we wait.
        server.shutdown()
        active = server.active_associations
        deadline = time.monotonic() + self._config.stop_grace_s
        for assoc in active:
            assoc.join(max(0.0, deadline - time.monotonic()))
            if assoc.is_alive():
                assoc.abort()
        log.info("DIMSE SCP stopped", extra={"ae_title": self._config.ae_title})

    def __enter__(self) -> DimseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Event handlers: they run on the association's thread and must never raise.

    def _on_echo(self, event: Event) -> int:
        log.info("C-ECHO", extra={"calling_ae": event.assoc.requestor.ae_title, "status": "0x0000"})
        return STATUS_SUCCESS

    def _on_rejected(self, event: Event) -> None:
        log.warning(
            "association rejected",
            extra={
                "calling_ae": event.assoc.requestor.ae_title,
                "called_ae": event.assoc.acceptor.ae_title,
                "peer": event.assoc.requestor.address,
            },
        )

    def _on_store(self, event: Event) -> Dataset:
        """C-STORE (PS3.7 9.1.1): re-encode as Part 10 and hand to the store port; map its answer to a status."""
        request: Any = event.request
        sop_class = str(request.AffectedSOPClassUID or "")
        calling_ae = event.assoc.requestor.ae_title
        try:
            status, message = self._store(event.encoded_dataset(include_meta=True))
        except Exception as exc:
            # Only the class: an exception's text may carry data set values.
            log.error(
                "C-STORE processing failed",
                extra={"sop_class_uid": sop_class, "calling_ae": calling_ae, "error_class": type(exc).__name__},
            )
            status, message = STATUS_PROCESSING_FAILURE, "processing failure"
        log.info(
            "C-STORE",
            extra={"sop_class_uid": sop_class, "calling_ae": calling_ae, "status": f"0x{status:04X}"},
        )
        rsp = Dataset()
        rsp.Status = status
        if status != STATUS_SUCCESS and message:
            rsp.ErrorComment = _error_comment(message)
        return rsp
