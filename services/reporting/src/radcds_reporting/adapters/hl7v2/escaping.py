"""HL7 v2 escape sequences for text written into a field (HL7 v2.5.1 chapter 2.7).

With the default delimiters ``|^~\\&`` the five delimiters become ``\\F\\ \\S\\ \\R\\ \\E\\ \\T\\``.
A carriage return or line feed inside a value would end the segment, so they are written as
hexadecimal data ``\\X0D\\`` / ``\\X0A\\`` (2.7.4); other C0 control characters are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The message's delimiters (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_msh(cls, segment: str) -> Delimiters:
        """Read the delimiters from an MSH segment's first characters (``MSH|^~\\&``)."""
        if not segment.startswith("MSH") or len(segment) < 8:
            raise ValueError("not an MSH segment")
        f, enc = segment[3], segment[4:8]
        return cls(field=f, component=enc[0], repetition=enc[1], escape=enc[2], subcomponent=enc[3])

    @property
    def encoding_characters(self) -> str:
        """MSH-2: component, repetition, escape and subcomponent characters."""
        return self.component + self.repetition + self.escape + self.subcomponent


DEFAULT_DELIMITERS = Delimiters()


def escape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Escape ``text`` for an ST/TX/FT/CE component: delimiters become escape sequences (2.7.1)."""
    e = delimiters.escape
    table = {
        delimiters.escape: f"{e}E{e}",
        delimiters.field: f"{e}F{e}",
        delimiters.component: f"{e}S{e}",
        delimiters.repetition: f"{e}R{e}",
        delimiters.subcomponent: f"{e}T{e}",
        "\r": f"{e}X0D{e}",
        "\n": f"{e}X0A{e}",
    }
    out: list[str] = []
    for ch in text:
        mapped = table.get(ch)
        if mapped is not None:
            out.append(mapped)
        elif ord(ch) < 0x20 and ch != "\t":
            continue
        else:
            out.append(ch)
    return "".join(out)


def unescape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Undo :func:`escape`; ``\\.br\\`` becomes a line feed, unknown sequences are kept as they are."""
    e = re.escape(delimiters.escape)
    names = {
        "F": delimiters.field,
        "S": delimiters.component,
        "R": delimiters.repetition,
        "E": delimiters.escape,
        "T": delimiters.subcomponent,
        ".br": "\n",
    }

    def _one(match: re.Match[str]) -> str:
        body = match.group(1)
        if body in names:
            return names[body]
        if body.startswith("X") and len(body) > 1 and len(body) % 2 == 1:
            try:
                return bytes.fromhex(body[1:]).decode("latin-1")
            except ValueError:
                return match.group(0)
        return match.group(0)

    return re.sub(f"{e}([^{e}]*){e}", _one, text)
