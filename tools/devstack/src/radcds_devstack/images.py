"""Container images of radcds: the per-service requirements, and the build and start of each image.

Every service image installs exactly the distributions its own code needs: the shared kernel's and the
service's own dependencies, closed transitively, at the versions and hashes of the one lock file
(``requirements.lock``). ``requirements`` writes that subset per service to
``deploy/images/requirements/<service>.txt`` (generated; a test fails when it drifts from the lock), so
the Containerfile builds the same way with ``buildah bud`` and ``docker build``, without our tooling.

The closure walks each distribution's declared ``Requires-Dist`` (PEP 508 requirements, markers evaluated
for Linux CPython 3.11 and the extras actually asked for) in the environment ``make python-deps`` built
from the lock, so it follows real dependency edges, not the lock's ``# via`` comments (which include edges
of other services' extras).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[4]
LOCK = ROOT / "requirements.lock"
REQUIREMENTS_DIR = ROOT / "deploy" / "images" / "requirements"
KERNEL = "radcds"
# Service -> its workspace distribution. The image of each runs `radcds-<service>`.
SERVICES: Mapping[str, str] = {
    "referral": "radcds-referral",
    "imaging": "radcds-imaging",
    "inference": "radcds-inference",
    "reporting": "radcds-reporting",
    "fusion": "radcds-fusion",
    "worklist": "radcds-worklist",
}
#: The build stage's own tools (the workspace packages' build backend), from the lock's ``build`` group.
BUILD_TOOLS = ("hatchling",)
WORKSPACE = frozenset({KERNEL, *SERVICES.values(), "radcds-devstack"})
# The images' interpreter: Debian bookworm's python3 (CPython 3.11) on Linux x86-64.
_TARGET_ENV: dict[str, str] = {
    **{k: str(v) for k, v in default_environment().items()},
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "python_version": "3.11",
}
HEADER = (
    "# Generated from requirements.lock by `make images-requirements` (radcds_devstack.images): the\n"
    "# distributions {service} needs, closed transitively, pinned and hashed\n"
    "# as in the lock. Do not edit: change the service's pyproject.toml, then `make lock`.\n"
)


@dataclass(frozen=True)
class LockEntry:
    """One pinned distribution of the lock: its ``name==version [; marker]`` line and hash lines."""

    name: str
    text: str


def parse_lock(text: str) -> dict[str, LockEntry]:
    """The lock's entries by canonical name (``uv export`` format: a requirement line, ``--hash`` lines)."""
    entries: dict[str, LockEntry] = {}
    current: list[str] = []
    name = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            if current:
                entries[name] = LockEntry(name, "\n".join(current))
            match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if match is None:
                raise ValueError(f"unreadable lock line: {line!r}")
            name = canonicalize_name(match.group(1))
            current = [line]
        elif line.strip().startswith("--hash") and current:
            current.append(line)
    if current:
        entries[name] = LockEntry(name, "\n".join(current))
    return entries


def _requires(dist_name: str) -> list[Requirement]:
    return [Requirement(r) for r in metadata.distribution(dist_name).requires or ()]


def closure(roots: Iterable[str]) -> set[str]:
    """Canonical names of every distribution ``roots`` need on the images' Linux CPython 3.11."""
    wanted: dict[str, set[str]] = {}  # name -> extras asked for
    todo: list[tuple[str, frozenset[str]]] = [(canonicalize_name(r), frozenset()) for r in roots]
    while todo:
        name, extras = todo.pop()
        seen = wanted.get(name)
        if seen is not None and extras <= seen:
            continue
        wanted.setdefault(name, set()).update(extras)
        for req in _requires(name):
            if req.marker is None:
                applies = True
            else:
                applies = any(req.marker.evaluate(dict(_TARGET_ENV, extra=e)) for e in (wanted[name] or {""}))
            if applies:
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return set(wanted)


def _pinned(what: str, roots: Iterable[str], lock: Mapping[str, LockEntry]) -> str:
    names = closure(roots) - WORKSPACE
    missing = sorted(n for n in names if n not in lock)
    if missing:
        raise SystemExit(f"radcds: {what} needs {', '.join(missing)}, which requirements.lock does not pin")
    body = "\n".join(lock[n].text for n in sorted(names))
    return HEADER.format(service=what) + body + "\n"


