"""The container images, built and started for real (issue #14): ``make images`` then ``make images-test`` as
one test module. buildah builds every image (``--isolation chroot``, vfs storage: no Docker engine), exports
OCI archives, and each service image is run (``buildah run``, host network) after its ``migrate`` command, on
the local stack's Kafka, PostgreSQL, Triton (serving the models *image's* repository, copied out as the
chart's initContainer does) and OpenID Provider, until ``/healthz`` and ``/readyz`` answer.

Where buildah cannot run (not installed, not root) the whole module is skipped with that reason, printed by
``-ra``; ``make test`` installs buildah (``make system-deps``), so in CI it runs.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator

import pytest

from radcds_devstack import images

WHY_NOT = images.buildah_available()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.images,
    pytest.mark.skipif(WHY_NOT is not None, reason=f"container images not built: {WHY_NOT}"),
]
#: Modules of one service that no other service's image may carry (its own libraries only).
FOREIGN = {
    "imaging": ("tritonclient", "hl7", "jinja2", "highdicom"),
    "inference": ("pynetdicom", "hl7", "jinja2", "boto3"),
    "reporting": ("pydicom", "tritonclient", "jinja2", "pynetdicom"),
    "referral": ("pydicom", "tritonclient", "hl7", "jinja2"),
    "fusion": ("tritonclient", "hl7", "jinja2", "pynetdicom"),
    "worklist": ("pydicom", "tritonclient", "hl7", "pynetdicom"),
}


@pytest.fixture(scope="module")
def built() -> dict[str, images.Built]:
    # Every image built; the smallest one exported as an OCI archive (make images exports them all: gzip of
    # the large layers is minutes of CPU here).
    result = {b.name: b for b in images.build_all(export=False)}
    result["radcds-models"] = images.build_image("radcds-models", export=True)
    images.print_builds(list(result.values()))
    return result


@pytest.fixture(scope="module")
def started(built: dict[str, images.Built]) -> dict[str, images.Started]:
    result = {s.image: s for s in images.run_images()}
    images.print_started(list(result.values()))
    return result


_PROBES: dict[str, str] = {}


def _in_image(ref: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in one container of ``ref``, made once per image (vfs copies the image per container)."""
    if ref not in _PROBES:
        _PROBES[ref] = images._container(ref, f"radcds-images-test-probe-{len(_PROBES)}")
    argv = images._run_argv(_PROBES[ref], {}, [], list(command))
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.mark.timeout(3600)
def test_make_images_builds_every_image_the_chart_names(built: dict[str, images.Built]) -> None:
    assert set(built) == set(images.IMAGE_NAMES)


def test_every_image_is_within_its_size_budget(built: dict[str, images.Built]) -> None:
    assert images.over_budget(built.values()) == []


def test_an_image_is_exported_as_an_oci_archive_with_its_tag(built: dict[str, images.Built]) -> None:
    for b in [built["radcds-models"]]:
        assert b.archive is not None and b.archive.is_file()
        with tarfile.open(b.archive) as archive:
            assert json.load(archive.extractfile("oci-layout"))["imageLayoutVersion"] == "1.0.0"  # type: ignore[arg-type]
            index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
        refs = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
        assert refs == [f"{b.name}:{images.version()}"]


def test_every_image_carries_its_oci_labels_and_runs_as_uid_10001(built: dict[str, images.Built]) -> None:
    for b in built.values():
        labels = images.image_labels(b.ref) or {}
        assert labels["org.opencontainers.image.title"] == b.name
        assert labels["org.opencontainers.image.version"] == images.version()
        assert (
            len(labels["org.opencontainers.image.revision"]) in (7, 40)
            or labels["org.opencontainers.image.revision"] == "unknown"
        )
        assert _in_image(b.ref, "id", "-u").stdout.strip() == "10001"


@pytest.mark.parametrize("service", sorted(FOREIGN))
def test_a_service_image_has_no_compiler_no_pip_and_no_other_services_libraries(
    service: str, built: dict[str, images.Built]
) -> None:
    ref = built[f"radcds-{service}"].ref
    tools = _in_image(ref, "sh", "-c", "command -v gcc cc make pip pip3 apt-get-build-dep || true")
    assert tools.stdout.strip() == ""
    probe = "import importlib.util,sys; print(','.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"
    found = _in_image(ref, "/opt/radcds/bin/python", "-c", probe, *FOREIGN[service], f"radcds_{service}", "radcds")
    assert found.stdout.strip() == f"radcds_{service},radcds", found.stderr


def test_the_models_image_holds_the_triton_repository_with_the_model_cards(built: dict[str, images.Built]) -> None:
    listing = _in_image(built["radcds-models"].ref, "sh", "-c", "ls /models/*/config.pbtxt /models/*/MODEL_CARD.md")
    assert sorted(listing.stdout.split()) == sorted(
        f"/models/{m}/{f}"
        for m in ("brain_window_onnx", "chest_ctr", "head_ct_hyperdensity")
        for f in ("MODEL_CARD.md", "config.pbtxt")
    )


@pytest.mark.timeout(1200)
def test_every_service_image_migrates_then_starts_to_ready(started: dict[str, images.Started]) -> None:
    assert set(started) == {f"radcds-{s}" for s in images.SERVICES}
    for s in started.values():
        assert s.checks and all(v == "ok" for v in s.checks.values()), (s.image, s.checks)


def test_every_service_images_own_healthcheck_passes_against_it(started: dict[str, images.Started]) -> None:
    assert {s.image: s.healthcheck for s in started.values()} == {s.image: True for s in started.values()}


@pytest.fixture(scope="module", autouse=True)
def _no_containers_left() -> Iterator[None]:
    yield
    for container in _PROBES.values():
        subprocess.run(["buildah", "--storage-driver", "vfs", "rm", container], capture_output=True, check=False)
    out = subprocess.run(
        ["buildah", "--storage-driver", "vfs", "containers", "--json"], capture_output=True, text=True, check=False
    ).stdout
    left = [c for c in json.loads(out or "null") or [] if c.get("containername", "").startswith("radcds-images-test")]
    assert left == []
