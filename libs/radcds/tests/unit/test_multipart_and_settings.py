"""multipart/related framing (RFC 2387) and settings validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_sasl_without_credentials_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("RADCDS_DEMO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SystemExit):
        load_settings(_Demo)
    assert "SASL needs" in capsys.readouterr().err


def test_sasl_settings_become_kafka_client_options_without_leaking_the_password_in_repr(monkeypatch):
    monkeypatch.setenv("RADCDS_DEMO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RADCDS_DEMO_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("RADCDS_DEMO_KAFKA_SASL_USERNAME", "radcds")
    monkeypatch.setenv("RADCDS_DEMO_KAFKA_SASL_PASSWORD", "s3cret-value")
    settings = load_settings(_Demo)
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret-value"
    assert "s3cret-value" not in repr(settings)


def _split_by_chunks(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]] | str:
    """The reading split_parts had before it worked by offsets (bytes.split, then strip each chunk): the oracle."""
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        return "no body parts found"
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            return "body part without a header/content separator"
        headers = {}
        for line in head.split(b"\r\n"):
            if b":" in line:
                name, value = line.split(b":", 1)
                headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        parts.append((headers, content.removesuffix(b"\r\n")))
    return "closing boundary missing"


_PIECES = st.sampled_from(
    [b"--b", b"--b--", b"\r\n", b"\r\n\r\n", b"Content-Type: application/dicom", b":", b"-", b"x"]
)


_SCRAPS = st.lists(st.one_of(_PIECES, st.binary(max_size=6)), max_size=24).map(b"".join)
_PART = st.tuples(
    st.sampled_from([b"--b\r\n", b"--b"]),
    st.sampled_from([b"Content-Type: application/dicom", b"X: 1\r\nContent-Type: a", b"", b"no colon"]),
    st.sampled_from([b"\r\n\r\n", b"\r\n"]),
    _SCRAPS,
    st.sampled_from([b"\r\n", b""]),
).map(b"".join)
_BODIES = st.one_of(
    _SCRAPS,
    st.tuples(
        _SCRAPS, st.lists(_PART, min_size=1, max_size=4).map(b"".join), st.sampled_from([b"--b--\r\n", b""]), _SCRAPS
    ).map(b"".join),
)


@given(_BODIES)
def test_split_by_offsets_reads_any_body_as_the_chunk_split_did(body):
    expected = _split_by_chunks(body, "b")
    try:
        got: list[tuple[dict[str, str], bytes]] | str = [(p.headers, p.content) for p in split_parts(body, "b")]
    except MultipartError as exc:
        got = str(exc)
    assert got == expected
