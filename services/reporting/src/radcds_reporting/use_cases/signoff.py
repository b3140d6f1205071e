"""Use case: a radiologist signs, amends or corrects a DiagnosticReport (PUT or JSON Patch).

FHIR R4 DiagnosticReport.status life cycle (:mod:`radcds_reporting.domain.report_status`): ``final``
needs the signing radiologist as ``resultsInterpreter`` (or ``performer``) referencing a
Practitioner, from the request or from the token's ``fhirUser``; a change to a signed report is
stored as ``amended`` (or ``corrected`` when asked); every version stays in the history. Each
signed version gets a Provenance naming the radiologist, the result Observations follow the
report's status, and ``DiagnosticReportStored`` is published so HL7 v2 can send OBR-25 F or C.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from radcds.adapters.db.outbox import enqueue
from radcds.adapters.fhir.resources import InvalidResource
from radcds.domain.events import REPORT_STORED, DiagnosticReportStored
from radcds_reporting.adapters.assessments import ReportContext, context_for
from radcds_reporting.adapters.fhir import entered_findings
from radcds_reporting.adapters.fhir import reporting as fhir_reporting
from radcds_reporting.adapters.narrative import conclusion, content_of, presented_forms
from radcds_reporting.adapters.repository import FhirRepository, fhir_instant
from radcds_reporting.domain.ports import OutboxNotifier
from radcds_reporting.domain.report_status import SIGNED, AuthorRequired, ReportStatus, next_status, require_author
from radcds_reporting.use_cases.oru import ResultOutbox

SIGNOFF_EVENT_NAMESPACE = uuid.UUID("2b8d6e4f-7a1c-4e3b-9d5f-6c8a0b2e4d71")
_AUTHOR_TYPES = ("Practitioner/", "PractitionerRole/")
#: JSON Patch paths a client may change on a DiagnosticReport.
PATCHABLE = ("/status", "/resultsInterpreter", "/performer", "/conclusion", "/conclusionCode", "/presentedForm")
_OBSERVATION_STATUS = {
    ReportStatus.FINAL: "final",
    ReportStatus.AMENDED: "amended",
    ReportStatus.CORRECTED: "corrected",
    ReportStatus.APPENDED: "amended",
    ReportStatus.ENTERED_IN_ERROR: "entered-in-error",
    ReportStatus.CANCELLED: "cancelled",
}


class ReportNotFound(LookupError):
    """No DiagnosticReport with that id (HTTP 404)."""


class InvalidChange(ValueError):
    """The requested change is malformed or touches what may not change (HTTP 422)."""


class PatchError(ValueError):
    """A JSON Patch document that cannot be applied (RFC 6902; HTTP 422)."""


def apply_json_patch(document: dict[str, Any], operations: Any, *, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch (add, replace, remove, test) limited to the ``allowed`` paths."""
    if not isinstance(operations, list) or not operations:
        raise PatchError("a JSON Patch is a non-empty array of operations")
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise PatchError("each operation needs op and path")
        path: str = op["path"]
        if not any(path == a or path.startswith(a + "/") for a in allowed):
            raise PatchError(f"path {path} may not be patched (allowed: {', '.join(allowed)})")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]
        parent: Any = doc
        for t in tokens[:-1]:
            try:
                parent = parent[int(t)] if isinstance(parent, list) else parent[t]
            except (KeyError, IndexError, ValueError):
                raise PatchError(f"path {path} does not exist") from None
        last = tokens[-1]
        kind = op["op"]
        if kind in {"add", "replace", "test"} and "value" not in op:
            raise PatchError(f"{kind} needs a value")
        try:
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if current != op["value"]:
                    raise PatchError(f"test failed at {path}")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    if last not in parent:
                        raise PatchError(f"replace: {path} does not exist")
                    parent[last] = op["value"]
            elif kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), op["value"])
                else:
                    parent[last] = op["value"]
            else:
                raise PatchError(f"operation {kind!r} is not supported (add, replace, remove, test)")
        except (KeyError, IndexError, ValueError, TypeError):
            raise PatchError(f"{kind} at {path} cannot be applied") from None
    return doc


def _author_of(dr: dict[str, Any]) -> str:
    for field in ("resultsInterpreter", "performer"):
        for ref in dr.get(field, []):
            if str(ref.get("reference", "")).startswith(_AUTHOR_TYPES):
                return str(ref["reference"])
    return ""


