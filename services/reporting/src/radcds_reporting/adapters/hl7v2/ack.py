"""HL7 v2 acknowledgments (HL7 v2.5.1 chapter 2.9, 2.14.1 ACK, 2.15.8 MSA, 2.15.5 ERR).

*Original mode* (MSH-15 and MSH-16 empty): one application ACK, MSA-1 AA (accepted), AE (content
error: do not resend unchanged) or AR (rejected: unsupported type, version or processing id, or
a receiver problem: may resend). *Enhanced mode* (MSH-15 or MSH-16 present): a commit ACK
(CA/CE/CR) first, sent as MSH-15 asks (AL always, NE never, ER on error, SU on success), then an
application ACK as MSH-16 asks. An absent MSH-15 or MSH-16 in enhanced mode counts as AL.

Every ACK swaps sender and receiver, keeps MSH-12, gets a new MSH-10, echoes the received MSH-10
in MSA-2 and uses the received message's delimiters. Errors carry an ERR segment with the error
location and an HL7 table 0357 code; versions before 2.5 get the older ERR-1 (ELD) form.

:func:`parse_ack` reads ACKs from peers and tolerates common quirks: npm ``simple-hl7`` answers
with MSH-12 ``2.3`` and a bare ``ACK`` in MSH-9, whatever was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from radcds_reporting.adapters.hl7v2.datatypes import format_dtm
from radcds_reporting.adapters.hl7v2.escaping import DEFAULT_DELIMITERS, Delimiters, escape, unescape


class AckCode(StrEnum):
    """MSA-1 acknowledgment codes (HL7 table 0008)."""

    AA = "AA"
    AE = "AE"
    AR = "AR"
    CA = "CA"
    CE = "CE"
    CR = "CR"


class ErrorCode(IntEnum):
    """ERR-3 message error condition codes (HL7 table 0357)."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207


