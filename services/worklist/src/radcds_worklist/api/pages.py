"""The worklist's pages: the list (most urgent first), a study (key image with the AI overlay, findings,
comparison, draft report, the radiologist's actions) and the per-model monitoring.

Server-rendered HTML (Jinja2); the page script only refreshes rows from ``/rows`` when the live stream says
something changed, and drives the keyboard. Every page needs a signed-in user; every POST checks the session's
CSRF token (:mod:`radcds_worklist.api.auth`). Actions are the signed-in user's own: the Practitioner who signs
comes from the session, never from the form. URLs carry no patient data: studies are addressed by their Study
Instance UID, and the results of an action by a short code (``?done=signed``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from radcds_worklist.adapters.db.live import last_seq
from radcds_worklist.adapters.imaging import ImagingClient, ImagingUnavailable
from radcds_worklist.api.auth import CsrfChecked, CsrfToken, CurrentSession, CurrentUser
from radcds_worklist.api.views import (
    LUNG_SITES,
    MODALITIES,
    PRIORITIES,
    STATUSES,
    Decision,
    ReportView,
    assessment_view,
    finding_view,
    key_image_of,
    overlay_of,
    row_view,
)
from radcds_worklist.domain.access import Forbidden, User
from radcds_worklist.domain.feedback import Action, FindingDecision, InvalidFeedback, RejectionReason
from radcds_worklist.domain.locks import LockHeld
from radcds_worklist.domain.ports import (
    AddedNodule,
    ReportChanged,
    ReportingError,
    ReportingUnavailable,
    ReportRefused,
)
from radcds_worklist.domain.worklist import SIGNED_STATUSES, StatusGroup, WorklistFilter
from radcds_worklist.use_cases.feedback import FeedbackDesk, FindingNotFound
from radcds_worklist.use_cases.reading import NoReportYet, ReadingDesk, StudyNotFound

log = logging.getLogger(__name__)

#: What a finished action says on the study page (``?done=``).
DONE = {
    "assigned": "The study is assigned to you.",
    "released": "You released the study.",
    "signed": "Signed: the report is final.",
    "rejected": "Your rejection of the AI finding is recorded.",
}


def templates() -> Jinja2Templates:
    """The worklist's Jinja2 templates (autoescaped HTML)."""
    return Jinja2Templates(directory=str(files("radcds_worklist").joinpath("templates")))


