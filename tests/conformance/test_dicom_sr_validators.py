"""radcds's DICOM output and test inputs checked by validators nobody on this project wrote.

- dicom3tools ``dciodvfy FILE`` (Debian ``dicom3tools``): the object against its IOD in PS3.3 (the
  modules and their Type 1/1C/2/2C attributes, defined terms, VR and VM). It prints the IOD it chose
  (``Comprehensive3DSR``, ``CTImage``), then ``Error - ...`` and ``Warning - ...`` lines; exit status 1
  when there is an error.
- PixelMed ``com.pixelmed.validate.DicomSRValidator -checkcontentitemorder -checktemplateid FILE``
  (Debian ``pixelmed-apps``): the SR's content tree against its IOD's SR constraints and its root
  template (TID 1500 and the templates it includes, PS3.16), in template row order. Its own ``main``
  exits 0 even on findings and on exceptions, so only its text is read: it must say it found the IOD
  and TID 1500 and finished both passes, and print no ``Error``/``Warning`` line. One JVM serves the
  whole module (deploy/local/pixelmed/SrValidatorServer.java, a stdin/stdout line protocol).
- dcmtk ``dsrdump -v +Pt FILE``: dcmtk's SR reader; ``W:``/``E:``/``F:`` lines on stderr are findings.

Inputs, produced by the real code path: each model's numeric core in process
(``radcds_devstack.testing.model_code``) behind the inference service's own pipeline
(``InferenceService.analyse_series``: preprocessing, interpretation, ``measurement_report``), on
pydicom-data's real PA chest CR RG1_UNCI.dcm (chest_ctr), the real head CT slice 693_UNCI.dcm
(head_ct_hyperdensity, negative) and the positive DERIVED from it by inserting a 7 mm disc of 60-76 HU
(``radcds_devstack.samples.head_ct_with_hyperdense_disc``).

Warnings: PixelMed and dsrdump, none allowed. dciodvfy, only the warnings listed in ``DCIODVFY_KNOWN``
(each explained there and in docs/models.md); any other warning fails, so a new one is looked at.
Each validator has a negative control that must be reported as failing.
"""

from __future__ import annotations

import asyncio
import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from radcds_devstack.samples import chest_cr, head_ct, head_ct_with_hyperdense_disc, part10
from radcds_devstack.testing import model_code
from radcds_inference.adapters.dicom.sr import DEIDENTIFICATION_METHOD_NOT_STATED, part10_bytes
from radcds_inference.adapters.triton.manifest import load_manifest

pytestmark = [pytest.mark.integration, pytest.mark.validators]

ROOT = Path(__file__).resolve().parents[2]
PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
PIXELMED_HARNESS = ROOT / "deploy" / "local" / "pixelmed" / "SrValidatorServer.java"
#: JDK 17's XPath limits stop PixelMed's template XSLT; lifted as for the Debian launcher.
JDK_XPATH_UNLIMITED = (
    "-Djdk.xml.xpathExprOpLimit=0",
    "-Djdk.xml.xpathExprGrpLimit=0",
    "-Djdk.xml.xpathTotalOpLimit=0",
)

