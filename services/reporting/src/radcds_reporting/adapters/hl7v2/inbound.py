"""Receiving HL7 v2 messages: decoding, header checks, duplicate detection, ACKs (HL7 v2.5.1 2.9, 2.10).

:class:`OrderInbox` is the :class:`~radcds_reporting.adapters.hl7v2.mllp.MLLPApplication` for orders: it
decodes each block in the charset MSH-18 declares, refuses unsupported message types, versions
and processing ids with AR, answers bad content with AE and an ERR segment, hands good orders to
an :class:`OrderSink` and answers AA. A repeated MSH-10 from the same sender (MSH-3/MSH-4) that
was already accepted is acknowledged again without being processed twice
(:class:`ReceivedMessageLog`).
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from radcds_reporting.adapters.hl7v2.ack import (
    AckCode,
    ErrorCode,
    ErrorLocation,
    HL7MessageError,
    ProcessingOutcome,
    ReceivedHeader,
    acknowledgments,
    parse_msh,
)
from radcds_reporting.adapters.hl7v2.escaping import DEFAULT_DELIMITERS
from radcds_reporting.adapters.hl7v2.mllp import BrokenFrame
from radcds_reporting.adapters.hl7v2.orders import (
    SUPPORTED_ORDER_MESSAGES,
    ParsedOrderMessage,
    normalise_segment_separators,
    parse_order_message,
)

logger = logging.getLogger(__name__)

#: MSH-18 character sets (HL7 table 0211) radcds reads, as Python codecs. All are ASCII-compatible,
#: so MSH itself can be read before the charset is known.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859-2",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
}
#: HL7 versions whose ORM^O01/OMI^O23 radcds reads (MSH-12).
DEFAULT_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
#: MSH-11 processing ids accepted (table 0103: P production, T training, D debugging).
DEFAULT_PROCESSING_IDS = frozenset({"P", "T", "D"})


class ReceivedMessageLog(Protocol):
    """Remembers which messages were accepted, keyed by sender (MSH-3/MSH-4) and MSH-10."""

    def was_accepted(self, *, sender: str, control_id: str) -> bool:
        """True when this sender's message ``control_id`` was already accepted."""

    def record_accepted(self, *, sender: str, control_id: str) -> None:
        """Remember that the message was accepted (called after the sink has committed it)."""


class OrderSink(Protocol):
    """Where accepted orders go (the reporting service stores a ServiceRequest and publishes an event).

    Raise :class:`HL7MessageError` for an order the application refuses (e.g. a cancel of an
    unknown order: code 204, AE); any other exception is answered AR (receiver problem, resend).
    """

    async def accept(self, message: ParsedOrderMessage) -> None:
        """Store the order; return only once it is safely kept."""


#: The header an answer uses when the received bytes hold no readable MSH (MSA-2 stays empty).
_UNKNOWN_SENDER = ReceivedHeader(
    delimiters=DEFAULT_DELIMITERS,
    sending_application="",
    sending_facility="",
    receiving_application="",
    receiving_facility="",
    message_type="",
    control_id="",
    processing_id="P",
    version="2.5.1",
    accept_ack_type="",
    application_ack_type="",
    character_set="",
)


def new_control_id() -> str:
    """A fresh MSH-10 for a message radcds originates (19 hex characters, leaving room for a suffix)."""
    return uuid.uuid4().hex[:19]


def _header_from_bytes(data: bytes) -> ReceivedHeader:
    """Read MSH from raw bytes; latin-1 maps every byte, and MSH's own fields are ASCII in practice."""
    return parse_msh(data.decode("latin-1"))


def decode_message(data: bytes, header: ReceivedHeader, *, default_codec: str) -> str:
    """Decode ``data`` in the MSH-18 charset (``default_codec`` when MSH-18 is empty).

    Raises :class:`HL7MessageError`: an unknown charset is AE 103 at MSH-18, bytes that are not
    valid in the declared charset are AE 102 at MSH-18.
    """
    declared = header.character_set.upper()
    codec = CHARSETS.get(declared) if declared else default_codec
    if codec is None:
        raise HL7MessageError(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            "unsupported character set (table 0211)",
            location=ErrorLocation("MSH", 18),
        )
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise HL7MessageError(
            ErrorCode.DATA_TYPE_ERROR,
            f"bytes are not valid in the declared character set ({declared or codec})",
            location=ErrorLocation("MSH", 18),
        ) from exc


def _ack_codec(header: ReceivedHeader, default_codec: str) -> str:
    return CHARSETS.get(header.character_set.upper(), default_codec) if header.character_set else default_codec