ERROR_TEXT = {
    ErrorCode.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE_ERROR: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCode.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCode.APPLICATION_INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """ERR-2 (ERL, 2.A.27): segment id, segment sequence, field position, repetition, component."""

    segment: str
    field: int = 0
    component: int = 0
    sequence: int = 1
    repetition: int = 1

    def __str__(self) -> str:
        parts = [self.segment, str(self.sequence)]
        if self.field:
            parts += [str(self.field), str(self.repetition)]
            if self.component:
                parts.append(str(self.component))
        return "^".join(parts)

    @property
    def label(self) -> str:
        """Readable form such as ``PID-3.1``."""
        text = f"{self.segment}-{self.field}" if self.field else self.segment
        return f"{text}.{self.component}" if self.component else text


class HL7MessageError(Exception):
    """A received message cannot be processed; says where (ERR-2), why (ERR-3) and how to answer.

    ``ack_code`` is AE for content errors (the sender must not resend unchanged) and AR for
    messages refused as a whole (unsupported type, version, processing id; receiver problems).
    The message text names fields only, never their values, so it is safe to log and to echo.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        location: ErrorLocation | None = None,
        ack_code: AckCode = AckCode.AE,
    ) -> None:
        where = f"{location.label}: " if location else ""
        super().__init__(f"{where}{message}")
        self.code = code
        self.location = location
        self.ack_code = ack_code
        self.text = f"{where}{message}"


@dataclass(frozen=True, slots=True)
class ReceivedHeader:
    """MSH of a received message, read leniently so that even a broken message can be answered.

    Field values are kept as received (still escaped, in the sender's delimiters).
    """

    delimiters: Delimiters
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    character_set: str

    @property
    def message_code(self) -> str:
        """MSH-9.1, e.g. ``ORM``."""
        return self.message_type.split(self.delimiters.component)[0]

    @property
    def trigger_event(self) -> str:
        """MSH-9.2, e.g. ``O01`` (empty when absent)."""
        parts = self.message_type.split(self.delimiters.component)
        return parts[1] if len(parts) > 1 else ""

    @property
    def enhanced_mode(self) -> bool:
        """True when MSH-15 or MSH-16 asks for enhanced acknowledgment (2.9.3)."""
        return bool(self.accept_ack_type or self.application_ack_type)

    @property
    def sender_key(self) -> str:
        """MSH-3 and MSH-4, the scope in which MSH-10 is unique."""
        return f"{self.sending_application}|{self.sending_facility}"


def parse_msh(text: str) -> ReceivedHeader:
    """Read the MSH of ``text``; raises :class:`HL7MessageError` (AR) when there is no usable MSH."""
    first = text.lstrip("\r\n").split("\r", 1)[0].split("\n", 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        raise HL7MessageError(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            "the message does not start with an MSH segment",
            location=ErrorLocation("MSH"),
            ack_code=AckCode.AR,
        )
    try:
        d = Delimiters.from_msh(first)
    except ValueError as exc:
        raise HL7MessageError(
            ErrorCode.DATA_TYPE_ERROR, "bad delimiters in MSH-1/MSH-2", location=ErrorLocation("MSH", 2)
        ) from exc
    if len({d.field, d.component, d.repetition, d.escape, d.subcomponent}) != 5:
        raise HL7MessageError(
            ErrorCode.DATA_TYPE_ERROR, "MSH-2 delimiters are not distinct", location=ErrorLocation("MSH", 2)
        )
    if not all(_usable_delimiter(c) for c in d.field + d.encoding_characters):
        # A letter or digit as delimiter splits segment ids and codes (MSH, MSA, AE), so no readable
        # ACK could be written in it; whitespace and control characters are segment or MLLP framing.
        raise HL7MessageError(
            ErrorCode.DATA_TYPE_ERROR,
            "MSH-1/MSH-2 delimiters must be ASCII punctuation",
            location=ErrorLocation("MSH", 2),
        )
    # fields[i] is MSH-(i+1): MSH-1 is the field separator itself.
    fields = ["MSH", d.field, *first.split(d.field)[1:]]
    fields += [""] * (19 - len(fields))
    return ReceivedHeader(
        delimiters=d,
        sending_application=fields[3],
        sending_facility=fields[4],
        receiving_application=fields[5],
        receiving_facility=fields[6],
        message_type=fields[9],
        control_id=unescape(fields[10], d).strip(),
        processing_id=fields[11],
        version=fields[12].split(d.component)[0].strip(),
        accept_ack_type=fields[15].strip().upper(),
        application_ack_type=fields[16].strip().upper(),
        character_set=fields[18].split(d.repetition)[0].strip(),
    )


def _usable_delimiter(char: str) -> bool:
    """A delimiter radcds can read and answer in (HL7 v2.5.1 2.5.4 suggests ``|^~\\&``): ASCII punctuation.

    MSH is read before MSH-18 is known (as latin-1) and the ACK is written in the MSH-18 charset, so a
    non-ASCII delimiter would come back as other bytes than the sender used.
    """
    return char.isascii() and char.isprintable() and not char.isspace() and not char.isalnum()


def _err_segment(error: HL7MessageError, version: str, d: Delimiters) -> str:
    code = error.code
    text = ERROR_TEXT[code]
    if _version_tuple(version) < (2, 5):
        # ERR-1 ELD (2.A.26): segment^sequence^field^code&text&HL70357
        loc = error.location
        eld = [
            loc.segment if loc else "",
            str(loc.sequence) if loc else "",
            str(loc.field) if loc and loc.field else "",
        ]
        eld.append(d.subcomponent.join((str(int(code)), escape(text, d), "HL70357")))
        return "ERR" + d.field + d.component.join(eld)
    location = str(error.location) if error.location else ""
    location = location.replace("^", d.component)
    cwe = d.component.join((str(int(code)), escape(text, d), "HL70357"))
    fields = ["ERR", "", location, cwe, "E", "", "", "", escape(error.text, d)]
    return d.field.join(fields)


#: MSH-12 versions an ACK may echo (2.14.1: the ACK keeps the version of the message it answers):
#: the versions whose ACK radcds can write (ERR-1 before 2.5, ERR-2..8 from 2.5). Any other value,
#: e.g. ``2.9`` or garbage, is answered in the version radcds speaks, so the peer can parse it.
ACK_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
#: The HL7 version radcds speaks (MSH-12 of what it originates).
OWN_VERSION = "2.5.1"


def ack_version(received: str) -> str:
    """MSH-12 of an ACK answering a message with MSH-12 ``received``: echoed when radcds speaks it, else 2.5.1."""
    return received if received in ACK_VERSIONS else OWN_VERSION


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (2, 5, 1)


def build_ack(
    header: ReceivedHeader,
    *,
    code: AckCode,
    control_id: str,
    created_at: datetime,
    error: HL7MessageError | None = None,
) -> str:
    """One ACK (2.14.1) answering ``header``: sender and receiver swapped, new MSH-10.

    MSH-12 echoes the received version when it is one of :data:`ACK_VERSIONS`, else 2.5.1 (an
    AR 203 to MSH-12 ``2.9`` is itself a 2.5.1 message). A block without a usable MSH is answered
    with MSH-9 ``ACK^^ACK`` and an empty MSA-2: there is no MSH-10 to echo (docs/hl7v2.md).
    """
    d = header.delimiters
    version = ack_version(header.version)
    msh = [
        "MSH",
        d.encoding_characters,
        header.receiving_application,
        header.receiving_facility,
        header.sending_application,
        header.sending_facility,
        format_dtm(created_at),
        "",
        # MSH-9 MSG (2.A.47): MSG.1, MSG.2 and MSG.3 are all required in v2.5.1; without a
        # known trigger event MSG.2 stays empty but present: ``ACK^^ACK``.
        d.component.join(("ACK", escape(header.trigger_event, d), "ACK")),
        escape(control_id, d),
        header.processing_id or "P",
        version,
    ]
    msa = ["MSA", code.value, escape(header.control_id, d)]
    if error is not None:
        msa.append(escape(error.text, d)[:80])
    segments = [d.field.join(msh), d.field.join(msa)]
    if error is not None:
        segments.append(_err_segment(error, version, d))
    return "\r".join(segments)


@dataclass(frozen=True, slots=True)
class ProcessingOutcome:
    """What the receiver did with a message: accepted into safe keeping or not, and the application verdict."""

    code: AckCode
    accepted: bool = True
    error: HL7MessageError | None = None

    @classmethod
    def success(cls) -> ProcessingOutcome:
        """Accepted and processed."""
        return cls(AckCode.AA)

    @classmethod
    def refused(cls, error: HL7MessageError) -> ProcessingOutcome:
        """Not accepted at all (unsupported, unreadable): a commit CR/CE in enhanced mode."""
        return cls(error.ack_code, accepted=False, error=error)

    @classmethod
    def failed(cls, error: HL7MessageError) -> ProcessingOutcome:
        """Accepted (committed) but the application found an error: AE or AR."""
        return cls(error.ack_code, accepted=True, error=error)


def _wants(ack_type: str, *, ok: bool) -> bool:
    if ack_type in ("", "AL"):
        return True
    if ack_type == "NE":
        return False
    if ack_type == "ER":
        return not ok
    if ack_type == "SU":
        return ok
    return True


def acknowledgments(
    header: ReceivedHeader,
    outcome: ProcessingOutcome,
    *,
    new_control_id: str,
    created_at: datetime,
) -> list[str]:
    """The ACKs to send back for ``outcome``, in order (2.9.2 original mode, 2.9.3 enhanced mode).

    In enhanced mode the commit ACK's MSH-10 is ``new_control_id`` + ``C`` and the application
    ACK's is ``new_control_id`` + ``A``, so both stay unique.
    """
    if not header.enhanced_mode:
        return [
            build_ack(header, code=outcome.code, control_id=new_control_id, created_at=created_at, error=outcome.error)
        ]
    acks: list[str] = []
    if not outcome.accepted:
        commit = AckCode.CR if outcome.code is AckCode.AR else AckCode.CE
        if _wants(header.accept_ack_type, ok=False):
            acks.append(
                build_ack(
                    header, code=commit, control_id=new_control_id + "C", created_at=created_at, error=outcome.error
                )
            )
        return acks
    if _wants(header.accept_ack_type, ok=True):
        acks.append(build_ack(header, code=AckCode.CA, control_id=new_control_id + "C", created_at=created_at))
    ok = outcome.code is AckCode.AA
    if _wants(header.application_ack_type, ok=ok):
        acks.append(
            build_ack(
                header, code=outcome.code, control_id=new_control_id + "A", created_at=created_at, error=outcome.error
            )
        )
    return acks


@dataclass(frozen=True, slots=True)
class ReceivedAck:
    """An acknowledgment a peer sent us."""

    code: AckCode
    acknowledged_control_id: str
    text: str = ""
    error_code: str = ""
    error_location: str = ""

    @property
    def is_commit(self) -> bool:
        """True for an enhanced-mode commit ACK (CA/CE/CR)."""
        return self.code in (AckCode.CA, AckCode.CE, AckCode.CR)


def parse_ack(text: str) -> ReceivedAck:
    """Read an ACK leniently (any MSH-9 and MSH-12, LF or CR between segments); ``ValueError`` without MSA."""
    d = DEFAULT_DELIMITERS
    segments = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s.strip()]
    if segments and segments[0].startswith("MSH") and len(segments[0]) >= 8:
        try:
            d = Delimiters.from_msh(segments[0])
        except ValueError:
            d = DEFAULT_DELIMITERS
    msa = next((s for s in segments if s.startswith("MSA" + d.field)), None)
    if msa is None:
        raise ValueError("no MSA segment in the acknowledgment")
    fields = [*msa.split(d.field), "", "", ""]
    try:
        code = AckCode(fields[1].strip().upper())
    except ValueError as exc:
        raise ValueError("MSA-1 is not an acknowledgment code") from exc
    err = next((s for s in segments if s.startswith("ERR" + d.field)), None)
    error_code = error_location = ""
    if err is not None:
        ef = err.split(d.field) + [""] * 4
        error_location = ef[2] or ef[1].split(d.component)[0]
        error_code = ef[3].split(d.component)[0]
        if not error_code and ef[1]:
            eld = ef[1].split(d.component) + [""] * 4
            error_code = eld[3].split(d.subcomponent)[0]
    return ReceivedAck(
        code=code,
        acknowledged_control_id=unescape(fields[2], d).strip(),
        text=unescape(fields[3], d),
        error_code=error_code,
        error_location=error_location,
    )
