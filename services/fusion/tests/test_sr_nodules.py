"""Nodules read from TID 1500 measurement reports built with highdicom on a real CT image (the kit in
conftest.py), as another AI product or a workstation would store them."""

from __future__ import annotations

import highdicom as hd
import pytest

from radcds_fusion.adapters.sr_nodules import MeasurementReportError, read_nodules
from radcds_fusion.domain.nodules import Composition


def test_planar_solid_nodule_with_long_and_short_axis_is_read(ct, sr_kit):
    sr = sr_kit.roundtrip(
        sr_kit.sr_of(
            ct,
            [
                sr_kit.planar_group(
                    ct, "1.2.3.1", [sr_kit.measurement(sr_kit.LONG, 8.2), sr_kit.measurement(sr_kit.SHORT, 7.8)]
                )
            ],
        )
    )
    (found,) = read_nodules(sr)
    assert found.nodule.composition is Composition.SOLID
    assert found.nodule.long_axis_mm == pytest.approx(8.2)
    assert found.nodule.short_axis_mm == pytest.approx(7.8)
    assert found.nodule.mean_diameter_mm == pytest.approx(8.0)
    assert found.nodule.location == "Upper lobe of right lung"
    assert found.finding == ("SCT", "427359005", "Solitary nodule of lung")
    assert found.tracking_uid == "1.2.3.1"
    assert found.position_mm is None  # a planar ROI has pixel, not patient, coordinates


def test_volumetric_part_solid_nodule_with_solid_part_volume_and_centroid_is_read(ct, sr_kit):
    measurements = [
        sr_kit.measurement(sr_kit.LONG, 1.2, sr_kit.CM),
        sr_kit.measurement(sr_kit.VOLUME, 268.0, sr_kit.MM3),
        sr_kit.measurement(sr_kit.SOLID_PART, 5.0),
    ]
    sr = sr_kit.roundtrip(sr_kit.sr_of(ct, [sr_kit.volumetric_group(ct, "1.2.3.2", measurements, sr_kit.PART_SOLID)]))
    (found,) = read_nodules(sr)
    assert found.nodule.composition is Composition.PART_SOLID
    assert found.nodule.long_axis_mm == pytest.approx(12.0)  # 1.2 cm
    assert found.nodule.volume_mm3 == pytest.approx(268.0)
    assert found.nodule.solid_component_mm == pytest.approx(5.0)
    assert found.position_mm == pytest.approx((45.0, -17.5, -150.0))


def test_groups_of_other_findings_are_left_alone(ct, sr_kit):
    mass = hd.sr.CodedConcept("4147007", "SCT", "Mass")
    groups = [
        sr_kit.planar_group(ct, "1.2.3.3", [sr_kit.measurement(sr_kit.LONG, 30.0)], finding=mass),
        sr_kit.planar_group(ct, "1.2.3.4", [sr_kit.measurement(sr_kit.LONG, 5.0)], composition=None),
    ]
    (found,) = read_nodules(sr_kit.roundtrip(sr_kit.sr_of(ct, groups)))
    assert found.tracking_uid == "1.2.3.4"
    assert found.nodule.composition is Composition.SOLID  # no composition stated: read as solid


def test_impossible_measurement_is_refused_with_the_nodule_named(ct, sr_kit):
    sr = sr_kit.roundtrip(
        sr_kit.sr_of(
            ct,
            [
                sr_kit.planar_group(
                    ct, "1.2.3.5", [sr_kit.measurement(sr_kit.LONG, 4.0), sr_kit.measurement(sr_kit.SHORT, 6.0)]
                )
            ],
        )
    )
    with pytest.raises(MeasurementReportError, match="nodule 5: the short axis cannot exceed the long axis"):
        read_nodules(sr)


def test_a_length_in_an_unknown_unit_is_refused(ct, sr_kit):
    inch = hd.sr.CodedConcept("[in_i]", "UCUM", "inch")
    sr = sr_kit.roundtrip(
        sr_kit.sr_of(ct, [sr_kit.planar_group(ct, "1.2.3.6", [sr_kit.measurement(sr_kit.LONG, 0.3, inch)])])
    )
    with pytest.raises(MeasurementReportError, match="unit"):
        read_nodules(sr)


def test_an_image_is_not_a_measurement_report(ct, sr_kit):
    with pytest.raises(MeasurementReportError, match="not a structured report"):
        read_nodules(ct)
