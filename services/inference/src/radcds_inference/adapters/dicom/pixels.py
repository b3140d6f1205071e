"""The Modality LUT of a DICOM image and the unit of its output (PS3.3 C.11.1).

The Modality LUT Module (PS3.3 C.11.1) maps stored values to modality units (Hounsfield units
for CT, PS3.3 C.8.2.1); enhanced multi-frame images carry it in a functional group instead
(PS3.3 C.7.6.16.2.9). :mod:`radcds_inference.adapters.dicom.preprocess` applies it (PS3.4 Annex N.2.1).
"""

from __future__ import annotations

from pydicom import Dataset

from radcds.domain.codes import UNIT_HOUNSFIELD, UNIT_PIXEL_VALUE

_RESCALE_KEYWORDS = ("RescaleIntercept", "RescaleSlope", "RescaleType")


def _frame_modality_lut(ds: Dataset) -> Dataset:
    """Return the dataset that carries the Modality LUT for the first frame.

    Legacy images carry the Modality LUT Module (PS3.3 C.11.1) at the top level. Enhanced
    multi-frame images (e.g. Enhanced CT) carry it in the Pixel Value Transformation Functional
    Group (PS3.3 C.7.6.16.2.9), either per frame or shared; the per-frame item wins.
    """
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds:
        return ds
    for groups_keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(groups_keyword)
        if not groups:
            continue
        transformations = groups[0].get("PixelValueTransformationSequence")
        if not transformations:
            continue
        item = transformations[0]
        if "RescaleSlope" in item and "RescaleIntercept" in item:
            lut = Dataset()
            for keyword in _RESCALE_KEYWORDS:
                if keyword in item:
                    setattr(lut, keyword, item[keyword].value)
            return lut
    return ds


def modality_unit(ds: Dataset) -> str:
    """Return the UCUM unit of `ds`'s pixel values after its Modality LUT.

    CT with a rescale to Hounsfield units gives ``[hnsf'U]``: in the CT Image Module
    (PS3.3 C.8.2.1) the output of Rescale Slope/Intercept is HU when Rescale Type (0028,1054) is
    absent or ``HU``. Everything else, including CT with Rescale Type ``US`` (unspecified),
    gives the arbitrary unit ``{pixel_value}``.
    """
    if str(ds.get("Modality", "")).strip() != "CT":
        return UNIT_PIXEL_VALUE
    lut = _frame_modality_lut(ds)
    if "RescaleSlope" not in lut or "RescaleIntercept" not in lut:
        return UNIT_PIXEL_VALUE
    rescale_type = str(lut.get("RescaleType", "HU") or "HU").strip().upper()
    return UNIT_HOUNSFIELD if rescale_type == "HU" else UNIT_PIXEL_VALUE
