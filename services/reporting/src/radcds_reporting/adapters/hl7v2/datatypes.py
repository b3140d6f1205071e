"""HL7 v2.5.1 data types radcds writes and reads (chapter 2.A): DTM, CE/CWE, EI, XCN, XPN, NDL.

Every text value passes through :func:`radcds_reporting.adapters.hl7v2.escaping.escape` before it is
joined with delimiters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal

from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds_reporting.adapters.hl7v2.escaping import DEFAULT_DELIMITERS, Delimiters, escape
from radcds_reporting.adapters.hl7v2.tables import table_0396
from radcds_reporting.domain.orders import OrderNumber, PersonName, Practitioner

#: FHIR code system URI -> HL7 v2 coding system name (HL7 table 0396, checked by the tests against
#: ``tables/hl7-table-0396.json``). CPT-4 is ``C4`` (``CPT4`` is not in table 0396). RadLex has no
#: table 0396 entry, so it goes out in the site-defined ``99zzz`` form.
CODING_SYSTEMS: dict[str, str] = {
    codes.LOINC: "LN",
    codes.SNOMED_CT: "SCT",
    codes.UCUM: "UCUM",
    codes.DICOM_DCM: "DCM",
    "http://www.ama-assn.org/go/cpt": "C4",
    "http://radlex.org": "99RADLEX",
}
#: Table 0396 ``99zzz`` (local general code): what radcds writes for its own code systems and any
#: other system without a table 0396 name (e.g. the local ``ai-disclaimer`` section code).
LOCAL_CODING_SYSTEM = "99RADCDS"
#: Reverse of :data:`CODING_SYSTEMS`, plus the v2 names seen in the wild for the same systems.
CODING_SYSTEM_URIS: dict[str, str] = {v: k for k, v in CODING_SYSTEMS.items()} | {
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "SNM": codes.SNOMED_CT,
    "SNOMED": codes.SNOMED_CT,
    "LOINC": codes.LOINC,
    "LNC": codes.LOINC,
    "RADLEX": "http://radlex.org",
}
#: A received code whose coding system (CE.3) has no FHIR URI here keeps its v2 name in the URI
#: ``urn:radcds:hl7v2-coding-system:<name>``, so it goes back out under the same name.
RECEIVED_SYSTEM_PREFIX = "urn:radcds:hl7v2-coding-system:"
#: A received code without any coding system name (CE.3 empty).
RECEIVED_LOCAL_SYSTEM = "urn:radcds:hl7v2-local"


def received_coding_system(name: str) -> str:
    """The FHIR system URI radcds stores for a received CE.3/CWE.3 ``name``."""
    if name in CODING_SYSTEM_URIS:
        return CODING_SYSTEM_URIS[name]
    return f"{RECEIVED_SYSTEM_PREFIX}{name}" if name else RECEIVED_LOCAL_SYSTEM


def v2_coding_system(system: str) -> str:
    """The table 0396 name of a FHIR code system URI (2.A.8 CE.3); ``99RADCDS`` for a local system.

    A code received with a table 0396 name radcds has no URI for goes back under that name; a
    received name that is not in table 0396 goes out as the site-defined ``99<name>``.
    """
    if system in CODING_SYSTEMS:
        return CODING_SYSTEMS[system]
    if system.startswith(RECEIVED_SYSTEM_PREFIX):
        name = system.removeprefix(RECEIVED_SYSTEM_PREFIX)
        if name in table_0396():
            return name
        local = "99" + "".join(c for c in name if c.isascii() and c.isalnum())[:18]
        return local if len(local) > 2 else LOCAL_CODING_SYSTEM
    return LOCAL_CODING_SYSTEM


def format_dtm(moment: datetime) -> str:
    """DTM ``YYYYMMDDHHMMSS+ZZZZ`` (2.A.22) from an aware datetime, keeping its UTC offset."""
    if moment.tzinfo is None:
        raise ValueError("a DTM needs an aware datetime")
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return moment.strftime("%Y%m%d%H%M%S") + f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def parse_dtm(value: str, *, default_tz: tzinfo = UTC) -> datetime:
    """Read a DTM/TS value (``YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]``); raises ``ValueError``."""
    value = value.strip()
    tz: tzinfo = default_tz
    for sign in "+-":
        if sign in value[4:]:
            idx = value.index(sign, 4)
            zone = value[idx + 1 :]
            if len(zone) != 4 or not zone.isdigit():
                raise ValueError(f"bad UTC offset in {value!r}")
            delta = timedelta(hours=int(zone[:2]), minutes=int(zone[2:]))
            tz = timezone(delta if sign == "+" else -delta)
            value = value[:idx]
            break
    main, _, fraction = value.partition(".")
    if not main.isdigit() or len(main) not in (4, 6, 8, 10, 12, 14):
        raise ValueError(f"{value!r} is not an HL7 date/time")
    padded = main + "0101000000"[len(main) - 4 :] if len(main) < 14 else main
    p = padded
    try:
        moment = datetime(int(p[0:4]), int(p[4:6]), int(p[6:8]), int(p[8:10]), int(p[10:12]), int(p[12:14]), tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an HL7 date/time") from exc
    if fraction:
        if not fraction.isdigit():
            raise ValueError(f"{value!r} has a bad fraction of a second")
        moment = moment.replace(microsecond=int((fraction + "000000")[:6]))
    return moment


def format_nm(value: float) -> str:
    """NM (2.A.47): an optional sign, digits and a decimal point; never an exponent."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def ce(coding: Coding, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """CE/CWE ``identifier^text^coding system`` (2.A.8)."""
    return d.component.join(
        (escape(coding.code, d), escape(coding.display, d), escape(v2_coding_system(coding.system), d))
    )


def ei(number: OrderNumber, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """EI ``entity identifier^namespace id`` (2.A.28)."""
    if number.namespace:
        return f"{escape(number.number, d)}{d.component}{escape(number.namespace, d)}"
    return escape(number.number, d)


def xpn(name: PersonName, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """XPN ``family^given^middle^^^^L`` (2.A.88), name type L (legal)."""
    parts = [escape(name.family, d), escape(name.given, d), escape(name.middle, d), "", "", "", "L"]
    return d.component.join(parts)


def xcn(person: Practitioner, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """XCN ``id^family^given^middle`` (2.A.89)."""
    parts = [escape(person.identifier, d), escape(person.name.family, d), escape(person.name.given, d)]
    if person.name.middle:
        parts.append(escape(person.name.middle, d))
    return d.component.join(parts).rstrip(d.component)


def ndl(person: Practitioner, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """NDL.1 (CNN) ``id&family&given`` (2.A.47): OBR-32's name is a component of NDL, so its parts are subcomponents."""
    parts = [escape(person.identifier, d), escape(person.name.family, d), escape(person.name.given, d)]
    return d.subcomponent.join(parts).rstrip(d.subcomponent)
