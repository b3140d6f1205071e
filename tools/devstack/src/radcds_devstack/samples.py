"""Real sample studies for demos and tests, and cases DERIVED from them (each says so).

Sources (pydicom-data 1.0.0, installed from PyPI, nothing downloaded at run time):

- ``RG1_UNCI.dcm``: a real PA chest CR, 1955x1841, MONOCHROME1, View Position PA.
- ``693_UNCI.dcm``: a real head CT slice, 512x512, 5 mm, Rescale Intercept -1024 (negative for blood).

Every sample gets fresh Study, Series and SOP Instance UIDs (imaging stores a SOP Instance once),
so each call is a new study.

The head CT samples are made valid CT Image IODs (PS3.3 A.3; dciodvfy reports no error on them),
header only, pixels and measured values unchanged: 693_UNCI.dcm lacks the Frame of Reference UID
(PS3.3 C.7.4.1, Type 1), names no body part, so the Laterality condition (C.7.3.1, Type 2C, paired
structures only) cannot be judged, and says Patient Identity Removed YES without the Type 1C
De-identification Method (C.7.1.1). The samples add a fresh Frame of Reference UID, Body Part
Examined HEAD (unpaired: Laterality stays absent) and a method text saying what is known.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def _real(name: str) -> Dataset:
    path = get_testdata_file(name)
    if path is None:
        raise RuntimeError(f"pydicom-data is not installed ({name} not found)")
    return pydicom.dcmread(str(path))


def _fresh(ds: Dataset, *, study_uid: str | None = None) -> Dataset:
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def part10(ds: Dataset) -> bytes:
    """The data set as Part 10 bytes (for STOW-RS)."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def drop_zero_pixel_spacing(ds: Dataset) -> Dataset:
    """Remove a Pixel Spacing (0028,0030) of ``0\\0``: RG1_UNCI.dcm carries one, which says "no spacing"
    but makes viewers draw an image of no size. In the CR Image module (PS3.3 C.8.1.2) Pixel Spacing comes
    from the Basic Pixel Spacing Calibration Macro (Table 10-10), Type 1C: needed only for a calibrated
    image, so leaving it out is valid and says what is true, the spacing is unknown (models already
    treat 0 as unknown, so their results do not change)."""
    spacing = ds.get("PixelSpacing")
    try:
        zero = spacing is not None and all(float(v) == 0 for v in spacing)
    except (TypeError, ValueError):
        zero = False
    if zero:
        del ds.PixelSpacing
    return ds


def chest_cr(*, view_position: str = "PA") -> Dataset:
    """RG1_UNCI.dcm with fresh UIDs and its bogus Pixel Spacing ``0\\0`` removed
    (:func:`drop_zero_pixel_spacing`); ``view_position`` other than PA is DERIVED (header only,
    pixels untouched)."""
    ds = drop_zero_pixel_spacing(_fresh(_real("RG1_UNCI.dcm")))
    ds.ViewPosition = view_position
    return ds


#: De-identification Method (0012,0063) of the head CT samples: 693_UNCI.dcm (a CQ500 slice) says
#: Patient Identity Removed YES but not how.
HEAD_CT_DEIDENTIFICATION_METHOD = "CQ500 public release; method not recorded in the source file"


def head_ct() -> Dataset:
    """693_UNCI.dcm with fresh UIDs and the header completed to a valid CT Image IOD (see the module
    docstring): a real head CT slice, expected negative."""
    ds = _fresh(_real("693_UNCI.dcm"))
    ds.FrameOfReferenceUID = generate_uid()  # PS3.3 C.7.4.1: Type 1; one slice, its own frame of reference
    ds.BodyPartExamined = "HEAD"  # PS3.3 C.7.3.1: unpaired, so Laterality (Type 2C) is absent
    if str(ds.get("PatientIdentityRemoved", "")).upper() == "YES" and not ds.get("DeidentificationMethod"):
        ds.DeidentificationMethod = HEAD_CT_DEIDENTIFICATION_METHOD  # PS3.3 C.7.1.1: Type 1C
    return ds


@dataclass(frozen=True)
class InsertedRegion:
    """What :func:`head_ct_with_hyperdense_disc` inserted: centre (row, column), radius, HU range, pixel count."""

    centre: tuple[int, int]
    radius_mm: float
    low_hu: int
    high_hu: int
    pixels: int
    area_mm2: float


