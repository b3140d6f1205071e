"""FHIR R4 JSON → ClinicalContext parts (adapters/ehr_mapping.py), on the official R4 examples where they fit
(fixtures/r4-examples, npm hl7.fhir.r4.examples 4.0.1) and on small resources written here after them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from radcds_fusion.adapters import ehr_mapping as m
from radcds_fusion.domain.context import SmokingStatus
from radcds_fusion.domain.nodules import Composition

EXAMPLES = Path(__file__).parent / "fixtures" / "r4-examples"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
TODAY = date(2026, 12, 1)


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def cc(system: str, code: str, display: str = "") -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def condition(
    code: dict[str, Any], clinical: str | None = "active", verification: str | None = "confirmed"
) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Condition", "code": code}
    if clinical:
        r["clinicalStatus"] = {"coding": [{"code": clinical}]}
    if verification:
        r["verificationStatus"] = {"coding": [{"code": verification}]}
    return r


def obs(code: dict[str, Any], when: str = "2026-11-01", status: str = "final", **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": status, "code": code, "effectiveDateTime": when, **value}


def test_r4_example_patient_gives_birth_date_and_gender() -> None:
    assert m.patient_demographics(example("Patient-example")) == (date(1974, 12, 25), "male")


def test_patient_with_unknown_gender_code_and_partial_birth_date_reads_year_only() -> None:
    assert m.patient_demographics({"resourceType": "Patient", "gender": "M", "birthDate": "1960"}) == (
        date(1960, 1, 1),
        None,
    )


def test_r4_example_resolved_malignant_neoplasm_is_a_known_cancer() -> None:
    flags = m.condition_flags([example("Condition-f202")])
    assert (flags.known_cancer, flags.copd, flags.immunosuppressed) == (True, False, False)


def test_r4_example_condition_coded_only_by_text_sets_no_flag() -> None:
    flags = m.condition_flags([example("Condition-example2")])
    assert (flags.known_cancer, flags.copd, flags.immunosuppressed) == (False, False, False)


def test_icd10cm_codes_with_dots_match_their_category_prefix() -> None:
    flags = m.condition_flags(
        [condition(cc(ICD10CM, "C34.11")), condition(cc(ICD10CM, "J44.9")), condition(cc(ICD10CM, "D84.821"))]
    )
    assert (flags.known_cancer, flags.copd, flags.immunosuppressed) == (True, True, True)


def test_refuted_or_entered_in_error_conditions_never_count() -> None:
    flags = m.condition_flags(
        [
            condition(cc(SCT, "363346000"), verification="refuted"),
            condition(cc(SCT, "13645005"), verification="entered-in-error"),
        ]
    )
    assert (flags.known_cancer, flags.copd) == (False, False)


def test_resolved_copd_does_not_count_but_a_condition_without_clinical_status_does() -> None:
    assert m.condition_flags([condition(cc(SCT, "13645005"), clinical="resolved")]).copd is False
    assert m.condition_flags([condition(cc(SCT, "13645005"), clinical=None)]).copd is True


def test_smoking_status_pack_years_and_date_ceased_are_read_latest_first() -> None:
    status = cc(LOINC, "72166-2")
    history = m.smoking_history(
        [
            obs(status, "2020-01-01", valueCodeableConcept=cc(SCT, "449868002")),
            obs(status, "2026-10-01", valueCodeableConcept=cc(SCT, "8517006")),
            obs(cc(SCT, "401201003"), valueQuantity={"value": 30, "code": "{pack-years}"}),
            obs(cc(SCT, "160625004"), valueDateTime="2024-12-01"),
        ],
        today=TODAY,
    )
    assert history == m.SmokingHistory(status=SmokingStatus.FORMER, pack_years=30.0, years_since_quit=2.0)


def test_latest_smoking_status_unknown_leaves_status_unknown_even_with_an_older_known_one() -> None:
    status = cc(LOINC, "72166-2")
    history = m.smoking_history(
        [
            obs(status, "2020-01-01", valueCodeableConcept=cc(SCT, "266919005")),
            obs(status, "2026-10-01", valueCodeableConcept=cc(SCT, "266927001")),
        ],
        today=TODAY,
    )
    assert history.status is None


def test_entered_in_error_smoking_status_is_ignored() -> None:
    history = m.smoking_history(
        [obs(cc(LOINC, "72166-2"), status="entered-in-error", valueCodeableConcept=cc(SCT, "449868002"))], today=TODAY
    )
    assert history.status is None


def test_r4_example_egfr_without_a_number_is_ignored() -> None:
    assert m.renal_function([example("Observation-f205")]) == m.RenalFunction(None, None)


def test_egfr_and_creatinine_in_umol_per_litre_are_converted_to_mg_per_dl() -> None:
    renal = m.renal_function(
        [
            obs(cc(LOINC, "98979-8"), valueQuantity={"value": 78, "code": "mL/min/{1.73_m2}"}),
            obs(cc(LOINC, "14682-9"), valueQuantity={"value": 97, "code": "umol/L"}),
        ]
    )
    assert renal == m.RenalFunction(egfr_ml_min_173m2=78.0, creatinine_mg_dl=1.1)


def test_creatinine_in_an_unknown_unit_is_ignored() -> None:
    renal = m.renal_function([obs(cc(LOINC, "2160-0"), valueQuantity={"value": 1.0, "code": "g/L"})])
    assert renal.creatinine_mg_dl is None


def test_r4_example_pacemaker_implant_procedure_gives_a_pacemaker_device_and_a_procedure() -> None:
    implant = example("Procedure-example-implant")
    devices = m.implanted_devices([], [implant])
    assert [(d.code, d.display) for d in devices] == [("14106009", "Cardiac pacemaker")]
    assert m.procedure_names([implant]) == ("Insertion of intracardiac pacemaker (procedure) (SCT 25267002)",)


def test_device_and_its_implant_procedure_give_one_device() -> None:
    device = {"resourceType": "Device", "status": "active", "type": cc(SCT, "14106009", "Cardiac pacemaker")}
    devices = m.implanted_devices([device], [example("Procedure-example-implant")])
    assert len(devices) == 1


def test_inactive_device_is_not_reported() -> None:
    device = {"resourceType": "Device", "status": "inactive", "type": cc(SCT, "14106009")}
    assert m.implanted_devices([device], []) == ()


def test_r4_example_ct_of_upper_trunk_is_a_chest_prior_with_its_study_uid() -> None:
    priors = m.prior_studies([example("ImagingStudy-example")], [], [], region="chest", before=TODAY)
    assert len(priors) == 1
    assert priors[0].study_uid == "2.16.124.113543.6003.1154777499.30246.19789.3503430045"
    assert priors[0].started == date(2011, 1, 1)
    assert priors[0].modalities == ("CT",)
    assert priors[0].body_site == "67734004"


def test_study_of_another_region_or_not_before_the_day_is_not_a_prior() -> None:
    study = example("ImagingStudy-example")
    head = {**study, "series": [{**study["series"][0], "bodySite": {"system": SCT, "code": "69536005"}}]}
    assert m.prior_studies([head], [], [], region="chest", before=TODAY) == ()
    assert m.prior_studies([study], [], [], region="chest", before=date(2011, 1, 1)) == ()


def test_prior_study_carries_its_report_and_nodule_finding() -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "ct1",
        "status": "available",
        "started": "2026-06-01",
        "series": [{"modality": {"code": "CT"}, "bodySite": {"system": SCT, "code": "51185008"}}],
    }
    nodule = obs(
        cc(SCT, "786838002"),
        "2026-06-01",
        id="n1",
        bodySite=cc(SCT, "45653009"),
        valueQuantity={"value": 6, "code": "mm"},
        component=[
            {"code": cc(SCT, "103339001"), "valueQuantity": {"value": 6.4, "code": "mm"}},
            {"code": cc(SCT, "103340004"), "valueQuantity": {"value": 0.56, "code": "cm"}},
        ],
    )
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "imagingStudy": [{"reference": "ImagingStudy/ct1"}],
        "result": [{"reference": "Observation/n1"}],
    }
    (prior,) = m.prior_studies([study], [report], [nodule], region="chest", before=TODAY)
    assert prior.report_reference == "DiagnosticReport/r1"
    (finding,) = prior.findings
    assert (finding.code, finding.body_site, finding.study_date) == (
        "786838002",
        "Upper lobe of right lung",
        date(2026, 6, 1),
    )
    assert finding.nodule is not None and finding.nodule.composition is Composition.SOLID
    assert finding.value == 6.0
    assert finding.reference == "Observation/n1"


def test_impossible_prior_nodule_measurement_is_left_out() -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "ct1",
        "status": "available",
        "started": "2026-06-01",
        "series": [{"bodySite": {"system": SCT, "code": "51185008"}}],
    }
    nodule = obs(
        cc(SCT, "786838002"),
        id="n1",
        derivedFrom=[{"reference": "ImagingStudy/ct1"}],
        valueQuantity={"value": -3, "code": "mm"},
    )
    (prior,) = m.prior_studies([study], [], [nodule], region="chest", before=TODAY)
    assert prior.findings == ()


def test_every_test_ehr_patient_resource_is_valid_fhir_and_maps_as_the_integration_tests_expect() -> None:
    import importlib.util

    from fhir.resources.R4B import get_fhir_model_class

    path = Path(__file__).resolve().parents[3] / "tests" / "integration" / "fhir" / "ehr_patients.py"
    spec = importlib.util.spec_from_file_location("ehr_patients", path)
    assert spec is not None and spec.loader is not None
    patients = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(patients)
    bundle = patients.transaction_bundle(TODAY)
    get_fhir_model_class("Bundle").model_validate(bundle)  # strict: unknown or mistyped elements raise
    smoker = [r for r in patients.resources(TODAY) if patients.SMOKER in r["id"]]
    by_type = {
        t: [r for r in smoker if r["resourceType"] == t] for t in ("ImagingStudy", "DiagnosticReport", "Observation")
    }
    (prior,) = m.prior_studies(
        by_type["ImagingStudy"], by_type["DiagnosticReport"], by_type["Observation"], region="chest", before=TODAY
    )
    assert (TODAY - prior.started).days == patients.PRIOR_CT_DAYS_BEFORE if prior.started else False
    assert [f.value for f in prior.findings] == [6.0]


def test_chest_ct_report_without_an_imaging_study_is_a_prior_with_its_findings() -> None:
    nodule = obs(
        cc(SCT, "786838002"),
        "2026-03-01",
        id="n9",
        bodySite=cc(SCT, "45653009"),
        valueQuantity={"value": 8, "code": "mm"},
    )
    report = {
        "resourceType": "DiagnosticReport",
        "id": "outside-ct",
        "status": "final",
        "code": cc(LOINC, "24627-2", "CT Chest"),
        "effectiveDateTime": "2026-03-01",
        "result": [{"reference": "Observation/n9"}],
    }
    head = {**report, "id": "head-ct", "code": cc(LOINC, "24725-4", "CT Head")}
    (prior,) = m.prior_studies([], [report, head], [nodule], region="chest", before=TODAY)
    assert (prior.study_uid, prior.started, prior.modalities) == (None, date(2026, 3, 1), ("CT",))
    assert (prior.report_reference, prior.description) == ("DiagnosticReport/outside-ct", "CT Chest")
    assert [f.value for f in prior.findings] == [8.0]


def _chest_ct() -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": "ct1",
        "started": "2026-06-01",
        "series": [{"modality": {"code": "CT"}, "bodySite": {"system": SCT, "code": "51185008"}}],
    }


def test_prior_nodule_location_is_named_by_its_lung_code_whatever_the_ehr_display_says():
    study = _chest_ct()
    nodule = obs(
        cc(SCT, "786838002"),
        "2026-06-01",
        id="n1",
        bodySite=cc(SCT, "45653009", "RUL"),
        valueQuantity={"value": 6, "code": "mm"},
        derivedFrom=[{"reference": "ImagingStudy/ct1"}],
    )
    (prior,) = m.prior_studies([study], [], [nodule], region="chest", before=TODAY)
    (finding,) = prior.findings
    assert finding.body_site == "Upper lobe of right lung"  # as an SR's Finding Site 45653009 is named
    assert finding.nodule is not None and finding.nodule.location == "Upper lobe of right lung"


def test_prior_finding_site_outside_the_lung_table_keeps_the_ehr_display():
    study = _chest_ct()
    nodule = obs(
        cc(SCT, "786838002"),
        "2026-06-01",
        id="n1",
        bodySite=cc(SCT, "51185008", "Thoracic structure"),
        valueQuantity={"value": 6, "code": "mm"},
        derivedFrom=[{"reference": "ImagingStudy/ct1"}],
    )
    (prior,) = m.prior_studies([study], [], [nodule], region="chest", before=TODAY)
    assert prior.findings[0].body_site == "Thoracic structure"
