"""Shared test kit of fusion's tests: TID 1500 measurement SRs built with highdicom on a real CT image (pydicom's
CT_small.dcm as the evidence), as another AI product or a workstation would store them."""

from __future__ import annotations

from io import BytesIO

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

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


@pytest.fixture(scope="session")
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
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(buf.getvalue()))


@pytest.fixture(scope="session")
def sr_kit():
    """The builders above, for tests: ``sr_kit.planar_group(...)`` and so on."""
    import types

    return types.SimpleNamespace(
        planar_group=planar_group,
        volumetric_group=volumetric_group,
        sr_of=sr_of,
        roundtrip=roundtrip,
        measurement=measurement,
        LONG=LONG,
        SHORT=SHORT,
        VOLUME=VOLUME,
        SOLID_PART=SOLID_PART,
        PART_SOLID=PART_SOLID,
        MM=MM,
        CM=CM,
        MM3=MM3,
    )