def service_requirements(service: str, lock: Mapping[str, LockEntry]) -> str:
    """The hashed requirements file of one service image (workspace packages excluded: built as wheels)."""
    return _pinned(f"the {service} service (with the shared kernel)", [KERNEL, SERVICES[service]], lock)


def requirements_files(lock: Mapping[str, LockEntry]) -> dict[str, str]:
    """File name -> content: one per service, and ``build.txt`` (the build stage's wheel builder)."""
    files = {f"{service}.txt": service_requirements(service, lock) for service in SERVICES}
    files["build.txt"] = _pinned("the images' build stage", BUILD_TOOLS, lock)
    return files


def write_requirements(target: Path = REQUIREMENTS_DIR) -> list[Path]:
    """Write ``<service>.txt`` for every service; returns the files written."""
    lock = parse_lock(LOCK.read_text())
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in requirements_files(lock).items():
        path = target / name
        path.write_text(content)
        written.append(path)
    return written


# ---- building -------------------------------------------------------------------------------------------------
IMAGES_DIR = ROOT / "deploy" / "images"
CACHE = ROOT / ".cache" / "images"
#: Where `make images` writes the OCI archives (ignored by git), ready for `skopeo copy`.
DIST = ROOT / "dist" / "images"
REGISTRY = "localhost/radcds"
BASE_IMAGE = f"{REGISTRY}/base:bookworm"
BUILDER_IMAGE = f"{REGISTRY}/builder:bookworm"
SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: mmdebstrap --include of each base: the runtime base of every final stage, the builder of the build stages.
BASE_PACKAGES = {
    "runtime": ("python3", "ca-certificates", "tzdata"),
    "builder": ("python3", "python3-venv", "ca-certificates"),
}
#: No documentation, manual pages or translations in the bases (copyright files stay).
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
#: HTTP port of each service (the images' EXPOSE and HEALTHCHECK default; the chart sets the same).
HTTP_PORTS = {"referral": 8081, "imaging": 8082, "inference": 8083, "fusion": 8084, "reporting": 8085, "worklist": 8086}
#: Every image `make images` builds, by name; the Helm chart names no other radcds image (tests/helm).
IMAGE_NAMES = (*(f"radcds-{s}" for s in SERVICES), "radcds-models")
_STORAGE = ("--storage-driver", "vfs")


def buildah_available() -> str | None:
    """None when buildah (and mmdebstrap for the bases) can run here, else why not."""
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install buildah mmdebstrap; `make system-deps`)"
    if os.geteuid() != 0:
        return "buildah with --isolation chroot and the vfs driver runs as root here"
    return None


def _buildah(*args: str, capture: bool = False) -> str:
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs"}
    done = subprocess.run(["buildah", *_STORAGE, *args], check=True, env=env, text=True, capture_output=capture)
    return done.stdout if capture else ""


def image_labels(name: str) -> dict[str, str] | None:
    """The labels of a local image, None when there is no such image."""
    try:
        out = _buildah("inspect", "--type", "image", name, capture=True)
    except subprocess.CalledProcessError:
        return None
    labels = json.loads(out).get("OCIv1", {}).get("config", {}).get("Labels") or {}
    return dict(labels)


def image_size(name: str) -> int:
    """Bytes of a local image (its layers, uncompressed), as ``buildah images`` counts them."""
    out = _buildah("images", "--json", name, capture=True)
    return parse_size(str(json.loads(out)[0]["size"]))


