"""The monitoring pages: per model version, over time, what radiologists decided about its findings, how often
the signed report agreed, how many studies fell outside its validated envelope and how its inputs drift from what
its model card declares (post-market surveillance of each model; FDA, "Artificial Intelligence-Enabled Device
Software Functions: Lifecycle Management and Marketing Submission Recommendations", performance monitoring).

Every signed-in user may read them; only an admin sets the alert thresholds (POST, CSRF-checked).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from radcds.domain.findings import ModelIdentity
from radcds_worklist.api.auth import CsrfChecked, CsrfToken, CurrentUser
from radcds_worklist.api.pages import templates
from radcds_worklist.domain.access import Forbidden
from radcds_worklist.domain.feedback import RejectionReason
from radcds_worklist.domain.monitoring import Metric
from radcds_worklist.use_cases.monitoring import InvalidThreshold, MonitoringDesk


def percent(value: float | None) -> str:
    """A rate as a percentage ("—" when there is nothing to measure)."""
    return "—" if value is None else f"{value * 100:.0f} %"


def reason_display(code: str) -> str:
    """A rejection reason code as a reader sees it."""
    return RejectionReason(code).display if code in set(RejectionReason) else code


def monitoring_router(*, monitoring: MonitoringDesk) -> APIRouter:
    """``/monitoring`` (the model versions) and ``/monitoring/{model}/{version}`` (one of them)."""
    router = APIRouter(tags=["monitoring"])
    view = templates()
    view.env.filters["percent"] = percent
    view.env.filters["reason"] = reason_display

    def page(
        request: Request,
        user: object,
        csrf: str,
        selected: ModelIdentity | None,
        *,
        message: str = "",
        status: int = 200,
    ) -> Response:
        models = monitoring.models()
        if selected is None and models:
            selected = models[0]
        context: dict[str, object] = {
            "user": user,
            "csrf_token": csrf,
            "nav": "monitoring",
            "models": models,
            "selected": selected,
            "view": None,
            "message": message,
        }
        if selected is not None:
            context |= {
                "view": monitoring.model_monitoring(selected),
                "alerts": monitoring.alerts(selected),
                "thresholds": monitoring.thresholds(selected.name),
                "metrics": [m.value for m in Metric],
            }
        return view.TemplateResponse(
            request, "monitoring.html", context, status_code=status, headers={"Cache-Control": "no-store"}
        )

    @router.get("/monitoring", response_class=HTMLResponse)
    def overview(request: Request, user: CurrentUser, csrf: CsrfToken) -> Response:
        return page(request, user, csrf, None)

    @router.get("/monitoring/{model}/{version}", response_class=HTMLResponse)
    def model_page(request: Request, model: str, version: str, user: CurrentUser, csrf: CsrfToken) -> Response:
        return page(request, user, csrf, ModelIdentity(model, version))

    @router.post("/monitoring/{model}/{version}/thresholds", dependencies=[CsrfChecked])
    def set_threshold(
        request: Request,
        model: str,
        version: str,
        user: CurrentUser,
        csrf: CsrfToken,
        metric: Annotated[str, Form(max_length=48)],
        threshold: Annotated[float, Form(ge=0, le=1)],
    ) -> Response:
        try:
            monitoring.set_threshold(model=model, metric=metric, value=threshold, user=user)
        except Forbidden as exc:
            return page(request, user, csrf, ModelIdentity(model, version), message=str(exc), status=403)
        except InvalidThreshold as exc:
            return page(request, user, csrf, ModelIdentity(model, version), message=str(exc), status=422)
        return RedirectResponse(f"/monitoring/{model}/{version}", status_code=303)

    return router
