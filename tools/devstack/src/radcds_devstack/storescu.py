"""Sending a DICOM object to a PACS with C-STORE (PS3.4 Annex B Storage Service Class; PS3.7 9.1.1), as an SCU.

Used to hand the SR of an analysis (TID 1500) to a PACS such as Orthanc. pynetdicom negotiates
the object's SOP Class with Explicit and Implicit VR Little Endian.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

#: C-STORE success status (PS3.7 Annex C) and the warning statuses that still mean "stored" (PS3.4 B.2.3).
SUCCESS = 0x0000
STORED_WITH_WARNING = frozenset({0xB000, 0xB006, 0xB007})


class CStoreFailed(RuntimeError):
    """The association was refused or the C-STORE answered a failure status."""


def c_store(
    dataset: Dataset, *, host: str, port: int, called_aet: str, calling_aet: str = "RADCDS", timeout_s: float = 30.0
) -> int:
    """Send ``dataset`` and return the C-STORE status (0x0000 or a warning); raise :class:`CStoreFailed` otherwise."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(dataset.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        raise CStoreFailed(f"association with {called_aet}@{host}:{port} not established")
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    code = int(status.Status) if status and "Status" in status else -1
    if code != SUCCESS and code not in STORED_WITH_WARNING:
        raise CStoreFailed(f"C-STORE to {called_aet} answered status 0x{code & 0xFFFF:04X}")
    return code
