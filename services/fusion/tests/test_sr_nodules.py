"""Nodules read from TID 1500 measurement reports built with highdicom on a real CT image (pydicom's
CT_small.dcm as the evidence), as another AI product or a workstation would store them."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

from radcds_fusion.adapters.sr_nodules import MeasurementReportError, read_nodules
from radcds_fusion.domain.nodules import Composition

NODULE = hd.sr.CodedConcept("427359005", "SCT", "Solitary nodule of lung")
RUL = hd.sr.CodedConcept("45653009", "SCT", "Upper lobe of right lung")
SOLID = hd.sr.CodedConcept("35702001", "SCT", "Solid")
PART_SOLID = hd.sr.CodedConcept("part-solid", "99RADCDS", "Part-solid")
COMPOSITION = hd.sr.CodedConcept("C0439773", "UMLS", "Nodule composition")
LONG = hd.sr.CodedConcept("103339001", "SCT", "Long Axis")
SHORT = hd.sr.CodedConcept("103340004", "SCT", "Short Axis")
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
SOLID_PART = hd.sr.CodedConcept("solid-part-mean-diameter", "99RADCDS", "Solid part mean diameter")
MM = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
CM = hd.sr.CodedConcept("cm", "UCUM", "centimeter")
MM3 = hd.sr.CodedConcept("mm3", "UCUM", "cubic millimeter")


@pytest.fixture(scope="module")
def ct():
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def measurement(name, value, unit=MM):
    return hd.sr.Measurement(name=name, value=value, unit=unit)


def planar_group(ct, uid, measurements, composition=SOLID, finding=NODULE, site=RUL):
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0], [10.0, 10.0]]),
        source_image=hd.sr.SourceImageForRegion(ct.SOPClassUID, ct.SOPInstanceUID),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=f"nodule {uid[-1]}"),
        referenced_region=region,
        finding_type=finding,
        finding_sites=[hd.sr.FindingSite(site)] if site else None,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(COMPOSITION, composition)] if composition else None,
    )


def volumetric_group(ct, uid, measurements, composition):
    # An ellipsoid by its three axes' end points (patient coordinates, mm) around (45, -17.5, -150).
    axes = np.array(
        [
            [40.0, -17.5, -150.0],
            [50.0, -17.5, -150.0],
            [45.0, -22.5, -150.0],
            [45.0, -12.5, -150.0],
            [45.0, -17.5, -155.0],
            [45.0, -17.5, -145.0],
        ]
    )
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=f"nodule {uid[-1]}"),
        referenced_regions=None,
        referenced_volume_surface=hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.ELLIPSOID,
            graphic_data=axes,
            frame_of_reference_uid=ct.FrameOfReferenceUID,
            source_images=[hd.sr.SourceImageForSegmentation(ct.SOPClassUID, ct.SOPInstanceUID)],
        ),
        finding_type=NODULE,
        finding_sites=[hd.sr.FindingSite(RUL)],
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(COMPOSITION, composition)],
    )


def sr_of(ct, groups):
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^Ray"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=hd.sr.CodedConcept("77477000", "SCT", "CT"),
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[ct],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Another AI vendor",
    )


def roundtrip(ds):
    """Write and read the SR, as imaging stores it and fusion fetches it."""
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(buf.getvalue()))


def test_planar_solid_nodule_with_long_and_short_axis_is_read(ct):
    sr = roundtrip(sr_of(ct, [planar_group(ct, "1.2.3.1", [measurement(LONG, 8.2), measurement(SHORT, 7.8)])]))
    (found,) = read_nodules(sr)
    assert found.nodule.composition is Composition.SOLID
    assert found.nodule.long_axis_mm == pytest.approx(8.2)
    assert found.nodule.short_axis_mm == pytest.approx(7.8)
    assert found.nodule.mean_diameter_mm == pytest.approx(8.0)
    assert found.nodule.location == "Upper lobe of right lung"
    assert found.finding == ("SCT", "427359005", "Solitary nodule of lung")
    assert found.tracking_uid == "1.2.3.1"
    assert found.position_mm is None  # a planar ROI has pixel, not patient, coordinates


def test_volumetric_part_solid_nodule_with_solid_part_volume_and_centroid_is_read(ct):
    measurements = [measurement(LONG, 1.2, CM), measurement(VOLUME, 268.0, MM3), measurement(SOLID_PART, 5.0)]
    sr = roundtrip(sr_of(ct, [volumetric_group(ct, "1.2.3.2", measurements, PART_SOLID)]))
    (found,) = read_nodules(sr)
    assert found.nodule.composition is Composition.PART_SOLID
    assert found.nodule.long_axis_mm == pytest.approx(12.0)  # 1.2 cm
    assert found.nodule.volume_mm3 == pytest.approx(268.0)
    assert found.nodule.solid_component_mm == pytest.approx(5.0)
    assert found.position_mm == pytest.approx((45.0, -17.5, -150.0))


def test_groups_of_other_findings_are_left_alone(ct):
    mass = hd.sr.CodedConcept("4147007", "SCT", "Mass")
    groups = [
        planar_group(ct, "1.2.3.3", [measurement(LONG, 30.0)], finding=mass),
        planar_group(ct, "1.2.3.4", [measurement(LONG, 5.0)], composition=None),
    ]
    (found,) = read_nodules(roundtrip(sr_of(ct, groups)))
    assert found.tracking_uid == "1.2.3.4"
    assert found.nodule.composition is Composition.SOLID  # no composition stated: read as solid


def test_impossible_measurement_is_refused_with_the_nodule_named(ct):
    sr = roundtrip(sr_of(ct, [planar_group(ct, "1.2.3.5", [measurement(LONG, 4.0), measurement(SHORT, 6.0)])]))
    with pytest.raises(MeasurementReportError, match="nodule 5: the short axis cannot exceed the long axis"):
        read_nodules(sr)


def test_a_length_in_an_unknown_unit_is_refused(ct):
    inch = hd.sr.CodedConcept("[in_i]", "UCUM", "inch")
    sr = roundtrip(sr_of(ct, [planar_group(ct, "1.2.3.6", [measurement(LONG, 0.3, inch)])]))
    with pytest.raises(MeasurementReportError, match="unit"):
        read_nodules(sr)


def test_an_image_is_not_a_measurement_report(ct):
    with pytest.raises(MeasurementReportError, match="not a structured report"):
        read_nodules(ct)
