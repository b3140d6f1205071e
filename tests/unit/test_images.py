"""The container images' build inputs (deploy/images), checked without building: each service image installs
its own locked distributions only, hashed, from wheels; the final stage is non-root with a health check and OCI
labels; the per-service requirements cannot drift from requirements.lock. Building and starting the images is
tests/images/test_images.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radcds_devstack import images

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILES = ROOT / "deploy" / "images"
#: Distributions only one service declares: no other service's image may carry them.
OWN = {
    "tritonclient": "inference",
    "pynetdicom": "imaging",
    "boto3": "imaging",
    "hl7": "reporting",
    "jinja2": "worklist",
    "pydicom": {"imaging", "inference", "fusion"},
    "highdicom": {"inference", "fusion"},
}
#: Development and test tools: in no image.
DEV_ONLY = ("pytest", "ruff", "mypy", "import-linter", "hl7apy", "playwright", "nvidia-pytriton", "grpcio-tools")


def _names(text: str) -> set[str]:
    return {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.M)}


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return images.requirements_files(images.parse_lock(images.LOCK.read_text()))


def test_the_committed_requirements_files_equal_what_the_lock_generates(generated: dict[str, str]) -> None:
    for name, content in generated.items():
        committed = images.REQUIREMENTS_DIR / name
        assert committed.read_text() == content, f"{committed} drifted from requirements.lock: run `make lock`"
    assert {p.name for p in images.REQUIREMENTS_DIR.glob("*.txt")} == set(generated)


def test_every_pinned_distribution_carries_its_hashes(generated: dict[str, str]) -> None:
    for name, content in generated.items():
        entries = re.split(r"\n(?=[A-Za-z0-9])", content.split("\n", 3)[3].strip())
        assert entries, name
        for entry in entries:
            assert "==" in entry.splitlines()[0] and "--hash=sha256:" in entry, f"{name}: {entry.splitlines()[0]}"


@pytest.mark.parametrize("service", sorted(images.SERVICES))
def test_a_service_image_carries_no_other_services_distributions(service: str, generated: dict[str, str]) -> None:
    names = _names(generated[f"{service}.txt"])
    for dist, owners in OWN.items():
        owners = {owners} if isinstance(owners, str) else owners
        assert (dist in names) == (service in owners), (
            f"{service}: {dist} {'missing' if service in owners else 'present'}"
        )
    assert not names & set(DEV_ONLY), f"{service} carries development tools {names & set(DEV_ONLY)}"
    assert "hatchling" not in names  # the build backend stays in the build stage


def test_the_closure_follows_requested_extras_only() -> None:
    # pyjwt[crypto] brings cryptography; uvicorn[standard] brings uvloop; tritonclient[grpc] brings grpcio, not
    # the HTTP client's aiohttp/geventhttpclient.
    inference = images.closure(["radcds-inference"])
    assert {"cryptography", "grpcio", "uvloop"} <= images.closure(["radcds-referral"]) | inference
    assert "grpcio" in inference
    assert "geventhttpclient" not in inference and "aiohttp" not in inference


def test_the_build_stage_gets_the_lock_pinned_build_backend(generated: dict[str, str]) -> None:
    assert "hatchling" in _names(generated["build.txt"])


def _final_stage(containerfile: Path) -> str:
    text = containerfile.read_text()
    return text[text.rindex("\nFROM ") :]


@pytest.mark.parametrize("name", ["service.Containerfile", "models.Containerfile"])
def test_the_final_stage_runs_as_a_non_root_user_with_a_health_check_and_oci_labels(name: str) -> None:
    final = _final_stage(CONTAINERFILES / name)
    assert "FROM ${BASE}" in final
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert re.search(r"^HEALTHCHECK ", final, re.M)
    for label in ("source", "revision", "version", "created", "title"):
        assert f"org.opencontainers.image.{label}=" in final
    assert not re.search(r"\b(gcc|g\+\+|make|build-essential|apt-get install)\b", final)


def test_the_service_image_installs_from_hashed_wheels_only_and_drops_pip() -> None:
    text = (CONTAINERFILES / "service.Containerfile").read_text()
    assert text.count("--require-hashes --only-binary=:all:") == 2
    assert "pip uninstall --quiet --yes pip setuptools" in text
    assert "--mount=type=secret,id=pip-ca" in text  # a proxy's CA as a build secret, in no layer


def test_the_bases_are_debian_packages_without_compilers() -> None:
    for packages in images.BASE_PACKAGES.values():
        assert not {"gcc", "build-essential", "make", "python3-dev"} & set(packages)
    assert "python3-venv" not in images.BASE_PACKAGES["runtime"]


def test_a_service_image_gets_the_stacks_settings_with_its_own_paths(tmp_path: Path) -> None:
    stack_env = {
        "RADCDS_REFERRAL_HTTP_PORT": "38081",
        "RADCDS_REFERRAL_DATA_DIR": "/work/main/.run/images-test/data/referral",
        "RADCDS_REFERRAL_TRACE_FILE": "/work/main/.run/traces/referral.jsonl",
        "RADCDS_REFERRAL_TRUSTED_ISSUERS_FILE": str(tmp_path / "trusted-issuers.json"),
        "RADCDS_IMAGING_HTTP_PORT": "38082",
        "PATH": "/usr/bin",
    }
    env = images.container_env("referral", stack_env)
    assert env == {
        "RADCDS_REFERRAL_HTTP_HOST": "127.0.0.1",
        "RADCDS_REFERRAL_HTTP_PORT": "38081",
        "RADCDS_REFERRAL_DATA_DIR": "/app/.run/data/referral",
        "RADCDS_REFERRAL_TRUSTED_ISSUERS_FILE": "/run/radcds/dev-issuer/trusted-issuers.json",
        "RADCDS_REFERRAL_MIGRATE_ON_START": "false",
    }


def test_buildahs_human_sizes_are_read_as_decimal_bytes() -> None:
    assert images.parse_size("320 MB") == 320_000_000
    assert images.parse_size("1.05 GB") == 1_050_000_000
    with pytest.raises(ValueError, match="unreadable"):
        images.parse_size("lots")


def test_every_image_has_a_size_budget_and_an_http_port() -> None:
    assert set(images.SIZE_BUDGETS_MB) == set(images.IMAGE_NAMES)
    assert set(images.HTTP_PORTS) == set(images.SERVICES)