class HL7Inbox(ABC):
    """The protocol half of receiving any HL7 message; subclasses implement :meth:`process`.

    ``message_types`` lists the (MSH-9.1, MSH-9.2) pairs accepted; others are answered AR 200
    (unsupported message type) or AR 201 (a known message code with an unsupported event).
    """

    def __init__(
        self,
        *,
        message_types: Iterable[tuple[str, str]],
        log: ReceivedMessageLog,
        versions: frozenset[str] = DEFAULT_VERSIONS,
        processing_ids: frozenset[str] = DEFAULT_PROCESSING_IDS,
        default_codec: str = "utf-8",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        control_ids: Callable[[], str] = new_control_id,
    ) -> None:
        self._message_types = frozenset(message_types)
        self._log = log
        self._versions = versions
        self._processing_ids = processing_ids
        self._default_codec = default_codec
        self._clock = clock
        self._control_ids = control_ids

    @abstractmethod
    async def process(self, text: str, header: ReceivedHeader) -> ProcessingOutcome:
        """Application processing of an accepted, decoded message (each inbox, e.g. :class:`OrderInbox`)."""

    def _check_header(self, header: ReceivedHeader) -> None:
        if not header.message_type:
            raise HL7MessageError(
                ErrorCode.REQUIRED_FIELD_MISSING, "message type is missing", location=ErrorLocation("MSH", 9)
            )
        if not header.control_id:
            raise HL7MessageError(
                ErrorCode.REQUIRED_FIELD_MISSING, "message control id is missing", location=ErrorLocation("MSH", 10)
            )
        if not header.processing_id:
            raise HL7MessageError(
                ErrorCode.REQUIRED_FIELD_MISSING, "processing id is missing", location=ErrorLocation("MSH", 11)
            )
        if not header.version:
            raise HL7MessageError(
                ErrorCode.REQUIRED_FIELD_MISSING, "version id is missing", location=ErrorLocation("MSH", 12)
            )
        kind = (header.message_code, header.trigger_event)
        if kind not in self._message_types:
            known_code = any(code == header.message_code for code, _ in self._message_types)
            raise HL7MessageError(
                ErrorCode.UNSUPPORTED_EVENT_CODE if known_code else ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                "unsupported message type",
                location=ErrorLocation("MSH", 9),
                ack_code=AckCode.AR,
            )
        if header.version not in self._versions:
            raise HL7MessageError(
                ErrorCode.UNSUPPORTED_VERSION_ID,
                "unsupported HL7 version",
                location=ErrorLocation("MSH", 12),
                ack_code=AckCode.AR,
            )
        if header.processing_id.split(header.delimiters.component)[0] not in self._processing_ids:
            raise HL7MessageError(
                ErrorCode.UNSUPPORTED_PROCESSING_ID,
                "unsupported processing id",
                location=ErrorLocation("MSH", 11),
                ack_code=AckCode.AR,
            )

    def _answer(self, header: ReceivedHeader, outcome: ProcessingOutcome) -> list[bytes]:
        codec = _ack_codec(header, self._default_codec)
        acks = acknowledgments(header, outcome, new_control_id=self._control_ids(), created_at=self._clock())
        logger.info(
            "hl7 message acknowledged",
            extra={
                "message_type": f"{header.message_code}^{header.trigger_event}",
                "control_id": header.control_id,
                "ack_code": outcome.code.value,
                "error_code": int(outcome.error.code) if outcome.error else 0,
                "error_location": outcome.error.location.label if outcome.error and outcome.error.location else "",
            },
        )
        return [ack.encode(codec, errors="replace") for ack in acks]

    async def handle(self, data: bytes) -> list[bytes]:
        """Answer one block (see :class:`~radcds_reporting.adapters.hl7v2.mllp.MLLPApplication`)."""
        try:
            header = _header_from_bytes(data.lstrip(b"\r\n"))
        except HL7MessageError as error:
            logger.warning("hl7 block without an MSH segment")
            return self._answer(_UNKNOWN_SENDER, ProcessingOutcome.refused(error))
        try:
            self._check_header(header)
            text = decode_message(data, header, default_codec=self._default_codec)
        except HL7MessageError as error:
            return self._answer(header, ProcessingOutcome.refused(error))
        if self._log.was_accepted(sender=header.sender_key, control_id=header.control_id):
            logger.info("hl7 duplicate message acknowledged again", extra={"control_id": header.control_id})
            return self._answer(header, ProcessingOutcome.success())
        try:
            outcome = await self.process(normalise_segment_separators(text), header)
        except HL7MessageError as error:
            outcome = ProcessingOutcome.failed(error)
        except Exception:
            logger.exception("hl7 message processing failed", extra={"control_id": header.control_id})
            internal = HL7MessageError(
                ErrorCode.APPLICATION_INTERNAL_ERROR, "the receiver could not process the message", ack_code=AckCode.AR
            )
            outcome = ProcessingOutcome.refused(internal)
        if outcome.code is AckCode.AA:
            self._log.record_accepted(sender=header.sender_key, control_id=header.control_id)
        return self._answer(header, outcome)

    async def handle_broken(self, broken: BrokenFrame) -> list[bytes]:
        """Answer a broken block with AR (a transport problem: the sender may resend) when it holds an MSH."""
        start = broken.data.find(b"MSH")
        try:
            header = _header_from_bytes(broken.data[start:]) if start >= 0 else _UNKNOWN_SENDER
        except HL7MessageError:
            header = _UNKNOWN_SENDER
        error = HL7MessageError(
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
            f"MLLP framing error ({broken.problem.value}); resend the message in one block",
            ack_code=AckCode.AR,
        )
        return self._answer(header, ProcessingOutcome.refused(error))


class OrderInbox(HL7Inbox):
    """Receives ORM^O01 and OMI^O23 and hands each order to an :class:`OrderSink`."""

    def __init__(
        self,
        sink: OrderSink,
        *,
        log: ReceivedMessageLog,
        local_timezone: tzinfo = UTC,
        **options: object,
    ) -> None:
        super().__init__(message_types=SUPPORTED_ORDER_MESSAGES, log=log, **options)  # type: ignore[arg-type]
        self._sink = sink
        self._local_timezone = local_timezone

    async def process(self, text: str, header: ReceivedHeader) -> ProcessingOutcome:
        """Parse the order and hand it to the sink; content errors raise :class:`HL7MessageError` (AE)."""
        parsed = parse_order_message(text, local_timezone=self._local_timezone)
        await self._sink.accept(parsed)
        logger.info("hl7 order accepted", extra={"control_id": header.control_id, **parsed.order.log_fields()})
        return ProcessingOutcome.success()
