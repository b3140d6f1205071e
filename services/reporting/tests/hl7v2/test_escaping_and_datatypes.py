"""Escaping (HL7 v2.5.1 2.7) and data type formatting (2.A)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import hl7
import pytest

from radcds_reporting.adapters.hl7v2.datatypes import format_dtm, format_nm, parse_dtm
from radcds_reporting.adapters.hl7v2.escaping import Delimiters, escape, unescape


def test_escape_of_each_delimiter_returns_its_escape_sequence() -> None:
    assert escape("a|b^c~d\\e&f") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"


def test_escape_of_line_breaks_returns_hex_data_so_no_segment_ends() -> None:
    assert escape("one\rtwo\nthree") == "one\\X0D\\two\\X0A\\three"
    assert "\r" not in escape("x\r\n")


def test_unescape_of_escaped_text_returns_the_original() -> None:
    text = "ratio | 0.58 ^ limit ~ 0.5 \\ path & more\r\n"
    assert unescape(escape(text)) == text


def test_python_hl7_unescape_of_our_escaping_returns_the_original() -> None:
    text = "ratio | 0.58 ^ limit ~ 0.5 \\ path & more"
    message = hl7.parse("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5.1")
    assert message.unescape(escape(text)) == text


def test_escape_with_other_delimiters_uses_the_message_escape_character() -> None:
    d = Delimiters.from_msh("MSH#$*!@")
    assert escape("a#b$c!d", d) == "a!F!b!S!c!E!d"


def test_format_dtm_of_aware_datetime_keeps_the_utc_offset() -> None:
    moment = datetime(2026, 1, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    assert format_dtm(moment) == "20260101120005-0530"


def test_format_dtm_of_naive_datetime_raises() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_dtm(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20260101", datetime(2026, 1, 1, tzinfo=UTC)),
        ("202601011230", datetime(2026, 1, 1, 12, 30, tzinfo=UTC)),
        ("20260101123005.25+0100", datetime(2026, 1, 1, 12, 30, 5, 250000, tzinfo=timezone(timedelta(hours=1)))),
    ],
)
def test_parse_dtm_of_valid_precisions_returns_datetime(value: str, expected: datetime) -> None:
    assert parse_dtm(value) == expected


@pytest.mark.parametrize("value", ["2026-01-01", "20260101+01", "abc", "20261301"])
def test_parse_dtm_of_malformed_value_raises(value: str) -> None:
    with pytest.raises(ValueError, match=r"HL7 date/time|UTC offset"):
        parse_dtm(value)


@pytest.mark.parametrize(("value", "expected"), [(0.58, "0.58"), (1e-7, "0.0000001"), (12.0, "12"), (-3.5, "-3.5")])
def test_format_nm_never_writes_an_exponent(value: float, expected: str) -> None:
    assert format_nm(value) == expected