#: dciodvfy warnings accepted on our SRs and generated CTs (docs/models.md, "Conformance").
DCIODVFY_KNOWN = (
    # dciodvfy's list of Coding Scheme Designators has no private schemes; PS3.16 8.2 allows "99..."
    # schemes, which the SR identifies in its Coding Scheme Identification Sequence (0008,0110).
    re.compile(r"Unrecognized defined term <99RADCDS> for value 1 of attribute <Coding Scheme Designator>"),
    # Patient's Name / Referring Physician's Name as the evidence has them ("CQ500-CT-310", "ward"):
    # one-component names, valid PN, flagged as the retired form; the SR copies the evidence's identity.
    re.compile(r"Value dubious for this VR - \(0x0010,0x0010\) PN Patient's Name .* Retired Person Name form"),
    re.compile(
        r"Value dubious for this VR - \(0x0008,0x0090\) PN Referring Physician's Name .* Retired Person Name form"
    ),
    # 693_UNCI.dcm has Study Date, Study Time and Study ID empty (Type 2); the SR copies the study's.
    re.compile(r"Missing attribute or value that would be needed to build DICOMDIR - Study (Date|Time|ID)$"),
    # 693_UNCI.dcm carries Scheduled Procedure Step ID (0040,0009), a standard attribute outside the CT IOD.
    re.compile(r"Attribute is not present in standard DICOM IOD - \(0x0040,0x0009\) SH Scheduled Procedure Step ID"),
    re.compile(r"Dicom dataset contains attributes not present in standard DICOM IOD - this is a Standard Extended"),
)


# ---- the validators, each as a function from a file to its findings ----------------------------
@dataclass(frozen=True)
class Dciodvfy:
    iod: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    returncode: int

    @property
    def unknown_warnings(self) -> tuple[str, ...]:
        return tuple(w for w in self.warnings if not any(k.search(w) for k in DCIODVFY_KNOWN))


def dciodvfy(path: Path) -> Dciodvfy:
    """``dciodvfy FILE``: the IOD line, the ``Error -`` and ``Warning -`` lines (stderr), the exit status."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = [line.strip() for line in (run.stderr + run.stdout).splitlines() if line.strip()]
    errors = tuple(line for line in lines if line.startswith("Error"))
    warnings = tuple(line for line in lines if line.startswith("Warning"))
    others = [line for line in lines if not line.startswith(("Error", "Warning"))]
    return Dciodvfy(others[0] if others else "", errors, warnings, run.returncode)


@dataclass(frozen=True)
class PixelMedReport:
    text: str
    outcome: str  # "ok" or "exception <class>: <message>"

    @property
    def findings(self) -> tuple[str, ...]:
        return tuple(line for line in self.text.splitlines() if re.match(r"\s*(Error|Warning)\b", line))

    @property
    def completed(self) -> bool:
        """Both passes ran on a TID 1500 Comprehensive 3D SR (the checks did not silently stop)."""
        return self.outcome == "ok" and all(
            marker in self.text
            for marker in (
                "Found Comprehensive3DSR IOD",
                "Found Root Template TID_1500 (MeasurementReport)",
                "Root Template Validation Complete",
                "IOD validation complete",
            )
        )


class PixelMed:
    """One JVM running deploy/local/pixelmed/SrValidatorServer.java: a file path in, the report out."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            ["java", *JDK_XPATH_UNLIMITED, "-cp", str(PIXELMED_JAR), str(PIXELMED_HARNESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        ready = self._readline()
        if ready != "#READY":
            self.close()
            raise RuntimeError(f"PixelMed harness did not start (first line {ready!r})")

    def _readline(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"PixelMed harness exited (status {self._process.poll()})")
        return line.rstrip("\n")

    def validate(self, path: Path) -> PixelMedReport:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{path}\n")
        self._process.stdin.flush()
        lines = []
        while not (line := self._readline()).startswith("#END "):
            lines.append(line)
        return PixelMedReport("\n".join(lines), line.removeprefix("#END "))

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def dsrdump(path: Path) -> tuple[int, tuple[str, ...], str]:
    """``dsrdump -v +Pt FILE`` (+Pt prints template identifiers): status, ``W:``/``E:``/``F:`` lines, dump."""
    run = subprocess.run(["dsrdump", "-v", "+Pt", str(path)], capture_output=True, text=True, timeout=120, check=False)
    findings = tuple(line for line in run.stderr.splitlines() if re.match(r"[WEF]: ", line))
    return run.returncode, findings, run.stdout


