"""HL7 tables radcds checks what it sends against, kept as data (``tables/``) with their provenance.

Table 0396 "Coding System" (HL7 v2.5.1 2.17.5, CE.3/CWE.3 and CE.6/CWE.6 name of coding system):
``tables/hl7-table-0396.json`` is the HL7 Terminology (THO) CodeSystem ``v2-0396`` from the HL7 UTG
repository (file, commit, version and CC0 licence in its ``provenance``). Entries written as a
template (``99zzz`` local codes, ``HL7nnnn`` HL7 tables, ...) match the regular expressions in its
``templates``. The same file is read by the HAPI harness (``deploy/local/hapi-hl7v2``), so the
Python and the Java checks use one copy of the table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

TABLE_0396_FILE = "hl7-table-0396.json"


@dataclass(frozen=True, slots=True)
class CodingSystemTable:
    """HL7 table 0396: literal identifiers with their status, and template patterns."""

    codes: dict[str, str]
    templates: dict[str, re.Pattern[str]]
    provenance: dict[str, Any]

    def status(self, name: str) -> str | None:
        """``active``, ``deprecated``, ... for a literal entry or a template match; None when not in the table."""
        if name in self.codes:
            return self.codes[name]
        for template, pattern in self.templates.items():
            if pattern.fullmatch(name):
                return self.codes.get(template, "active")
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.status(name) is not None


@cache
def table_0396() -> CodingSystemTable:
    """HL7 table 0396 as shipped in ``radcds_reporting/adapters/hl7v2/tables``."""
    text = resources.files("radcds_reporting.adapters.hl7v2").joinpath("tables", TABLE_0396_FILE).read_text("utf-8")
    data = json.loads(text)
    templates = {name: re.compile(rx) for name, rx in data["templates"].items()}
    codes = {c["code"]: c["status"] for c in data["codes"] if c["code"] not in templates}
    return CodingSystemTable(codes=codes, templates=templates, provenance=data["provenance"])