def _observations(
    repo: FhirRepository, dr: dict[str, Any], pending: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The report's result Observations: the algorithms' and the radiologist's own findings (the narrative
    lists both and counts only the algorithms' as "algorithm measurements"); ``pending`` are the findings
    sent with this change, not stored yet."""
    waiting = {o["id"]: o for o in pending or []}
    found = (
        waiting.get(oid) or repo.read("Observation", oid)
        for oid in (ref["reference"].split("/")[-1] for ref in dr.get("result", []))
    )
    return [o for o in found if o]


def _rendered_report(
    repo: FhirRepository,
    dr: dict[str, Any],
    *,
    status: ReportStatus,
    author: str,
    now: datetime,
    pending: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The HTML and PDF of ``dr`` re-rendered for ``status`` (signed by ``author`` when signed)."""
    observations = _observations(repo, dr, pending)
    study = next(
        (s for ref in dr.get("imagingStudy", []) if (s := repo.read("ImagingStudy", ref["reference"].split("/")[-1]))),
        {},
    )
    label = study.get("description") or "Imaging study"
    signed = status in SIGNED
    content = content_of(
        label,
        observations,
        status=status.value,
        signed_by=author if signed else "",
        signed_at=fhir_instant(now) if signed else "",
        context=_context(repo, dr),
    )
    return presented_forms(content, creation=fhir_instant(now))


def _context(repo: FhirRepository, dr: dict[str, Any]) -> ReportContext | None:
    """fusion's latest assessment of the report's study (its context sections)."""
    study_uid = _study_uid(repo, dr)
    return context_for(repo.connection, study_uid) if study_uid else None


def _study_uid(repo: FhirRepository, dr: dict[str, Any]) -> str:
    """The Study Instance UID the report belongs to ("" when unknown)."""
    return repo.study_instance_uid_of("DiagnosticReport", str(dr.get("id", "")))


def _without(dr: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in dr.items() if k not in keys}


class ReportSignOff:
    """Status changes of DiagnosticReports by radiologists."""

    def __init__(
        self,
        *,
        engine: Engine,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        results: ResultOutbox | None = None,
        relay: OutboxNotifier | None = None,
    ) -> None:
        self._engine = engine
        #: Publishes the status event after the commit (the app's one relay; None: it waits in the outbox).
        self._relay = relay
        self._clock = clock
        self._results = results

    def update(
        self,
        *,
        report_id: str,
        resource: dict[str, Any] | None = None,
        patch: Any = None,
        user: str | None = None,
        if_match: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Apply a PUT body or a JSON Patch; return (stored report, whether a new version was written).

        A new version is queued as an ORU^R01 (OBR-25 F, or C for a change after signing) in the
        same transaction, and the delivery workers are woken after the commit.
        """
        stored, written = self._update(
            report_id=report_id, resource=resource, patch=patch, user=user, if_match=if_match
        )
        if written and self._relay is not None:
            self._relay.notify()
        if written and self._results is not None:
            self._results.notify()
        return stored, written

    def _update(
        self,
        *,
        report_id: str,
        resource: dict[str, Any] | None,
        patch: Any,
        user: str | None,
        if_match: str | None,
    ) -> tuple[dict[str, Any], bool]:
        now = self._clock()
        with self._engine.begin() as conn:
            repo = FhirRepository(conn)
            current = repo.read("DiagnosticReport", report_id)
            if current is None:
                raise ReportNotFound(f"DiagnosticReport/{report_id} is not known")
            if patch is not None:
                new = apply_json_patch(current, patch, allowed=PATCHABLE)
            else:
                assert resource is not None
                new = copy.deepcopy(resource)
                if new.get("resourceType") != "DiagnosticReport" or new.get("id") != report_id:
                    raise InvalidChange("the body must be this DiagnosticReport (resourceType and id)")
                for key in ("subject", "imagingStudy", "identifier"):
                    if new.get(key) != current.get(key):
                        raise InvalidChange(f"{key} of a DiagnosticReport cannot change")
            # Structured findings sent as contained Observations become stand-alone ones in ``result``.
            sent = entered_findings.take_contained(new, report_id=report_id) if patch is None else []
            try:
                requested = ReportStatus(str(new.get("status")))
            except ValueError:
                raise InvalidChange(f"status {new.get('status')!r} is not a DiagnosticReport status") from None
            author = _author_of(new)
            if not author and user and user.startswith(_AUTHOR_TYPES):
                author = user
            previous = ReportStatus(current["status"])
            # The narrative is generated when stored: a client's stale or missing ``text`` is no change.
            changed = _without(new, "meta", "text", "status", "resultsInterpreter") != _without(
                current, "meta", "text", "status", "resultsInterpreter"
            )
            if entered_findings.any_changed(repo, sent):
                changed = True  # a new or changed finding is new report content: a version issued now
                new["issued"] = fhir_instant(now)
            status = next_status(previous, requested, content_changed=changed)
            require_author(status, author)
            if sent and not author:
                raise entered_findings.InvalidFinding(
                    "structured findings need the radiologist who entered them (resultsInterpreter or fhirUser)",
                    expression="DiagnosticReport.resultsInterpreter",
                    code="required",
                )
            new["status"] = status.value
            if status in SIGNED and not _author_of(new):
                new["resultsInterpreter"] = [{"reference": author}]
            if status in SIGNED and status != previous:
                new["issued"] = fhir_instant(now)
            observed = _OBSERVATION_STATUS.get(status, "preliminary")
            pending = [
                entered_findings.observation(f, report=new, author=author, status=observed, now=now) for f in sent
            ]
            if status in SIGNED and status != previous and new.get("conclusion") == current.get("conclusion"):
                # The radiologist signed the generated text: it now says so (the AI origin is in Provenance).
                new["conclusion"] = conclusion(
                    _observations(repo, new, pending),
                    status=status.value,
                    signed_by=author,
                    context=_context(repo, new),
                )
            if status != previous and new.get("presentedForm") == current.get("presentedForm"):
                # The readable report follows the status (unless the radiologist sent their own text).
                new["presentedForm"] = _rendered_report(
                    repo, new, status=status, author=author, now=now, pending=pending
                )
            try:
                stored = repo.upsert(new, if_match=if_match, now=now)
            except InvalidResource as exc:
                raise InvalidChange(str(exc)) from None
            written = stored.get("meta", {}).get("versionId") != current.get("meta", {}).get("versionId")
            if not written:
                return stored, False
            row_study = _study_uid(repo, stored)
            for finding in sent:
                entered = entered_findings.observation(finding, report=stored, author=author, status=observed, now=now)
                repo.upsert(entered, study_instance_uid=row_study, now=now)
            entered_findings.withdraw_dropped(repo, previous=current, stored=stored, now=now)
            for ref in stored.get("result", []):
                obs = repo.read("Observation", ref["reference"].split("/")[-1])
                target = _OBSERVATION_STATUS.get(status)
                if obs is not None and target and obs["status"] != target:
                    obs["status"] = target
                    repo.upsert(obs, now=now)
            if status in SIGNED:
                repo.upsert(
                    fhir_reporting.signing_provenance(stored, author=author, recorded=fhir_instant(now)), now=now
                )
            if self._results is not None:
                self._results.enqueue_in(conn, report=stored)
            if self._relay is not None:
                event = DiagnosticReportStored(
                    stored["id"],
                    row_study or "0",
                    stored["status"],
                    tuple(r["reference"].split("/")[-1] for r in stored.get("result", [])),
                    version_id=stored["meta"]["versionId"],
                    previous_status=previous.value if previous != status else "",
                    service_request_ids=tuple(r["reference"].split("/")[-1] for r in stored.get("basedOn", [])),
                    accession_number=next(
                        (i.get("value", "") for i in stored.get("identifier", [])),
                        "",
                    ),
                    results_interpreter=author,
                )
                event_id = str(uuid.uuid5(SIGNOFF_EVENT_NAMESPACE, f"{stored['id']}/{stored['meta']['versionId']}"))
                enqueue(conn, REPORT_STORED, [(event.to_payload(), event_id, row_study or stored["id"])])
                if row_study:
                    entered_findings.enqueue_in(
                        conn, repo, previous=current, stored=stored, sent=bool(sent), study_uid=row_study, author=author
                    )
            return stored, True


__all__ = ["AuthorRequired", "InvalidChange", "PatchError", "ReportNotFound", "ReportSignOff", "apply_json_patch"]