@pytest.fixture(scope="module")
def pixelmed() -> Iterator[PixelMed]:
    if shutil.which("java") is None or not PIXELMED_JAR.exists():
        pytest.fail("PixelMed or a JDK is missing: run make deps (Debian pixelmed-apps, default-jdk-headless)")
    validator = PixelMed()
    try:
        yield validator
    finally:
        validator.close()


@pytest.fixture(scope="module", autouse=True)
def _debian_validators() -> None:
    missing = [tool for tool in ("dciodvfy", "dsrdump") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run make deps (Debian dicom3tools, dcmtk)")


# ---- the SRs, through the inference service's pipeline ---------------------------------------
class InProcessModels:
    """The models' numeric cores (models/<name>/1/model.py) in place of Triton."""

    def __init__(self) -> None:
        self.chest = model_code(ROOT / "models", "chest_ctr")
        self.head = model_code(ROOT / "models", "head_ct_hyperdensity")

    async def infer(self, model: str, version: str, inputs: dict[str, Any], outputs: Any) -> dict[str, Any]:
        if model == "chest_ctr":
            results = [self.chest.measure_ctr(image) for image in inputs["IMAGE"]]
            measurements = [
                r.measurements((float(s[0]), float(s[1])))
                for r, s in zip(results, inputs["PIXEL_SPACING"], strict=True)
            ]
        else:
            results = [
                self.head.find_hyperdensities(i, tuple(float(v) for v in s))
                for i, s in zip(inputs["IMAGE"], inputs["SPACING"], strict=True)
            ]
            measurements = [r.measurements() for r in results]
        return {
            "STATUS": np.array([[r.status] for r in results], dtype=np.int32),
            "MEASUREMENTS": np.stack(measurements),
            "LOCATIONS": np.stack([r.locations() for r in results]),
        }


def analyse(ds: Dataset) -> list[Any]:
    """The service's results (SeriesResult: analysis and SR) for a one-instance series of ``ds``."""
    from radcds_inference.domain.study import InstanceLocator, SeriesLocator
    from radcds_inference.handlers import InferenceService

    data = part10(ds)

    class OneInstance:
        async def retrieve_instance(self, url: str) -> bytes:
            return data

    service = InferenceService(
        manifest=load_manifest(ROOT / "models"), models=InProcessModels(), dicomweb=OneInstance(), publisher=None
    )
    series = SeriesLocator(
        ds.SeriesInstanceUID, ds.Modality, (InstanceLocator(ds.SOPInstanceUID, ds.SOPClassUID, "instance"),)
    )
    return asyncio.run(service.analyse_series(ds.StudyInstanceUID, series, service.entries()))


def as_shipped(name: str) -> Dataset:
    """A pydicom-data file as it is, with fresh Study/Series/SOP Instance UIDs (imaging stores one once)."""
    ds = pydicom.dcmread(str(get_testdata_file(name)))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def the_sr(ds: Dataset, model: str) -> Dataset:
    (result,) = [r for r in analyse(ds) if r.analysis.model.name == model]
    assert result.analysis.analysed and result.report is not None, result.analysis.not_analysed_reason
    return result.report


CASES = {
    "chest_ctr-RG1_UNCI-PA": (lambda: chest_cr(), "chest_ctr"),
    "head_ct_hyperdensity-693_UNCI-negative": (lambda: head_ct(), "head_ct_hyperdensity"),
    "head_ct_hyperdensity-693_UNCI-derived-positive": (
        lambda: head_ct_with_hyperdense_disc()[0],
        "head_ct_hyperdensity",
    ),
    # The file as shipped (fresh UIDs only): Patient Identity Removed YES without a De-identification
    # Method, as evidence from elsewhere may be; the SR must still be valid (its method text says so).
    "head_ct_hyperdensity-693_UNCI-as-shipped": (lambda: as_shipped("693_UNCI.dcm"), "head_ct_hyperdensity"),
}


@pytest.fixture(scope="module")
def sr_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sr")
    files = {}
    for case, (make, model) in CASES.items():
        path = folder / f"{case}.dcm"
        path.write_bytes(part10_bytes(the_sr(make(), model)))
        files[case] = path
    return files


def _write(folder: Path, name: str, ds: Dataset) -> Path:
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


# ---- our SRs: zero errors ---------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_model_sr_has_no_dciodvfy_error_and_only_known_warnings(sr_files: dict[str, Path], case: str):
    result = dciodvfy(sr_files[case])
    assert result.iod == "Comprehensive3DSR"
    assert result.errors == () and result.returncode == 0
    assert result.unknown_warnings == ()


@pytest.mark.parametrize("case", CASES)
def test_model_sr_passes_pixelmed_tid1500_template_and_content_item_order_checks(
    sr_files: dict[str, Path], case: str, pixelmed: PixelMed
):
    report = pixelmed.validate(sr_files[case])
    assert report.completed, report.text
    assert report.findings == (), report.text


@pytest.mark.parametrize("case", CASES)
def test_model_sr_is_read_by_dsrdump_without_warnings_and_shows_not_for_diagnostic_use(
    sr_files: dict[str, Path], case: str
):
    status, findings, dump = dsrdump(sr_files[case])
    assert status == 0 and findings == ()
    assert "TID 1500" in dump and "NOT FOR DIAGNOSTIC USE" in dump
    assert '<contains CONTAINER:(,,"Qualitative Evaluations")=' in dump


def test_sr_of_evidence_without_a_deidentification_method_states_that_the_method_was_not_stated(
    sr_files: dict[str, Path],
):
    sr = pydicom.dcmread(sr_files["head_ct_hyperdensity-693_UNCI-as-shipped"])
    assert sr.PatientIdentityRemoved == "YES"
    assert sr.DeidentificationMethod == DEIDENTIFICATION_METHOD_NOT_STATED


def test_not_analysed_case_produces_no_sr():
    """chest_ctr on an AP chest CR (DERIVED view, header only) is NOT_ANALYSED: a findings event, no SR."""
    (result,) = [r for r in analyse(chest_cr(view_position="AP")) if r.analysis.model.name == "chest_ctr"]
    assert not result.analysis.analysed and result.report is None


# ---- the generated head CTs: zero errors ------------------------------------------------------
@pytest.mark.parametrize(
    "make", [head_ct, lambda: head_ct_with_hyperdense_disc()[0]], ids=["693_UNCI", "693_UNCI-derived-positive"]
)
def test_generated_head_ct_has_no_dciodvfy_error_and_only_known_warnings(tmp_path: Path, make):
    result = dciodvfy(_write(tmp_path, "ct.dcm", make()))
    assert result.iod == "CTImage"
    assert result.errors == () and result.returncode == 0
    assert result.unknown_warnings == ()


# ---- third-party inputs, as they are (recorded in docs/models.md) -----------------------------
def test_raw_693_unci_head_ct_has_the_dciodvfy_errors_the_sample_generator_fixes():
    result = dciodvfy(Path(str(get_testdata_file("693_UNCI.dcm"))))
    assert result.iod == "CTImage" and result.returncode == 1
    assert sorted(result.errors) == sorted(
        (
            "Error - Missing attribute Type 1C Conditional Element=<DeidentificationMethod> Module=<Patient>",
            "Error - Missing attribute Type 1C Conditional Element=<DeidentificationMethodCodeSequence>"
            " Module=<Patient>",
            "Error - Missing attribute Type 2C Conditional Element=<Laterality> Module=<GeneralSeries>",
            "Error - Missing attribute Type 1 Required Element=<FrameOfReferenceUID> Module=<FrameOfReference>",
        )
    )


def test_raw_rg1_unci_chest_cr_has_only_the_zero_pixel_spacing_dciodvfy_errors():
    result = dciodvfy(Path(str(get_testdata_file("RG1_UNCI.dcm"))))
    assert result.iod == "CRImage" and result.returncode == 1
    assert result.errors == (
        "Error - Value is zero for value 1 of attribute <Pixel Spacing>",
        "Error - Value is zero for value 2 of attribute <Pixel Spacing>",
    )


# ---- negative controls: a broken object must be reported ---------------------------------------
def test_sr_with_the_comment_text_back_at_the_tid1500_root_fails_pixelmed_template_check(
    sr_files: dict[str, Path], tmp_path: Path, pixelmed: PixelMed
):
    sr = pydicom.dcmread(sr_files["head_ct_hyperdensity-693_UNCI-derived-positive"])
    (container,) = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "C0034375"]
    sr.ContentSequence.remove(container)
    sr.ContentSequence.append(container.ContentSequence[0])  # the TEXT "Comment" directly under the root
    report = pixelmed.validate(_write(tmp_path, "text-at-root.dcm", sr))
    assert report.completed, report.text
    assert any("Content Item not in template" in f and "Comment" in f for f in report.findings), report.text


