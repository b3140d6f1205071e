"""Which studies a model may analyse: its validated envelope (pure; no DICOM library).

A model in ``models/`` has a manifest entry (``models/manifest.json``, see ``docs/models.md``)
that says which studies it is *for* (modality and body part) and within which limits it was
*validated* (view position, slice thickness, patient age). :func:`assess` turns the attributes
of one series into one of three decisions:

- ``RUN``: inside the envelope;
- ``NOT_APPLICABLE``: the model is not meant for this series at all (another modality or body
  part); nothing is reported;
- ``NOT_ANALYSED``: the model is meant for this kind of study but the series is outside the
  validated envelope; the reason (``"not analysed: ..."``) goes into the findings
  (:attr:`radcds.domain.findings.ImageAnalysis.not_analysed_reason`).

Attribute names follow DICOM PS3.3: Modality (0008,0060), Body Part Examined (0018,0015),
View Position (0018,5101), Slice Thickness (0018,0050), Patient's Age (0010,1010).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from radcds.domain.codes import Coding

#: Attribute names that a manifest may list in ``allow_unknown``.
BODY_PART = "body_part"
VIEW_POSITION = "view_position"
SLICE_THICKNESS = "slice_thickness"
PATIENT_AGE = "patient_age"
ATTRIBUTES = frozenset({BODY_PART, VIEW_POSITION, SLICE_THICKNESS, PATIENT_AGE})


class Decision(enum.Enum):
    """Outcome of :func:`assess`."""

    RUN = "run"
    NOT_APPLICABLE = "not applicable"
    NOT_ANALYSED = "not analysed"


@dataclass(frozen=True, slots=True)
class EnvelopeDecision:
    """A decision and, unless it is ``RUN``, a human-readable reason."""

    decision: Decision
    reason: str = ""

    @property
    def run(self) -> bool:
        """True when the model should run."""
        return self.decision is Decision.RUN


RUN = EnvelopeDecision(Decision.RUN)


@dataclass(frozen=True, slots=True)
class Range:
    """A closed interval; either end may be open (None)."""

    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"range minimum {self.minimum} exceeds maximum {self.maximum}")

    def __contains__(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def describe(self, unit: str) -> str:
        """E.g. ``"0.5 to 5 mm"``, ``"at least 18 years"``."""
        if self.minimum is not None and self.maximum is not None:
            return f"{self.minimum:g} to {self.maximum:g} {unit}"
        if self.minimum is not None:
            return f"at least {self.minimum:g} {unit}"
        if self.maximum is not None:
            return f"at most {self.maximum:g} {unit}"
        return f"any {unit}"


@dataclass(frozen=True, slots=True)
class ModelEnvelope:
    """Which series a model is for and where it was validated (one manifest ``applies_to``).

    Empty ``view_positions`` means any view; a ``None`` range means no limit. Attributes named in
    ``allow_unknown`` may be absent from the series; any other absent attribute that the
    envelope constrains makes the series ``NOT_ANALYSED``.
    """

    modalities: frozenset[str]
    body_parts: frozenset[str] = frozenset()
    view_positions: frozenset[str] = frozenset()
    slice_thickness_mm: Range | None = None
    patient_age_years: Range | None = None
    allow_unknown: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("an envelope needs at least one modality")
        unknown = self.allow_unknown - ATTRIBUTES
        if unknown:
            raise ValueError(f"allow_unknown names unknown attributes: {sorted(unknown)}")


@dataclass(frozen=True, slots=True)
class SeriesAttributes:
    """The attributes of one series that an envelope looks at; empty or None when absent."""

    modality: str
    body_part: str = ""
    view_position: str = ""
    slice_thickness_mm: float | None = None
    patient_age_years: float | None = None


def assess(model: str, envelope: ModelEnvelope, series: SeriesAttributes) -> EnvelopeDecision:
    """Decide whether `model` runs on `series` (see the module docstring for the three outcomes)."""
    modality = series.modality.strip().upper()
    if modality not in envelope.modalities:
        return EnvelopeDecision(
            Decision.NOT_APPLICABLE, f"{model} is for {_names(envelope.modalities)}, not {modality}"
        )
    body_part = series.body_part.strip().upper()
    if envelope.body_parts:
        if body_part and body_part not in envelope.body_parts:
            return EnvelopeDecision(
                Decision.NOT_APPLICABLE, f"{model} is for {_names(envelope.body_parts)}, not {body_part}"
            )
        if not body_part and BODY_PART not in envelope.allow_unknown:
            return _not_analysed(
                model, f"Body Part Examined (0018,0015) is absent; validated for {_names(envelope.body_parts)}"
            )
    if envelope.view_positions:
        view = series.view_position.strip().upper()
        if not view and VIEW_POSITION not in envelope.allow_unknown:
            return _not_analysed(
                model, f"View Position (0018,5101) is absent; validated for {_names(envelope.view_positions)}"
            )
        if view and view not in envelope.view_positions:
            return _not_analysed(
                model, f"view position {view} is outside the validated envelope ({_names(envelope.view_positions)})"
            )
    if envelope.slice_thickness_mm is not None:
        thickness = series.slice_thickness_mm
        if thickness is None and SLICE_THICKNESS not in envelope.allow_unknown:
            return _not_analysed(
                model,
                f"Slice Thickness (0018,0050) is absent; validated for {envelope.slice_thickness_mm.describe('mm')}",
            )
        if thickness is not None and thickness not in envelope.slice_thickness_mm:
            return _not_analysed(
                model,
                f"slice thickness {thickness:g} mm is outside the validated envelope "
                f"({envelope.slice_thickness_mm.describe('mm')})",
            )
    if envelope.patient_age_years is not None:
        age = series.patient_age_years
        if age is None and PATIENT_AGE not in envelope.allow_unknown:
            return _not_analysed(
                model, f"patient age is unknown; validated for {envelope.patient_age_years.describe('years')}"
            )
        if age is not None and age not in envelope.patient_age_years:
            return _not_analysed(
                model,
                f"patient age {age:.0f} years is outside the validated envelope "
                f"({envelope.patient_age_years.describe('years')})",
            )
    return RUN


_AGE_STRING = re.compile(r"^(\d{3})([DWMY])$")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def patient_age_years(age_string: str = "", birth_date: str = "", study_date: str = "") -> float | None:
    """Patient age in years from Patient's Age (AS, PS3.5 6.2: ``nnnD|W|M|Y``) or, failing that,
    from Patient's Birth Date and Study Date (DA, ``YYYYMMDD``); None when neither gives one.
    """
    match = _AGE_STRING.match(age_string.strip().upper())
    if match:
        return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)]
    born, seen = _DATE.match(birth_date.strip()), _DATE.match(study_date.strip())
    if not born or not seen:
        return None
    by, bm, bd = (int(g) for g in born.groups())
    sy, sm, sd = (int(g) for g in seen.groups())
    years = sy - by - (1 if (sm, sd) < (bm, bd) else 0)
    return float(years) if years >= 0 else None


def _names(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


def _not_analysed(model: str, reason: str) -> EnvelopeDecision:
    return EnvelopeDecision(Decision.NOT_ANALYSED, f"not analysed: {model}: {reason}")


@dataclass(frozen=True, slots=True)
class PreprocessingSpec:
    """How the caller turns a DICOM series into a model's input (manifest ``inputs.preprocessing``).

    ``max_size``: block-mean downsample so the longer side is at most this (0: native grid).
    ``voi_lut``: apply the VOI LUT or window of the data set (PS3.3 C.11.2) after the Modality LUT.
    ``invert_monochrome1``: invert MONOCHROME1 so that higher values are brighter (PS3.3 C.7.6.3.1.2).
    """

    max_size: int = 512
    voi_lut: bool = False
    invert_monochrome1: bool = True

    def __post_init__(self) -> None:
        if self.max_size < 0:
            raise ValueError(f"max_size must be 0 (native) or positive, got {self.max_size}")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output tensor of a model, without the batch dimension (KServe v2 datatypes)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OutputMeasurement:
    """One value of a model's ``MEASUREMENTS`` output: its index, code and UCUM unit."""

    index: int
    code: Coding
    unit: str