def parse_size(text: str) -> int:
    """Bytes of buildah's human size (``"320 MB"``: decimal units, three significant digits)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kMGT]?B)\s*", text)
    if match is None:
        raise ValueError(f"unreadable image size {text!r}")
    scale = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}[match.group(2)]
    return round(float(match.group(1)) * scale)


def version() -> str:
    """The release version the images carry (the workspace's)."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, check=True, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _digest(paths: Iterable[Path], extra: str = "") -> str:
    """A digest of the build inputs (file names and contents), to skip a build whose inputs did not change."""
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc") or "/tests/" in f"/{rel}":
                continue
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ensure_base(kind: str) -> str:
    """The ``runtime`` or ``builder`` base image, made from an mmdebstrap root filesystem when absent."""
    name = BASE_IMAGE if kind == "runtime" else BUILDER_IMAGE
    packages = BASE_PACKAGES[kind]
    key = hashlib.sha256(" ".join((SUITE, *packages, *_DPKG_EXCLUDES)).encode()).hexdigest()[:16]
    labels = image_labels(name)
    if labels is not None and labels.get("io.radcds.inputs") == key:
        return name
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"{kind}-rootfs.tar"
    stamp = CACHE / f"{kind}-rootfs.key"
    if not (tarball.exists() and stamp.exists() and stamp.read_text() == key):
        print(f"radcds: mmdebstrap {SUITE} minbase + {', '.join(packages)} -> {tarball.name}", flush=True)
        argv = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages)}"]
        argv += [f"--dpkgopt={o}" for o in _DPKG_EXCLUDES]
        subprocess.run([*argv, SUITE, str(tarball), DEBIAN_MIRROR], check=True)
        stamp.write_text(key)
    _buildah(
        "bud", "--quiet", "--isolation", "chroot", "--layers=false", "-f", str(IMAGES_DIR / "base.Containerfile"),
        "--build-arg", f"ROOTFS={tarball.name}", "--label", f"io.radcds.inputs={key}", "-t", name, str(CACHE),
    )  # fmt: skip
    return name


@dataclass
class Built:
    """One image ``make images`` built (or found up to date)."""

    name: str
    ref: str
    seconds: float
    size: int
    reused: bool
    archive: Path | None = None


def _inputs(image: str) -> list[Path]:
    common = [IMAGES_DIR / "requirements" / "build.txt", ROOT / ".dockerignore"]
    if image == "radcds-models":
        return [*common, IMAGES_DIR / "models.Containerfile", ROOT / "models"]
    service = image.removeprefix("radcds-")
    return [
        *common,
        IMAGES_DIR / "service.Containerfile",
        IMAGES_DIR / "healthcheck.py",
        IMAGES_DIR / "requirements" / f"{service}.txt",
        ROOT / "libs" / "radcds",
        ROOT / "services" / service,
        ROOT / "models" if service == "inference" else ROOT / "models" / "manifest.json",
    ]


def build_image(image: str, *, tag: str | None = None, export: bool = True) -> Built:
    """Build one image (skipped when an image with the same inputs exists) and export it as an OCI archive."""
    tag = tag or version()
    ref = f"{REGISTRY}/{image}:{tag}"
    base_key = (image_labels(BASE_IMAGE) or {}).get("io.radcds.inputs", "")
    builder_key = (image_labels(BUILDER_IMAGE) or {}).get("io.radcds.inputs", "")
    inputs = _digest(_inputs(image), extra=f"{base_key}{builder_key}")
    started = time.monotonic()
    labels = image_labels(ref)
    reused = labels is not None and labels.get("io.radcds.inputs") == inputs
    if not reused:
        revision = _git("rev-parse", "HEAD") or "unknown"
        created = _git("show", "-s", "--format=%cI", "HEAD") or "1970-01-01T00:00:00Z"
        args = ["bud", "--quiet", "--isolation", "chroot", "--layers=false", "--format", "docker"]
        args += ["--build-arg", f"VERSION={tag}", "--build-arg", f"REVISION={revision}"]
        args += ["--build-arg", f"CREATED={created}", "--label", f"io.radcds.inputs={inputs}"]
        if image == "radcds-models":
            args += ["-f", str(IMAGES_DIR / "models.Containerfile")]
        else:
            service = image.removeprefix("radcds-")
            CACHE.joinpath("pip").mkdir(parents=True, exist_ok=True)
            args += ["-f", str(IMAGES_DIR / "service.Containerfile"), "--build-arg", f"SERVICE={service}"]
            args += ["--build-arg", f"HTTP_PORT={HTTP_PORTS[service]}"]
            if service == "inference":
                args += ["--build-arg", "MODELS=models/"]
            args += ["-v", f"{CACHE / 'pip'}:/root/.cache/pip"]
            ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
            if Path(ca).is_file():
                args += ["--secret", f"id=pip-ca,src={ca}"]
        print(f"radcds: building {ref}", flush=True)
        _buildah(*args, "-t", ref, str(ROOT))
    built = Built(image, ref, time.monotonic() - started, image_size(ref), reused)
    if export:
        DIST.mkdir(parents=True, exist_ok=True)
        archive = DIST / f"{image}-{tag}.oci.tar"
        if not (reused and archive.exists()):
            archive.unlink(missing_ok=True)
            _buildah("push", "--quiet", ref, f"oci-archive:{archive}:{image}:{tag}")
        built.archive = archive
    return built