def test_sr_with_content_items_out_of_template_order_fails_pixelmed_order_check(
    sr_files: dict[str, Path], tmp_path: Path, pixelmed: PixelMed
):
    sr = pydicom.dcmread(sr_files["chest_ctr-RG1_UNCI-PA"])
    items = list(sr.ContentSequence)
    # TID 1500 row 12 (Qualitative Evaluations) before row 6 (Imaging Measurements): PixelMed compares a
    # content item's template row with its preceding sibling's when both come from the same template.
    sr.ContentSequence = [*items[:-2], items[-1], items[-2]]
    report = pixelmed.validate(_write(tmp_path, "out-of-order.dcm", sr))
    assert report.completed, report.text
    assert any("Content Item not in template row order" in f for f in report.findings), report.text


def test_sr_without_a_type_1c_deidentification_method_fails_dciodvfy(sr_files: dict[str, Path], tmp_path: Path):
    sr = pydicom.dcmread(sr_files["head_ct_hyperdensity-693_UNCI-as-shipped"])
    assert sr.PatientIdentityRemoved == "YES"
    del sr.DeidentificationMethod
    result = dciodvfy(_write(tmp_path, "no-deid-method.dcm", sr))
    assert result.returncode == 1
    assert any("<DeidentificationMethod>" in e for e in result.errors), result.errors


