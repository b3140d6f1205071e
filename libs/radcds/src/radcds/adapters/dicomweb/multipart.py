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


def split_parts(body: bytes, boundary: str) -> list[Part]:
    """Split a multipart body into parts."""
    if not boundary:
        raise MultipartError("multipart/related without a boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise MultipartError("no body parts found")
    parts: list[Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("body part without a header/content separator")
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n"):
            if b":" in line:
                name, value = line.split(b":", 1)
                headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        parts.append(Part(headers, content.removesuffix(b"\r\n")))
    else:
        raise MultipartError("closing boundary missing")
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
