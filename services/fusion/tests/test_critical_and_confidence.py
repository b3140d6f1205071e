"""The critical-result policy (new or grown intracranial hemorrhage candidates) and the confidence modifiers."""

from __future__ import annotations

from datetime import date

import pytest

from radcds_fusion.domain.comparison import Change, Comparison, MeasuredFinding
from radcds_fusion.domain.confidence import ConfidenceLevel, assess_confidence
from radcds_fusion.domain.context import ImplantedDevice
from radcds_fusion.domain.critical import critical_results
from radcds_fusion.knowledge import load_critical_policy

ICH = "1386000"
PACEMAKER = ImplantedDevice("14106009", "Cardiac pacemaker")


def comparison(change, code=ICH):
    finding = MeasuredFinding(code, "brain", date(2026, 12, 1), value=2.0)
    return Comparison(change, None if change is Change.RESOLVED else finding, finding)


@pytest.mark.parametrize(
    ("change", "critical"),
    [
        (Change.NEW, True),
        (Change.INCREASED, True),
        (Change.STABLE, False),
        (Change.DECREASED, False),
        (Change.RESOLVED, False),
    ],
)
def test_intracranial_hemorrhage_is_critical_when_new_or_grown(change, critical):
    found = critical_results(load_critical_policy(), [comparison(change)])
    assert bool(found) is critical
    if critical:
        assert found[0].rule_id == "intracranial-hemorrhage-new-or-grown"
        assert found[0].reason.endswith("tell the care team now")


def test_other_findings_are_not_critical_by_this_policy():
    assert critical_results(load_critical_policy(), [comparison(Change.NEW, code="8186001")]) == []


def test_pacemaker_on_a_chest_radiograph_lowers_ctr_confidence_with_a_reason():
    result = assess_confidence(body_region="chest", measurement="cardiothoracic ratio", devices=[PACEMAKER])
    assert result.level is ConfidenceLevel.MODERATE
    assert result.reasons == (
        "Cardiac pacemaker documented: it can overlap the cardiac silhouette and change the cardiothoracic ratio.",
    )


def test_pacemaker_does_not_change_a_head_ct_finding():
    assert assess_confidence(body_region="head", measurement=None, devices=[PACEMAKER]).level is ConfidenceLevel.HIGH


def test_each_modifier_lowers_confidence_one_step_down_to_low():
    result = assess_confidence(
        body_region="chest",
        measurement="cardiothoracic ratio",
        devices=[PACEMAKER],
        envelope_reasons=["AP projection (the model is validated on PA)"],
        missing_context=["Device (EHR timed out)"],
    )
    assert result.level is ConfidenceLevel.LOW
    assert result.reasons[1:] == (
        "Outside the model's validated envelope: AP projection (the model is validated on PA).",
        "Context missing: Device (EHR timed out).",
    )