def test_sr_without_its_type_1_completion_flag_fails_dciodvfy_and_dsrdump(sr_files: dict[str, Path], tmp_path: Path):
    sr = pydicom.dcmread(sr_files["chest_ctr-RG1_UNCI-PA"])
    del sr.CompletionFlag
    path = _write(tmp_path, "no-completion-flag.dcm", sr)
    result = dciodvfy(path)
    assert result.returncode == 1 and any("CompletionFlag" in e for e in result.errors), result.errors
    _, findings, _ = dsrdump(path)
    assert any(f.startswith("W: CompletionFlag") for f in findings), findings


def test_sr_with_a_text_item_without_its_value_fails_dsrdump(sr_files: dict[str, Path], tmp_path: Path):
    sr = pydicom.dcmread(sr_files["chest_ctr-RG1_UNCI-PA"])
    (container,) = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "C0034375"]
    del container.ContentSequence[0].TextValue
    status, findings, _ = dsrdump(_write(tmp_path, "text-without-value.dcm", sr))
    assert status != 0
    assert any(f.startswith("E: ") for f in findings) and any("TextValue" in f for f in findings), findings


def test_generated_head_ct_without_its_frame_of_reference_uid_fails_dciodvfy(tmp_path: Path):
    ds = copy.deepcopy(head_ct())
    del ds.FrameOfReferenceUID
    result = dciodvfy(_write(tmp_path, "ct-no-for.dcm", ds))
    assert result.returncode == 1
    assert any("<FrameOfReferenceUID>" in e for e in result.errors), result.errors
