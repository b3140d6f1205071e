"""OrderInbox: header checks, AR/AE/AA, duplicates, sink failures (fakes of our ports only)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from radcds_devstack.testing import InMemoryReceivedMessageLog
from radcds_reporting.adapters.hl7v2.ack import AckCode, ErrorCode, HL7MessageError, parse_ack
from radcds_reporting.adapters.hl7v2.inbound import OrderInbox
from radcds_reporting.adapters.hl7v2.mllp import BrokenFrame, FramingProblem
from radcds_reporting.adapters.hl7v2.orders import ParsedOrderMessage

from .conftest import OMI_O23_NEW, ORM_O01_CANCEL, ORM_O01_NEW


class _Sink:
    """A fake OrderSink (our port) that records orders or raises what it is told to."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.orders: list[ParsedOrderMessage] = []
        self.fail = fail

    async def accept(self, message: ParsedOrderMessage) -> None:
        if self.fail is not None:
            raise self.fail
        self.orders.append(message)


def _inbox(sink: _Sink) -> OrderInbox:
    return OrderInbox(sink, log=InMemoryReceivedMessageLog(), clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))


def _answer(inbox: OrderInbox, text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [a.decode() for a in asyncio.run(inbox.handle(data))]


def test_orm_and_omi_are_accepted_with_aa_and_reach_the_sink() -> None:
    sink = _Sink()
    inbox = _inbox(sink)
    assert parse_ack(_answer(inbox, ORM_O01_NEW)[0]).code is AckCode.AA
    assert parse_ack(_answer(inbox, OMI_O23_NEW)[0]).code is AckCode.AA
    assert [m.order.accession_number for m in sink.orders] == ["ACC789", "ACC900"]


def test_duplicate_control_id_is_acknowledged_again_but_processed_once() -> None:
    sink = _Sink()
    inbox = _inbox(sink)
    first, again = _answer(inbox, ORM_O01_NEW), _answer(inbox, ORM_O01_NEW)
    assert parse_ack(first[0]).code is parse_ack(again[0]).code is AckCode.AA
    assert len(sink.orders) == 1


def test_same_control_id_from_another_sender_is_processed() -> None:
    sink = _Sink()
    inbox = _inbox(sink)
    _answer(inbox, ORM_O01_NEW)
    _answer(inbox, ORM_O01_NEW.replace("|RIS|HOSP|", "|RIS2|HOSP|", 1))
    assert len(sink.orders) == 2


def test_unsupported_message_type_gets_ar_200() -> None:
    [ack] = _answer(_inbox(_Sink()), ORM_O01_NEW.replace("ORM^O01", "ADT^A01"))
    parsed = parse_ack(ack)
    assert parsed.code is AckCode.AR and "200" in ack


def test_unsupported_version_gets_ar_203() -> None:
    [ack] = _answer(_inbox(_Sink()), OMI_O23_NEW.replace("|2.5.1", "|2.9"))
    assert parse_ack(ack).code is AckCode.AR and parse_ack(ack).error_code == "203"


def test_missing_control_id_gets_ae_at_msh10() -> None:
    [ack] = _answer(_inbox(_Sink()), OMI_O23_NEW.replace("|OMI0001|", "||"))
    parsed = parse_ack(ack)
    assert parsed.code is AckCode.AE and parsed.error_location == "MSH^1^10^1" and parsed.error_code == "101"


def test_bad_content_gets_ae_and_is_not_remembered_as_accepted() -> None:
    sink = _Sink()
    inbox = _inbox(sink)
    bad = OMI_O23_NEW.replace("CT^Computed Tomography^DCM", "c t")
    [ack] = _answer(inbox, bad)
    assert parse_ack(ack).code is AckCode.AE and parse_ack(ack).error_location == "IPC^1^5^1"
    assert not sink.orders


def test_sink_refusal_gets_ae_with_its_code() -> None:
    unknown = HL7MessageError(ErrorCode.UNKNOWN_KEY_IDENTIFIER, "no such order")
    [ack] = _answer(_inbox(_Sink(fail=unknown)), ORM_O01_CANCEL)
    assert parse_ack(ack).code is AckCode.AE and "204" in ack


def test_sink_crash_gets_ar_so_the_sender_resends() -> None:
    [ack] = _answer(_inbox(_Sink(fail=RuntimeError("database down"))), ORM_O01_NEW)
    assert parse_ack(ack).code is AckCode.AR and "database down" not in ack


def test_block_without_msh_gets_ar_with_empty_msa2() -> None:
    [ack] = _answer(_inbox(_Sink()), b"hello")
    assert parse_ack(ack).code is AckCode.AR and parse_ack(ack).acknowledged_control_id == ""


def test_broken_frame_with_msh_gets_ar_naming_its_control_id() -> None:
    inbox = _inbox(_Sink())
    answers = asyncio.run(inbox.handle_broken(BrokenFrame(FramingProblem.UNTERMINATED, ORM_O01_NEW.encode()[:120])))
    ack = parse_ack(answers[0].decode())
    assert ack.code is AckCode.AR and ack.acknowledged_control_id == "ORM0001"


def test_latin1_message_declaring_8859_1_is_decoded() -> None:
    sink = _Sink()
    text = ORM_O01_NEW.replace("|P|2.3.1", "|P|2.5||||||8859/1").replace("DOE^JANE", "D\xd6E^J\xc9")
    [ack] = _answer(_inbox(sink), text.encode("latin-1"))
    assert parse_ack(ack).code is AckCode.AA
    assert sink.orders[0].order.patient_name is not None and sink.orders[0].order.patient_name.family == "D\xd6E"


def test_unknown_charset_gets_ae_at_msh18() -> None:
    [ack] = _answer(_inbox(_Sink()), ORM_O01_NEW.replace("|P|2.3.1", "|P|2.5||||||KLINGON"))
    assert parse_ack(ack).code is AckCode.AE and parse_ack(ack).error_code == "103"


def _msh(ack: str) -> list[str]:
    return ack.split("\r")[0].split("|")


def test_block_without_msh_is_answered_with_msh9_ack_ack_ack() -> None:
    # HL7 v2.5.1 2.A.47 MSG: MSG.1, MSG.2 and MSG.3 are required; no trigger is known, so MSG.2 is empty.
    [ack] = _answer(_inbox(_Sink()), b"PID|1||123456^^^HOSP^MR")
    assert _msh(ack)[8] == "ACK^^ACK"
    assert _msh(ack)[11] == "2.5.1"


def test_unsupported_version_29_is_answered_in_251_not_echoed() -> None:
    [ack] = _answer(_inbox(_Sink()), OMI_O23_NEW.replace("|P|2.5.1", "|P|2.9"))
    assert parse_ack(ack).code is AckCode.AR and parse_ack(ack).error_code == "203"
    assert _msh(ack)[11] == "2.5.1"
    # The ACK is written as a 2.5.1 ACK: ERR-2/ERR-3 (not the pre-2.5 ERR-1 form).
    err = next(s for s in ack.split("\r") if s.startswith("ERR|")).split("|")
    assert err[2] == "MSH^1^12^1" and err[3].startswith("203^")


def test_supported_version_231_is_still_echoed_in_the_ack() -> None:
    [ack] = _answer(_inbox(_Sink()), ORM_O01_NEW)
    assert _msh(ack)[11] == "2.3.1" and _msh(ack)[8] == "ACK^O01^ACK"
