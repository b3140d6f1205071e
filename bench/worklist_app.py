"""The worklist app for bench/worklist_bench.py, in a process of its own (as it runs in production): the real
``create_app`` over a seeded database, plus ``/bench/static``, the baseline page served by the same server.

    python bench/worklist_app.py DATABASE_URL PORT STATIC_HTML_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi.responses import HTMLResponse

from radcds_devstack.testing import RecordingPublisher
from radcds_worklist.app import build_components, create_app
from radcds_worklist.settings import WorklistSettings

ROOT = Path(__file__).resolve().parents[1]


def main(database_url: str, port: int, static_file: Path) -> None:
    settings = WorklistSettings(
        environment="test",
        auth_mode="development",
        database_url=database_url,
        public_base_url=f"http://127.0.0.1:{port}",
        imaging_dicomweb_url="http://127.0.0.1:9/dicom-web",
        model_manifest=ROOT / "models" / "manifest.json",
    )
    components = build_components(settings, publisher=RecordingPublisher(), consume=False)
    app = create_app(settings, components=components)

    def static_page() -> HTMLResponse:
        return HTMLResponse(static_file.read_bytes() if static_file.exists() else b"")

    app.add_api_route("/bench/static", static_page, include_in_schema=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
