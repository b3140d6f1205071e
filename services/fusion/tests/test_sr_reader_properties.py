"""Property tests of the TID 1500 reader (radcds_fusion.adapters.sr_nodules, issue #15 "Hostile input").

The seeds are real measurement SRs: highdicom's Comprehensive 3D SR on pydicom's CT_small.dcm (the kit in
conftest.py) with a planar and a volumetric nodule. Hypothesis mutates their content tree (PS3.3 C.17.3 SR Document
Content): content items dropped, duplicated or emptied, value types and concept names changed, numeric values
set to NaN, infinities, zero, negatives or huge numbers, units changed, 3D graphic data of any length, and the
file itself truncated or overwritten. Whatever it gets, the reader returns well-formed nodules (finite, positive
sizes, a short axis within the long axis, a finite position or none) or raises its one documented error type,
:class:`MeasurementReportError`: it never raises anything else, which the consumer would otherwise retry and
dead-letter as a crash.
"""

from __future__ import annotations

import contextlib
import math
from io import BytesIO
from typing import Any

import highdicom as hd
import pydicom
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from radcds_fusion.adapters.sr_nodules import MeasurementReportError, read_nodules

from .conftest import (
    LONG,
    MM3,
    PART_SOLID,
    SHORT,
    SOLID_PART,
    VOLUME,
    measurement,
    planar_group,
    roundtrip,
    sr_of,
    volumetric_group,
)

pytestmark = pytest.mark.properties
HU = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
ATTENUATION = hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient")


@pytest.fixture(scope="module")
def seed_bytes(ct: Dataset) -> bytes:
    groups = [
        planar_group(ct, "1.2.3.1", [measurement(LONG, 8.2), measurement(SHORT, 7.8)]),
        volumetric_group(
            ct,
            "1.2.3.2",
            [measurement(LONG, 12.0), measurement(VOLUME, 268.0, MM3), measurement(SOLID_PART, 5.0)],
            PART_SOLID,
        ),
    ]
    buf = BytesIO()
    roundtrip(sr_of(ct, groups)).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _items(ds: Dataset) -> list[tuple[Sequence, int]]:
    """Every content item of the tree as (its sequence, its index), depth first."""
    out: list[tuple[Sequence, int]] = []

    def walk(node: Dataset) -> None:
        seq = node.get("ContentSequence")
        if seq is None:
            return
        for i, item in enumerate(seq):
            out.append((seq, i))
            walk(item)

    walk(ds)
    return out


NUMERIC_VALUE = 0x0040A30A  # Numeric Value (DS), PS3.3 C.18.1
NUMBERS = st.sampled_from(["NaN", "inf", "-inf", "0", "-4.5", "1e308", "1e-300", "abc", "", "3"])
MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["drop", "duplicate", "empty", "value_type", "no_concept", "number", "unit", "graphic", "no_measured"]
        ),
        st.integers(min_value=0, max_value=10_000),
        NUMBERS,
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8),
    ),
    min_size=1,
    max_size=4,
)


def _set_number(item: Dataset, number: str) -> None:
    """Numeric Value (DS), without the Floating Point Value (FD) highdicom also writes and reads first.

    Set as the raw bytes a file would carry: pydicom refuses to assign a DS such as "abc" (``make fuzz`` drew it;
    the short profile never had), but a received SR may hold one, and that is what the reader must survive.
    """
    value = item.MeasuredValueSequence[0]
    encoded = number.encode("ascii")
    encoded += b" " * (len(encoded) % 2)  # PS3.5 7.1.1: values have even length, DS is padded with a space
    value[NUMERIC_VALUE] = RawDataElement(Tag(NUMERIC_VALUE), "DS", len(encoded), encoded, 0, True, True)
    if "FloatingPointValue" in value:
        del value.FloatingPointValue


def _mutate(ds: Dataset, mutations: list[tuple[str, int, str, list[float]]]) -> None:
    for kind, where, number, floats in mutations:
        items = _items(ds)
        if not items:
            return
        seq, i = items[where % len(items)]
        item = seq[i]
        if kind == "drop":
            del seq[i]
        elif kind == "duplicate":
            seq.insert(i, item)
        elif kind == "empty":
            item.ContentSequence = Sequence([])
        elif kind == "value_type":
            item.ValueType = ["NUM", "CODE", "TEXT", "SCOORD3D", "CONTAINER", "UIDREF", "XX"][where % 7]
        elif kind == "no_concept" and "ConceptNameCodeSequence" in item:
            del item.ConceptNameCodeSequence
        elif kind == "number" and "MeasuredValueSequence" in item and item.MeasuredValueSequence:
            _set_number(item, number)
        elif kind == "unit" and "MeasuredValueSequence" in item and item.MeasuredValueSequence:
            units = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence
            if units:
                units[0].CodeValue = ["cm", "m", "[in_i]", "mm2", "ml", "", "HU"][where % 7]
        elif kind == "graphic" and item.get("ValueType") in ("SCOORD3D", "SCOORD"):
            item.GraphicData = floats
        elif kind == "no_measured" and "MeasuredValueSequence" in item:
            item.MeasuredValueSequence = Sequence([])