def head_ct_with_hyperdense_disc(
    *,
    centre: tuple[int, int] = (260, 250),
    radius_mm: float = 7.0,
    low_hu: int = 60,
    high_hu: int = 76,
    seed: int = 693,
) -> tuple[Dataset, InsertedRegion]:
    """DERIVED from 693_UNCI.dcm: a disc of acute-blood density (uniform ``low_hu``..``high_hu``) inserted
    into the brain of the real slice, written back through the inverse Modality LUT (stored = (HU - b) / m).
    The defaults give 673 pixels, 154.1 mm² (the models' reference case)."""
    ds = head_ct()
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    stored = ds.pixel_array.copy()
    row_mm, column_mm = (float(v) for v in ds.PixelSpacing)
    rows, columns = np.ogrid[: stored.shape[0], : stored.shape[1]]
    disc = ((rows - centre[0]) * row_mm) ** 2 + ((columns - centre[1]) * column_mm) ** 2 <= radius_mm**2
    hu = np.random.default_rng(seed).integers(low_hu, high_hu + 1, size=int(disc.sum()))
    stored[disc] = np.round((hu - intercept) / slope).astype(stored.dtype)
    ds.PixelData = stored.tobytes()
    ds.SeriesDescription = "DERIVED: inserted hyperdense disc (test case)"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    return ds, InsertedRegion(
        centre, radius_mm, low_hu, high_hu, int(disc.sum()), float(disc.sum()) * row_mm * column_mm
    )


def chest_ct(*, patient_id: str, study_date: str) -> Dataset:
    """pydicom's real CT_small.dcm (128x128 CT) with fresh UIDs, the given patient and date, and Body Part
    Examined CHEST (DERIVED header: the slice is what it is; it stands for a chest CT of that patient)."""
    ds = _fresh(pydicom.dcmread(str(get_testdata_file("CT_small.dcm"))))
    ds.PatientID = patient_id
    ds.StudyDate = study_date
    ds.BodyPartExamined = "CHEST"
    return ds


def nodule_measurement_sr(evidence: Dataset, *, long_axis_mm: float, short_axis_mm: float) -> Dataset:
    """A TID 1500 measurement report (Comprehensive 3D SR, built with highdicom) measuring one solid nodule of
    the right upper lobe on ``evidence``, as another AI product or a workstation would store it (IHE AI
    Results): Finding SCT 427359005, Long/Short Axis in mm, composition Solid (SCT 35702001). SYNTHETIC
    measurements on a real image; the SR's manufacturer is "Example nodule AI" (not radcds)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    mm = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="nodule 1"),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array([[30.0, 30.0], [40.0, 30.0], [40.0, 40.0], [30.0, 40.0], [30.0, 30.0]]),
            source_image=hd.sr.SourceImageForRegion(evidence.SOPClassUID, evidence.SOPInstanceUID),
        ),
        finding_type=hd.sr.CodedConcept("427359005", "SCT", "Solitary nodule of lung"),
        finding_sites=[hd.sr.FindingSite(hd.sr.CodedConcept("45653009", "SCT", "Upper lobe of right lung"))],
        measurements=[
            hd.sr.Measurement(hd.sr.CodedConcept("103339001", "SCT", "Long Axis"), long_axis_mm, mm),
            hd.sr.Measurement(hd.sr.CodedConcept("103340004", "SCT", "Short Axis"), short_axis_mm, mm),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                hd.sr.CodedConcept("C0439773", "UMLS", "Nodule composition"),
                hd.sr.CodedConcept("35702001", "SCT", "Solid"),
            )
        ],
    )
    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="Example nodule AI"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("77477000", "SCT", "CT"),
        imaging_measurements=[group],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[evidence],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=90,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Example nodule AI",
    )


def orm_o01(
    control_id: str,
    placer: str,
    filler: str,
    accession: str,
    study_uid: str,
    patient_id: str,
    *,
    procedure: str = "71046^XR CHEST 2 VIEWS^CPT4",
    modality: str = "CR",
) -> str:
    """An ORM^O01 new order (ORC-1 NW, OBR-18 accession, ZDS-1 Study Instance UID; shared/notes/standards.md)."""
    obr = [""] * 25
    obr[:5] = ["OBR", "1", f"{placer}^EPIC", f"{filler}^RIS", procedure]
    obr[16] = "1234^SMITH^JOHN"
    obr[18], obr[19], obr[20], obr[24] = accession, "RP1", "SPS1", modality
    segments = [
        f"MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260101100000||ORM^O01|{control_id}|P|2.3.1",
        f"PID|1||{patient_id}^^^HOSP^MR||DOE^JANE||19700101|F",
        f"ORC|NW|{placer}^EPIC|{filler}^RIS||SC||||20260101100000|||1234^SMITH^JOHN",
        "|".join(obr),
        f"ZDS|{study_uid}^100^Application^DICOM",
    ]
    return "\r\n".join(segments) + "\r\n"