class GridSizes:
    """Rows and Columns (0028,0010/0011) of key images, read once from imaging's metadata (a small LRU cache)."""

    def __init__(self, imaging: ImagingClient, *, size: int = 512) -> None:
        self._imaging = imaging
        self._size = size
        self._cache: OrderedDict[tuple[str, str, str], tuple[int, int]] = OrderedDict()

    def __call__(self, study: str, series: str, instance: str) -> tuple[int, int] | None:
        """(columns, rows) of the instance, or None when imaging cannot say."""
        key = (study, series, instance)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            metadata = self._imaging.instance_metadata(study, series, instance)
        except (LookupError, ImagingUnavailable) as exc:
            log.warning("key image size unknown", extra={"error_class": type(exc).__name__})
            return None
        try:
            rows = int(metadata["00280010"]["Value"][0])
            columns = int(metadata["00280011"]["Value"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        self._cache[key] = (columns, rows)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return columns, rows


def pages_router(
    *,
    engine: Engine,
    desk: ReadingDesk,
    feedback: FeedbackDesk,
    imaging: ImagingClient,
    envelopes: Mapping[str, str],
    viewer_url_template: str,
    page_size: int = 100,
) -> APIRouter:
    """The list, study and action routes; ``envelopes`` maps a model name to its validated envelope in words."""
    router = APIRouter(tags=["pages"])
    view = templates()
    sizes = GridSizes(imaging)

    def filters_from(modality: str, status: str, priority: str, mine: bool, user: User) -> WorklistFilter:
        try:
            group = StatusGroup(status)
        except ValueError:
            group = StatusGroup.TO_READ
        return WorklistFilter(
            modality=modality or None,
            status=group,
            priority=priority if priority in {p for p, _ in PRIORITIES} else None,
            mine=user.id if mine else None,
        )

    def list_context(request: Request, user: User, f: WorklistFilter) -> dict[str, Any]:
        now = datetime.now(UTC)
        rows = [row_view(e, user, now) for e in desk.worklist(f, user, limit=page_size)]
        return {"rows": rows, "user": user, "now": now}

    @router.get("/", response_class=HTMLResponse)
    def worklist_page(
        request: Request,
        user: CurrentUser,
        csrf: CsrfToken,
        modality: str = "",
        status: str = "to-read",
        priority: str = "",
        mine: bool = False,
    ) -> Response:
        f = filters_from(modality, status, priority, mine, user)
        since = last_seq(engine)  # read before the rows: a change after this point reaches the page live
        context = list_context(request, user, f)
        query = urlencode({"modality": modality, "status": f.status.value, "priority": priority, "mine": int(mine)})
        context |= {
            "csrf_token": csrf,
            "nav": "worklist",
            "since": since,
            "query": query,
            "total": len(context["rows"]),
            "filters": {"modality": modality, "status": f.status.value, "priority": priority, "mine": mine},
            "modalities": MODALITIES,
            "statuses": STATUSES,
            "priorities": PRIORITIES,
        }
        return view.TemplateResponse(request, "worklist.html", context, headers={"Cache-Control": "no-store"})

    @router.get("/rows", response_class=HTMLResponse)
    def worklist_rows(
        request: Request,
        user: CurrentUser,
        modality: str = "",
        status: str = "to-read",
        priority: str = "",
        mine: int = 0,
    ) -> Response:
        f = filters_from(modality, status, priority, bool(mine), user)
        return view.TemplateResponse(
            request, "_rows.html", list_context(request, user, f), headers={"Cache-Control": "no-store"}
        )

    def study_page(
        request: Request,
        study_uid: str,
        user: User,
        csrf: str,
        token: str | None,
        *,
        message: str = "",
        kind: str = "ok",
        status_code: int = 200,
    ) -> Response:
        since = last_seq(engine)
        try:
            study = desk.study(study_uid, user)
        except StudyNotFound:
            return HTMLResponse("<h1>No such study on the worklist</h1>", status_code=404)
        now = datetime.now(UTC)
        entry = study.entry
        row = row_view(entry, user, now)
        recorded = feedback.decisions(study_uid)
        findings = []
        for f in study.findings:
            done = recorded.get(str(f["finding_id"]))
            findings.append(
                finding_view(
                    f,
                    envelope=envelopes.get(str(f["model_name"]), ""),
                    decision=None if done is None else _decision(done.action, done.reason_code, done.reason_text),
                )
            )
        key_image, key_row = key_image_of(study.findings, entry)
        overlay = None
        if key_image is not None:
            grid = sizes(key_image.study_uid, key_image.series_uid, key_image.sop_instance_uid)
            if grid is not None:
                overlay = overlay_of(key_row, columns=grid[0], rows=grid[1])
        report = ReportView(status=entry.report_status, interpreter=entry.results_interpreter)
        if entry.report_id:
            report.id = entry.report_id
            try:
                draft = desk.draft(entry.report_id, user, token)
                report.version, report.status, report.conclusion = draft.version, draft.status, draft.conclusion
                report.signable = draft.status not in SIGNED_STATUSES
            except ReportingError as exc:
                report.problems.append(f"The report could not be read from reporting ({type(exc).__name__}).")
        context = {
            "request": request,
            "user": user,
            "csrf_token": csrf,
            "nav": "worklist",
            "since": since,
            "s": row,
            "findings": findings,
            "key_image": key_image,
            "overlay": overlay,
            "assessment": assessment_view(study.assessment),
            "report": report,
            "reasons": REASONS,
            "request_id": uuid.uuid4().hex,
            "lung_sites": LUNG_SITES,
            "viewer_url": viewer_url_template.format(study_uid=quote(study_uid, safe="")),
            "message": message or "; ".join(report.problems),
            "message_kind": kind if message else "error",
        }
        return view.TemplateResponse(
            request, "study.html", context, status_code=status_code, headers={"Cache-Control": "no-store"}
        )

    @router.get("/studies/{study_uid}", response_class=HTMLResponse)
    def open_study(
        request: Request, study_uid: str, user: CurrentUser, session: CurrentSession, csrf: CsrfToken, done: str = ""
    ) -> Response:
        return study_page(
            request, study_uid, user, csrf, session.access_token_valid(time.time()), message=DONE.get(done, "")
        )

    @router.get("/studies/{study_uid}/key-image")
    def key_image(study_uid: str, user: CurrentUser, finding: Annotated[str, Query(max_length=64)] = "") -> Response:
        try:
            study = desk.study(study_uid, user)
        except StudyNotFound:
            return Response(status_code=404)
        rows = [f for f in study.findings if not finding or str(f["finding_id"]) == finding] or list(study.findings)
        image, _ = key_image_of(rows, study.entry)
        if image is None:
            return Response(status_code=404)
        try:
            rendered = imaging.rendered(
                image.study_uid,
                image.series_uid,
                image.sop_instance_uid,
                frame=image.frame,
                window=image.window_query or None,
                viewport=(1024, 1024),
            )
        except ImagingUnavailable:
            return Response(status_code=503, headers={"Retry-After": "5"})
        except LookupError:
            return Response(status_code=404)
        return Response(
            rendered.content, media_type=rendered.media_type, headers={"Cache-Control": "private, max-age=300"}
        )

    def act(
        request: Request,
        study_uid: str,
        user: User,
        csrf: str,
        token: str | None,
        action: Callable[[], object],
        done: str,
    ) -> Response:
        try:
            action()
        except Forbidden as exc:
            return study_page(request, study_uid, user, csrf, token, message=str(exc), kind="error", status_code=403)
        except LockHeld as exc:
            holder = exc.holder
            text = f"{holder.user_name} is reading this study until {holder.expires_at:%H:%M} UTC."
            return study_page(request, study_uid, user, csrf, token, message=text, kind="error", status_code=409)
        except StudyNotFound:
            return HTMLResponse("<h1>No such study on the worklist</h1>", status_code=404)
        except NoReportYet:
            text = "There is no report to sign yet."
            return study_page(request, study_uid, user, csrf, token, message=text, kind="error", status_code=409)
        except ReportChanged:
            text = "The report changed since you opened it: read it again, then sign."
            return study_page(request, study_uid, user, csrf, token, message=text, kind="error", status_code=409)
        except ReportRefused as exc:
            text = f"Reporting refused the report: {exc}"
            return study_page(request, study_uid, user, csrf, token, message=text, kind="error", status_code=422)
        except ReportingUnavailable:
            text = "Reporting is not reachable; nothing was signed. Try again."
            return study_page(request, study_uid, user, csrf, token, message=text, kind="error", status_code=503)
        except FindingNotFound:
            return HTMLResponse("<h1>No such AI finding on this study</h1>", status_code=404)
        except ValueError as exc:  # InvalidFeedback and a malformed form value
            return study_page(request, study_uid, user, csrf, token, message=str(exc), kind="error", status_code=422)
        return RedirectResponse(f"/studies/{quote(study_uid, safe='')}?done={done}", status_code=303)

    @router.post("/studies/{study_uid}/assign", dependencies=[CsrfChecked])
    def assign(request: Request, study_uid: str, user: CurrentUser, session: CurrentSession) -> Response:
        token = session.access_token_valid(time.time())
        return act(
            request, study_uid, user, session.csrf_token, token, lambda: desk.assign(study_uid, user), "assigned"
        )

    @router.post("/studies/{study_uid}/release", dependencies=[CsrfChecked])
    def release(request: Request, study_uid: str, user: CurrentUser, session: CurrentSession) -> Response:
        token = session.access_token_valid(time.time())
        return act(
            request, study_uid, user, session.csrf_token, token, lambda: desk.release(study_uid, user), "released"
        )

    @router.post("/studies/{study_uid}/accept", dependencies=[CsrfChecked])
    def accept(request: Request, study_uid: str, user: CurrentUser, session: CurrentSession) -> Response:
        token = session.access_token_valid(time.time())

        def sign() -> None:
            entry = desk.accept(study_uid, user, token)
            feedback.record_accepted_for_study(study_uid=study_uid, user=user, report_id=entry.report_id)

        return act(request, study_uid, user, session.csrf_token, token, sign, "signed")

    @router.post("/studies/{study_uid}/sign-edited", dependencies=[CsrfChecked])
    def sign_edited(
        request: Request,
        study_uid: str,
        user: CurrentUser,
        session: CurrentSession,
        conclusion: Annotated[str, Form(max_length=20_000)] = "",
        nodule_long_axis_mm: Annotated[str, Form(max_length=16)] = "",
        nodule_composition: Annotated[str, Form(max_length=16)] = "",
        nodule_site: Annotated[str, Form(max_length=32)] = "",
    ) -> Response:
        token = session.access_token_valid(time.time())

        def sign() -> None:
            nodules: tuple[AddedNodule, ...] = ()
            if nodule_long_axis_mm.strip():
                site = dict(LUNG_SITES)
                if nodule_site not in site or nodule_composition not in ("solid", "ground-glass"):
                    raise ValueError("an added nodule needs its lobe and a solid or ground-glass composition")
                nodules = (
                    AddedNodule(
                        local_id="nodule-1",
                        long_axis_mm=float(nodule_long_axis_mm),
                        composition="solid" if nodule_composition == "solid" else "ground-glass",
                        body_site_code=nodule_site,
                        body_site_display=site[nodule_site],
                    ),
                )
            entry = desk.sign_edited(study_uid, user, token, conclusion=conclusion, nodules=nodules)
            feedback.record_accepted_for_study(
                study_uid=study_uid, user=user, report_id=entry.report_id, action=Action.EDITED
            )

        return act(request, study_uid, user, session.csrf_token, token, sign, "signed")

    @router.post("/studies/{study_uid}/findings/{finding_id}/reject", dependencies=[CsrfChecked])
    def reject_finding(
        request: Request,
        study_uid: str,
        finding_id: str,
        user: CurrentUser,
        session: CurrentSession,
        reason: Annotated[str, Form(max_length=32)],
        text: Annotated[str, Form(max_length=500)] = "",
        request_id: Annotated[str, Form(max_length=64)] = "",
    ) -> Response:
        token = session.access_token_valid(time.time())

        def record() -> None:
            finding = feedback.finding(finding_id)
            if finding.study_uid != study_uid:
                raise FindingNotFound(finding_id)
            try:
                why = RejectionReason(reason)
            except ValueError as exc:
                raise InvalidFeedback("choose a reason from the list") from exc
            entry = desk.study(study_uid, user).entry
            decision = FindingDecision(
                finding, Action.REJECTED, user, why, text, report_id=entry.report_id, request_id=request_id
            )
            feedback.record(decision)

        return act(request, study_uid, user, session.csrf_token, token, record, "rejected")

    return router


#: The coded rejection reasons, as the form lists them.
REASONS = tuple((r.value, r.display) for r in RejectionReason)


def _decision(action: str, reason_code: str, reason_text: str) -> Decision:
    if action == Action.REJECTED:
        reason = RejectionReason(reason_code).display if reason_code in set(RejectionReason) else reason_code
        text = f"Rejected: {reason}" + (f" ({reason_text})" if reason_text else "")
    else:
        text = action.capitalize()
    return Decision(action, text)