def build_all(images: Iterable[str] = IMAGE_NAMES, *, export: bool = True, parallel: int = 2) -> list[Built]:
    """The bases, then every image, ``parallel`` at a time (pip's hashing and unpacking is CPU-bound, buildah's
    vfs copies disk-bound: two builds overlap well on two cores)."""
    ensure_base("runtime")
    ensure_base("builder")
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda image: build_image(image, export=export), images))


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def print_builds(built: list[Built]) -> None:
    """The build table: image, size, seconds, archive."""
    print("| image | size | build | OCI archive |")
    print("| --- | ---: | ---: | --- |")
    for b in built:
        how = "up to date" if b.reused else f"{b.seconds:.0f} s"
        archive = b.archive.relative_to(ROOT).as_posix() if b.archive else "-"
        print(f"| {b.ref} | {_mb(b.size)} | {how} | {archive} |")


# ---- starting ---------------------------------------------------------------------------------------------------
#: Size budget of each image (MB, uncompressed layers, as buildah counts them): the runtime base (173 MB: Debian
#: minbase, CPython 3.11, tzdata, CA certificates) plus the kernel's and the service's own locked distributions
#: with their bytecode, no other service's. Measured 2026-12-02 (docs/operations.md), plus about 10 %.
SIZE_BUDGETS_MB = {
    "radcds-referral": 350,
    "radcds-imaging": 520,
    "radcds-inference": 580,
    "radcds-reporting": 390,
    "radcds-fusion": 520,
    "radcds-worklist": 360,
    "radcds-models": 190,
}
DATABASE_SERVICES = ("imaging", "reporting", "referral", "fusion", "worklist")
#: Ports of the stack `make images-test` runs (apart from `make up`'s and the tests' own).
TEST_PORTS = {
    "kafka": 27092,
    "kafka_controller": 27093,
    "triton_http": 27000,
    "triton_grpc": 27001,
    "triton_metrics": 27002,
    "imaging": 27082,
    "inference": 27083,
    "inference_grpc": 27051,
    "dimse": 27112,
    "reporting": 27085,
    "reporting_mllp": 27575,
    "referral": 27081,
    "fusion": 27084,
    "worklist": 27086,
    "oidc": 27090,
    "postgres": 27432,
}
_IN_IMAGE_DATA = "/app/.run/data"
_IN_IMAGE_ISSUERS = "/run/radcds/dev-issuer"


@dataclass
class Started:
    """One service image run to healthy: seconds to /healthz and /readyz, the image's HEALTHCHECK outcome."""

    image: str
    migrated: bool
    ready_s: float
    healthcheck: bool
    checks: dict[str, object] = field(default_factory=dict)


def container_env(service: str, stack_env: Mapping[str, str]) -> dict[str, str]:
    """The settings a service image gets in the test: the stack's ``RADCDS_<SERVICE>_*`` with host paths
    replaced by the image's own (its data folder, its model manifest, the mounted dev issuer)."""
    prefix = f"RADCDS_{service.upper()}_"
    env = {k: v for k, v in stack_env.items() if k.startswith(prefix)}
    env.pop(f"{prefix}TRACE_FILE", None)
    env[f"{prefix}HTTP_HOST"] = "127.0.0.1"
    if f"{prefix}DATA_DIR" in env:
        env[f"{prefix}DATA_DIR"] = f"{_IN_IMAGE_DATA}/{service}"
    if f"{prefix}STORAGE_DIR" in env:
        env[f"{prefix}STORAGE_DIR"] = f"{_IN_IMAGE_DATA}/{service}/instances"
    if f"{prefix}MODEL_REPOSITORY" in env:
        env[f"{prefix}MODEL_REPOSITORY"] = "/app/models"
    if f"{prefix}MODEL_MANIFEST" in env:
        env[f"{prefix}MODEL_MANIFEST"] = "/app/models/manifest.json"
    if f"{prefix}TRUSTED_ISSUERS_FILE" in env:
        name = Path(env[f"{prefix}TRUSTED_ISSUERS_FILE"]).name
        env[f"{prefix}TRUSTED_ISSUERS_FILE"] = f"{_IN_IMAGE_ISSUERS}/{name}"
    if service in DATABASE_SERVICES:
        env[f"{prefix}MIGRATE_ON_START"] = "false"  # as the chart runs them: the migrate command first
    return env