@dataclass(frozen=True, slots=True)
class FindingSpec:
    """A coded finding a model can raise, and whether it is critical (priority flag)."""

    code: Coding
    critical: bool
    rule: str


@dataclass(frozen=True, slots=True)
class DeclaredInputs:
    """What a model's validation images looked like (manifest ``declared_inputs``), for drift monitoring.

    Not an envelope: nothing is refused for lying outside it. It records, honestly, the headers of the images the
    model was checked on: Manufacturer (0008,0070), Manufacturer's Model Name (0008,1090), KVP (0018,0060), Slice
    Thickness (0018,0050) and patient age (Patient's Age (0010,1010), else birth date to study date). An empty
    list or a None range means the validation images did not carry the attribute, so any value seen in
    production is outside what was validated. ``sources`` names the images.
    """

    sources: tuple[str, ...] = ()
    manufacturers: tuple[str, ...] = ()
    manufacturer_models: tuple[str, ...] = ()
    kvp: Range | None = None
    slice_thickness_mm: Range | None = None
    patient_age_years: Range | None = None


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One model of ``models/manifest.json``."""

    name: str
    version: str
    status: str  # "active" (run on studies) or "example" (served, never selected)
    title: str
    envelope: ModelEnvelope
    preprocessing: PreprocessingSpec
    per: str = "instance"  # "instance" (one image per call) or "slice" (slices of a series batched)
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    measurements: tuple[OutputMeasurement, ...] = ()
    findings: tuple[FindingSpec, ...] = ()
    declared_inputs: DeclaredInputs | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise ValueError("a manifest entry needs a name and a version")
        if self.per not in ("instance", "slice"):
            raise ValueError(f"{self.name}: per must be 'instance' or 'slice', got {self.per!r}")
        if self.status not in ("active", "example"):
            raise ValueError(f"{self.name}: status must be 'active' or 'example', got {self.status!r}")

    def assess(self, series: SeriesAttributes) -> EnvelopeDecision:
        """:func:`assess` for this model."""
        return assess(self.name, self.envelope, series)


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """All models of the repository, in manifest order."""

    entries: tuple[ManifestEntry, ...]

    def __post_init__(self) -> None:
        names = [e.name for e in self.entries]
        if len(names) != len(set(names)):
            raise ValueError(f"model names must be unique, got {names}")

    def entry(self, name: str) -> ManifestEntry:
        """The entry called `name` (KeyError if none)."""
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def active(self) -> tuple[ManifestEntry, ...]:
        """Entries with status ``active``: the models to consider for every study (readiness too)."""
        return tuple(e for e in self.entries if e.status == "active")

    def select(self, series: SeriesAttributes) -> tuple[tuple[ManifestEntry, EnvelopeDecision], ...]:
        """Active models that apply to `series`, each with RUN or NOT_ANALYSED (NOT_APPLICABLE dropped)."""
        decisions = ((e, e.assess(series)) for e in self.active())
        return tuple((e, d) for e, d in decisions if d.decision is not Decision.NOT_APPLICABLE)