def _check(found: list[Any]) -> None:
    for r in found:
        n = r.nodule
        for size in (n.long_axis_mm, n.short_axis_mm, n.volume_mm3, n.solid_component_mm):
            assert size is None or (math.isfinite(size) and size > 0)
        assert n.long_axis_mm is not None or n.volume_mm3 is not None
        if n.short_axis_mm is not None:
            assert n.long_axis_mm is not None and n.short_axis_mm <= n.long_axis_mm
        assert r.position_mm is None or all(math.isfinite(c) for c in r.position_mm)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
@given(mutations=MUTATIONS)
@example(mutations=[("number", 10, "NaN", [])])  # item 10 is nodule 1's long axis (NUM)
@example(mutations=[("number", 10, "abc", [])])
@example(mutations=[("graphic", 0, "0", [1.0, 2.0, 3.0, 4.0])])
def test_a_mutated_measurement_report_gives_well_formed_nodules_or_the_documented_error(seed_bytes, mutations):
    ds = pydicom.dcmread(BytesIO(seed_bytes))
    _mutate(ds, mutations)
    try:
        found = read_nodules(ds)
    except MeasurementReportError:
        return
    _check(found)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(cut=st.integers(min_value=0, max_value=10**6), junk=st.binary(max_size=64))
def test_a_truncated_or_overwritten_sr_file_is_refused_or_read_never_crashes(seed_bytes, cut, junk):
    data = seed_bytes[: 132 + cut % (len(seed_bytes) - 132)] + junk
    try:
        ds = pydicom.dcmread(BytesIO(data))
        ds.get("ContentSequence")  # what imaging's parser would already have decoded
    except Exception:
        return
    with contextlib.suppress(MeasurementReportError):
        _check(read_nodules(ds))


# ---- regressions of what the properties found -------------------------------------------------------------------
def test_a_measurement_the_reader_does_not_use_in_any_unit_is_ignored(ct):
    sr = roundtrip(
        sr_of(ct, [planar_group(ct, "1.2.3.7", [measurement(LONG, 9.0), measurement(ATTENUATION, -650.0, HU)])])
    )
    (found,) = read_nodules(sr)
    assert found.nodule.long_axis_mm == pytest.approx(9.0)


def test_a_zero_long_axis_is_refused_not_replaced_by_the_diameter(ct):
    diameter = hd.sr.CodedConcept("81827009", "SCT", "Diameter")
    sr = roundtrip(sr_of(ct, [planar_group(ct, "1.2.3.8", [measurement(LONG, 0.0), measurement(diameter, 6.0)])]))
    with pytest.raises(MeasurementReportError, match="nodule 8"):
        read_nodules(sr)


def test_a_not_a_number_size_is_refused_with_the_nodule_named(ct):
    sr = roundtrip(sr_of(ct, [planar_group(ct, "1.2.3.9", [measurement(LONG, 7.0)])]))
    for seq, i in _items(sr):
        if "MeasuredValueSequence" in seq[i]:
            _set_number(seq[i], "NaN")
    with pytest.raises(MeasurementReportError, match="nodule 9"):
        read_nodules(sr)


def test_two_different_values_of_one_measurement_are_refused(ct):
    sr = roundtrip(sr_of(ct, [planar_group(ct, "1.2.3.4", [measurement(LONG, 7.0), measurement(LONG, 9.0)])]))
    with pytest.raises(MeasurementReportError, match="two different values of Long Axis"):
        read_nodules(sr)


def test_3d_graphic_data_that_is_no_list_of_points_leaves_the_position_unknown(seed_bytes):
    ds = pydicom.dcmread(BytesIO(seed_bytes))
    for seq, i in _items(ds):
        if seq[i].get("ValueType") == "SCOORD3D":
            seq[i].GraphicData = [1.0, 2.0, 3.0, 4.0]
    volumetric = [r for r in read_nodules(ds) if r.tracking_uid == "1.2.3.2"]
    assert volumetric and volumetric[0].position_mm is None


def test_a_numeric_item_without_its_value_is_refused_not_crashing(seed_bytes):
    ds = pydicom.dcmread(BytesIO(seed_bytes))
    for seq, i in _items(ds):
        if "MeasuredValueSequence" in seq[i]:
            seq[i].MeasuredValueSequence = Sequence([])
            break
    with pytest.raises(MeasurementReportError):
        read_nodules(ds)
