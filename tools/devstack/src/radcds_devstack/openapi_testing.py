"""Schemathesis against a service's own OpenAPI document, in process (issue #15 "hostile input").

Each service's ``tests/test_openapi_schemathesis.py`` reads the document its ``create_app`` publishes
(``app.openapi()``, OpenAPI 3.1), lets schemathesis generate calls of every operation from it (valid and invalid
data; its examples, coverage and fuzzing phases) and sends them over ASGI to an app the test built with our own
fakes, whose lifespan schemathesis starts on the first call and ends with the test.

Why the document is read at collection, from an app built for that alone (nothing started): schemathesis needs the
operations to make one test per operation, and ``schemathesis.pytest.from_fixture`` (the lazy loader) fails under
pytest 9.2 (it reads ``Item._nodeid``, which pytest no longer has). So the schema is loaded once per module and its
calls go to an :class:`AppUnderTest`, which a fixture points at the app of the running test.

Needs the workspace's dev dependency group (schemathesis, hypothesis); imported by tests only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import hypothesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case, CheckFunction, HookContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

#: What every call is checked for: no 5xx; a body that matches the schema its status is documented with; the
#: media type the document declares for that status.
CHECKS: tuple[CheckFunction, ...] = (not_a_server_error, response_schema_conformance, content_type_conformance)
#: The two answers a call without valid credentials may get (RFC 6750 section 3.1, RFC 9110 15.5.2 and 15.5.4).
REFUSED = (401, 403)


class AppUnderTest:
    """The ASGI application schemathesis calls: it hands each call (and the lifespan) to the app :meth:`serving`
    points it at, so one schema loaded at collection reaches the app each test builds."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        """Forward to the app of the running test."""
        if self._app is None:
            raise RuntimeError("no app under test: a test must run inside AppUnderTest.serving(app)")
        await self._app(scope, receive, send)

    @contextmanager
    def serving(self, app: ASGIApp) -> Iterator[ASGIApp]:
        """Send the calls to ``app`` while the block runs."""
        self._app = app
        try:
            yield app
        finally:
            self._app = None


def openapi_schema(document: Mapping[str, Any], *, base_url: str) -> tuple[BaseSchema, AppUnderTest]:
    """A schemathesis schema of ``document`` whose calls go to the returned :class:`AppUnderTest` under ``base_url``
    (the service's public base URL: audiences and links are built from it)."""
    schema = from_dict(dict(document))
    schema.config.update(base_url=base_url)
    target = AppUnderTest()
    schema.app = target
    return schema, target


def per_operation(share: int) -> hypothesis.settings:
    """Settings for a schemathesis test: ``1/share`` of the loaded profile's examples per operation (the ``ci``
    profile's 150 would take minutes per service; ``fuzz`` still runs thousands), and no health check against the
    function-scoped app fixture, which is meant to live across the examples of an operation like a real server."""
    return hypothesis.settings(
        max_examples=max(1, hypothesis.settings().max_examples // share),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def steer_path_parameters(schema: BaseSchema, known: Sequence[Mapping[str, str]]) -> None:
    """Send about half of the generated calls to resources that exist: the path parameters of an operation are
    replaced by one of the ``known`` records that names them all (records that name a study, its series and an
    instance together keep them consistent). The other half keeps the generated values (mostly 404s)."""

    @schema.hook
    def flatmap_path_parameters(context: HookContext, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        if not path_parameters:
            return st.just(path_parameters)
        names = set(path_parameters)
        records = [{name: record[name] for name in names} for record in known if names <= set(record)]
        if not records:
            return st.just(path_parameters)
        return st.one_of(st.just(path_parameters), st.sampled_from(records))


def assert_refused(case: Case[Any], response: Response, *, expected: tuple[int, ...] = REFUSED) -> None:
    """A call without valid credentials is refused (``expected``: 401 or 403), never served and never a 5xx; a
    method the path does not have (schemathesis's coverage phase sends those too) may be answered 405 first."""
    allowed = expected + ((405,) if case.method.upper() != case.operation.method.upper() else ())
    assert response.status_code in allowed, (
        f"{case.method} {case.formatted_path}: expected {allowed}, got {response.status_code}: {response.text[:300]}"
    )
