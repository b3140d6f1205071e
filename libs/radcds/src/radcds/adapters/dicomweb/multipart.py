"""multipart/related bodies (RFC 2387) as used by DICOMweb (PS3.18 section 8.6.1.2)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related payload."""


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its headers (lower-cased names) and content."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        """Media type of the part without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into its media type and parameters."""
    media, *params = [p.strip() for p in value.split(";")]
    out: dict[str, str] = {}
    for p in params:
        if "=" in p:
            k, v = p.split("=", 1)
            out[k.strip().lower()] = v.strip().strip('"')
    return media.lower(), out


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One media range of an Accept header (RFC 9110 12.5.1) with its parameters, lower-cased names."""

    media_type: str
    params: dict[str, str]
    quality: float


def parse_accept(value: str) -> list[MediaRange]:
    """The media ranges of an Accept header, best first (quality, then the order given).

    Parameter values may be quoted or not (``type="application/octet-stream"`` and
    ``type=application/octet-stream`` are the same, RFC 9110 5.6.6); ranges with ``q=0`` are dropped.
    """
    ranges: list[tuple[float, int, MediaRange]] = []
    for order, part in enumerate(_split_outside_quotes(value, ",")):
        if not part.strip():
            continue
        media, params = parse_content_type(part)
        quality = 1.0
        if "q" in params:
            try:
                quality = float(params.pop("q"))
            except ValueError:
                quality = 0.0
        if quality <= 0 or not media:
            continue
        ranges.append((-quality, order, MediaRange(media, params, quality)))
    return [r for _, _, r in sorted(ranges, key=lambda item: (item[0], item[1]))]


def _split_outside_quotes(value: str, separator: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return out


def split_parts(body: bytes, boundary: str) -> list[Part]:
    """Split a multipart body into parts (RFC 2046 5.1.1: each part follows a ``--boundary`` line, the last
    boundary ends in ``--``).

    The body is read by offsets and each part's content is the one copy made of it: a STOW-RS body is tens
    of megabytes, and splitting it into chunks, then stripping each chunk's line ends, copied it five times
    while holding the GIL (11 % of imaging's GIL samples under STOW-RS load, py-spy, bench/imaging_bench.py).
    """
    if not boundary:
        raise MultipartError("multipart/related without a boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    first = body.find(delimiter)
    if first < 0:
        raise MultipartError("no body parts found")
    parts: list[Part] = []
    start = first + len(delimiter)
    while True:
        following = body.find(delimiter, start)
        end = len(body) if following < 0 else following
        if body.startswith(b"--", start, end):
            break  # the close delimiter
        if body.startswith(b"\r\n", start, end):
            start += 2
        separator = body.find(b"\r\n\r\n", start, end)
        if separator < 0:
            raise MultipartError("body part without a header/content separator")
        headers: dict[str, str] = {}
        for line in body[start:separator].split(b"\r\n"):
            if b":" in line:
                name, value = line.split(b":", 1)
                headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        content_start = separator + 4
        content_end = end - 2 if body.endswith(b"\r\n", content_start, end) else end
        parts.append(Part(headers, body[content_start:content_end]))
        if following < 0:
            raise MultipartError("closing boundary missing")
        start = following + len(delimiter)
    return parts


def build_related(parts: list[tuple[str, bytes]], *, boundary: str | None = None) -> tuple[bytes, str]:
    """Encode parts; returns the body and the boundary used."""
    boundary = boundary or f"radcds-{secrets.token_hex(12)}"
    out = bytearray()
    for content_type, content in parts:
        out += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode("latin-1")
    return bytes(out), boundary
