"""multipart/related framing (RFC 2387) and settings validation."""

from __future__ import annotations

import pytest

from radcds.adapters.dicomweb.multipart import MultipartError, build_related, parse_content_type, split_parts
from radcds.runtime.settings import ServiceSettings, load_settings


def test_build_then_split_returns_the_same_parts():
    body, boundary = build_related([("application/dicom", b"\x00\x01--x"), ("application/dicom", b"abc")])
    parts = split_parts(body, boundary)
    assert [p.content for p in parts] == [b"\x00\x01--x", b"abc"]
    assert parts[0].content_type == "application/dicom"


def test_split_without_closing_boundary_raises():
    with pytest.raises(MultipartError, match="closing boundary"):
        split_parts(b"--b\r\nContent-Type: application/dicom\r\n\r\nabc\r\n", "b")


def test_split_without_boundary_parameter_raises():
    with pytest.raises(MultipartError, match="boundary"):
        split_parts(b"whatever", "")


def test_parse_content_type_reads_quoted_parameters():
    media, params = parse_content_type('Multipart/Related; type="application/dicom"; boundary=abc')
    assert media == "multipart/related"
    assert params == {"type": "application/dicom", "boundary": "abc"}


class _Demo(ServiceSettings):
    model_config = ServiceSettings.model_config | {"env_prefix": "RADCDS_DEMO_"}


def test_bad_setting_stops_with_a_message_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("RADCDS_DEMO_HTTP_PORT", "99999")
    with pytest.raises(SystemExit) as exc:
        load_settings(_Demo)
    assert exc.value.code == 2
    assert "RADCDS_DEMO_HTTP_PORT" in capsys.readouterr().err


def test_bad_kafka_bootstrap_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("RADCDS_DEMO_KAFKA_BOOTSTRAP_SERVERS", "localhost")
    with pytest.raises(SystemExit):
        load_settings(_Demo)
    assert "not host:port" in capsys.readouterr().err