def _run_argv(container: str, env: Mapping[str, str], mounts: Iterable[str], command: list[str]) -> list[str]:
    argv = ["buildah", *_STORAGE, "run", "--isolation", "chroot", "--network", "host"]
    for key, value in sorted(env.items()):
        argv += ["--env", f"{key}={value}"]
    for mount in mounts:
        argv += ["-v", mount]
    return [*argv, container, "--", *command]


def _container(ref: str, name: str) -> str:
    subprocess.run(["buildah", *_STORAGE, "rm", name], capture_output=True, check=False)
    return _buildah("from", "--quiet", "--pull-never", "--name", name, ref, capture=True).strip()


def _copy_models_out(ref: str, target: Path) -> None:
    """What the chart's initContainer does: ``cp -R /models/. <emptyDir>`` as the image's non-root user."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    os.chown(target, 10001, 10001)
    container = _container(ref, "radcds-images-test-models")
    try:
        command = ["sh", "-c", 'cp -R "$MODELS_SOURCE"/. /model-repository/']
        subprocess.run(
            _run_argv(container, {"MODELS_SOURCE": "/models"}, [f"{target}:/model-repository"], command), check=True
        )
    finally:
        subprocess.run(["buildah", *_STORAGE, "rm", container], capture_output=True, check=False)


def _get_json(url: str) -> tuple[int, dict[str, object]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@dataclass
class ImageStack:
    """Kafka, PostgreSQL, Triton (on the models image's repository) and the OpenID Provider from the local
    stack, and each service *image* started in place of the service process (``buildah run``, host network)."""

    run_dir: Path = ROOT / ".run" / "images-test"
    tag: str = field(default_factory=version)
    containers: dict[str, str] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from radcds_devstack.stack import LocalStack, Ports

        self.stack = LocalStack(
            root=ROOT,
            run_dir=self.run_dir,
            ports=Ports(**TEST_PORTS),
            postgres=True,
            triton=True,
            model_repository=self.run_dir / "model-repository",
        )

    def ref(self, image: str) -> str:
        return f"{REGISTRY}/{image}:{self.tag}"

    def start_infrastructure(self) -> None:
        """Copy the models out of the models image, then start Kafka, PostgreSQL, Triton, the OpenID Provider."""
        self.stack.down()
        _copy_models_out(self.ref("radcds-models"), self.run_dir / "model-repository")
        self.stack.up(services=())
        self.stack.oidc_provider.start()
        self.stack.oidc_provider.wait()

    def probe(self, service: str) -> str:
        """A second container of the service's image, made once (vfs copies the whole image per container): the
        migrate command and the image's HEALTHCHECK command run in it."""
        if service not in self.probes:
            self.probes[service] = _container(self.ref(f"radcds-{service}"), f"radcds-images-test-{service}-probe")
        return self.probes[service]

    def migrate(self, service: str) -> None:
        """``radcds-<service> migrate`` in its image, against its PostgreSQL database (the chart's hook Job)."""
        argv = _run_argv(
            self.probe(service), self._env(service), self._mounts(), ["/opt/radcds/bin/radcds-service", "migrate"]
        )
        subprocess.run(argv, check=True, capture_output=True)

    def _env(self, service: str) -> dict[str, str]:
        return container_env(service, self.stack.service_env(service))

    def _mounts(self) -> list[str]:
        return [f"{self.stack.dev_issuer()[1].parent}:{_IN_IMAGE_ISSUERS}:ro"]

    def start(self, service: str) -> None:
        """Start the service's image as the process ``image-<service>`` of the run folder."""
        from radcds_devstack import processes

        container = _container(self.ref(f"radcds-{service}"), f"radcds-images-test-{service}")
        self.containers[service] = container
        argv = _run_argv(container, self._env(service), self._mounts(), ["/opt/radcds/bin/radcds-service"])
        processes.start(f"image-{service}", argv, run_dir=self.run_dir, env=dict(os.environ), cwd=ROOT)

    def wait(self, service: str, started: float, timeout_s: float = 180.0) -> Started:
        """Wait for /healthz and /readyz, then run the image's HEALTHCHECK command beside it."""
        from radcds_devstack import processes

        base = f"http://127.0.0.1:{self.stack.ports.http(service)}"
        alive = (f"image-{service}", self.run_dir)
        what = f"image radcds-{service}"
        processes.wait_until(lambda: processes.http_ok(f"{base}/healthz"), timeout_s=timeout_s, what=what, alive=alive)
        processes.wait_until(lambda: processes.http_ok(f"{base}/readyz"), timeout_s=timeout_s, what=what, alive=alive)
        ready_s = time.monotonic() - started
        _, body = _get_json(f"{base}/readyz")
        port = {f"RADCDS_{service.upper()}_HTTP_PORT": str(self.stack.ports.http(service))}
        healthcheck = ["/opt/radcds/bin/python", "/opt/radcds/bin/radcds-healthcheck"]
        probe = subprocess.run(_run_argv(self.probe(service), port, [], healthcheck), capture_output=True, check=False)
        checks = body.get("checks")
        return Started(
            f"radcds-{service}",
            service in DATABASE_SERVICES,
            ready_s,
            probe.returncode == 0,
            dict(checks) if isinstance(checks, dict) else {},
        )

    def stop(self) -> None:
        """Stop every image, then the infrastructure; remove the containers."""
        from radcds_devstack import processes

        for service in SERVICES:
            processes.stop(f"image-{service}", self.run_dir)
        for container in [*self.containers.values(), *self.probes.values()]:
            subprocess.run(["buildah", *_STORAGE, "rm", container], capture_output=True, check=False)
        self.containers.clear()
        self.probes.clear()
        self.stack.down()


def run_images(services: Iterable[str] = tuple(SERVICES)) -> Iterator[Started]:
    """Start the infrastructure, migrate and start every service image, yield each once healthy, stop all."""
    images = ImageStack()
    try:
        images.start_infrastructure()
        for service in services:
            if service in DATABASE_SERVICES:
                images.migrate(service)
        began = {}
        for service in services:
            began[service] = time.monotonic()
            images.start(service)
        for service in services:
            yield images.wait(service, began[service])
    finally:
        images.stop()


def print_started(started: list[Started]) -> None:
    """The start table: image, migrate, seconds to ready, readiness checks, HEALTHCHECK."""
    print("| image | migrate command | to /readyz | readiness checks | HEALTHCHECK |")
    print("| --- | --- | ---: | --- | --- |")
    for s in started:
        checks = ", ".join(f"{k}: {v}" for k, v in sorted(s.checks.items()))
        migrated = "ran" if s.migrated else "-"
        print(f"| {s.image} | {migrated} | {s.ready_s:.1f} s | {checks} | {'ok' if s.healthcheck else 'FAILED'} |")


def over_budget(built: Iterable[Built]) -> list[str]:
    """Images larger than their budget, as messages."""
    return [
        f"{b.name} is {_mb(b.size)}, over its budget of {SIZE_BUDGETS_MB[b.name]} MB"
        for b in built
        if b.size > SIZE_BUDGETS_MB[b.name] * 1_000_000
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m radcds_devstack.images {requirements,build,test}``."""
    parser = argparse.ArgumentParser(prog="radcds_devstack.images")
    sub = parser.add_subparsers(dest="command", required=True)
    req = sub.add_parser("requirements", help="write deploy/images/requirements/*.txt from the lock")
    req.add_argument("--out", type=Path, default=REQUIREMENTS_DIR)
    sub.add_parser("build", help="build every image (bases first) and export OCI archives to dist/images")
    sub.add_parser("test", help="start each image to healthy against the local infrastructure, then stop it")
    args = parser.parse_args(argv)
    if args.command == "requirements":
        for path in write_requirements(args.out):
            print(f"radcds: wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return 0
    why = buildah_available()
    if why is not None:
        print(f"radcds: cannot build or run images here: {why}", file=sys.stderr)
        return 1
    if args.command == "build":
        built = build_all()
        print_builds(built)
        problems = over_budget(built)
        for problem in problems:
            print(f"radcds: {problem}", file=sys.stderr)
        return 1 if problems else 0
    built = build_all(export=False)
    print_builds(built)
    started = list(run_images())
    print_started(started)
    failed = [s.image for s in started if not s.healthcheck] + over_budget(built)
    for problem in failed:
        print(f"radcds: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
