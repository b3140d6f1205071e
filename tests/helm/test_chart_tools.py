"""The chart checked with the tools `make deps` installs: a real helm binary, the CRD models, the docs generator.

- ``helm lint --strict`` and ``helm template`` (helm v3.22.0, built from the Go module proxy into
  .cache/helm/bin) for every ``deploy/helm/radcds/ci/*-values.yaml``, each rendered once per session.
- Every rendered Kubernetes object validated with kubernetes-validate (strict: unknown fields are errors) for the
  oldest and the newest Kubernetes the chart claims (Chart.yaml ``kubeVersion``).
- KEDA and Prometheus-operator objects validated with @kubernetes-models/keda and
  @kubernetes-models/prometheus-operator (npm peer deploy/local/charttools). These packages ship no JSON
  schemas: they ship validators compiled from the projects' CRD OpenAPI schemas (run with node: types, enums,
  required fields) and TypeScript declarations of the same types (checked with tsc: an unknown field anywhere
  is an error, the strictness a CRD schema without ``additionalProperties: false`` lacks).
- README.md and values.schema.json regenerated from values.yaml (``make chart-docs``) into a temporary folder:
  they must equal the committed files.

The tools come from ``make deps`` (``make test`` runs it first); a missing tool fails the test and says so.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .test_chart import (
    RADCDS_IMAGES,
    SERVICE_SETTINGS,
    THIRD_PARTY_IMAGES,
    _assert_locked_down,
    _rendered_setting_names,
)

pytestmark = [pytest.mark.integration, pytest.mark.validators]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "radcds"
HELM = ROOT / ".cache" / "helm" / "bin" / "helm"
NODE_MODULES = ROOT / ".cache" / "charttools" / "node_modules"
CRD_VALIDATOR = ROOT / "deploy" / "local" / "charttools" / "validate-crds.mjs"
CHART_DOCS = ROOT / "deploy" / "helm" / "chart_docs.py"
OPERATIONS = ROOT / "docs" / "operations.md"
CI_VALUES = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "radcds"
NAMESPACE = "radcds"
#: The oldest and the newest Kubernetes the chart supports (Chart.yaml kubeVersion ">=1.27.0-0 <1.35.0-0").
KUBE_VERSIONS = ("1.27.0", "1.34.0")
CUSTOM_GROUPS = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}
#: TypeScript interface of each custom kind, and the module that declares it.
TS_TYPES = {
    "ScaledObject": ("IScaledObject", "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject"),
    "TriggerAuthentication": (
        "ITriggerAuthentication",
        "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
    ),
    "ServiceMonitor": (
        "IServiceMonitor",
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
    ),
    "PrometheusRule": (
        "IPrometheusRule",
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
    ),
}


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} is missing at {path.relative_to(ROOT)}: run `make deps` (make test runs it first)")
    return path


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_require(HELM, "the helm binary")), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _template(values_file: str | None, kube_version: str) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version]
    if values_file:
        args += ["--values", str(CHART / "ci" / values_file)]
    result = _helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(ci values file, Kubernetes version) -> the objects ``helm template`` renders, once per session."""
    return {(name, version): _template(name, version) for name in CI_VALUES for version in KUBE_VERSIONS}


def _newest(rendered: dict[tuple[str, str], list[dict[str, Any]]], values_file: str) -> list[dict[str, Any]]:
    return rendered[(values_file, KUBE_VERSIONS[-1])]


def _of_kind(docs: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in kinds]


def _pods(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in _of_kind(docs, "Deployment", "Job"):
        yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def test_ci_values_files_are_the_four_the_chart_documents() -> None:
    assert CI_VALUES == [
        "gpu-triton-values.yaml",
        "keda-values.yaml",
        "minimal-values.yaml",
        "production-values.yaml",
    ]


def test_chart_kube_version_range_is_the_oldest_and_newest_tested() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    assert chart["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0 <1.35.0-0"


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_helm_lint_strict_passes_for_the_ci_values_file(values_file: str) -> None:
    result = _helm(
        "lint", "--strict", str(CHART), "--values", str(CHART / "ci" / values_file), "--kube-version", "1.34.0"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_helm_template_with_the_chart_defaults_only_fails_asking_for_kafka() -> None:
    result = _helm("template", RELEASE, str(CHART), "--kube-version", "1.34.0")

    assert result.returncode != 0
    assert "kafka.bootstrapServers is required" in result.stderr


@pytest.mark.parametrize("kube_version", ["1.26.9", "1.35.0"])
def test_helm_template_for_a_kubernetes_outside_the_supported_range_is_refused(kube_version: str) -> None:
    result = _helm(
        "template", RELEASE, str(CHART), "--values", str(CHART / "ci" / "minimal-values.yaml"),
        "--kube-version", kube_version,
    )  # fmt: skip

    assert result.returncode != 0
    assert "chart requires kubeVersion" in result.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", CI_VALUES)
def test_rendered_objects_validate_strict_against_the_kubernetes_schemas(
    rendered: dict[tuple[str, str], list[dict[str, Any]]], values_file: str, kube_version: str
) -> None:
    docs = rendered[(values_file, kube_version)]

    builtin = [doc for doc in docs if doc["apiVersion"] not in CUSTOM_GROUPS]
    assert builtin
    for doc in builtin:
        kubernetes_validate.validate(doc, kube_version, strict=True)
        assert doc["metadata"]["namespace"] == NAMESPACE


@pytest.fixture(scope="module")
def custom_objects(rendered: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    objects = [doc for name in CI_VALUES for doc in _newest(rendered, name) if doc["apiVersion"] in CUSTOM_GROUPS]
    assert {doc["kind"] for doc in objects} == set(TS_TYPES)
    return objects


def _compiled_validator_errors(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    _require(NODE_MODULES / "@kubernetes-models" / "keda", "@kubernetes-models/keda")
    result = subprocess.run(
        ["node", str(CRD_VALIDATOR), str(NODE_MODULES)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [entry for entry in json.loads(result.stdout) if entry["errors"]]


def _tsc_errors(objects: list[dict[str, Any]], tmp_path: Path) -> list[str]:
    tsc = _require(NODE_MODULES / "typescript" / "bin" / "tsc", "typescript (tsc)")
    lines = [f'import type {{ {iface} }} from "{module}";' for iface, module in TS_TYPES.values()]
    for index, doc in enumerate(objects):
        lines.append(f"export const o{index}: {TS_TYPES[doc['kind']][0]} = {json.dumps(doc)};")
    (tmp_path / "objects.ts").write_text("\n".join(lines) + "\n")
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "module": "nodenext",
            "moduleResolution": "nodenext",
            "skipLibCheck": True,
            "types": [],
            "baseUrl": ".",
            "paths": {"*": [f"{NODE_MODULES}/*"]},
        },
        "files": ["objects.ts"],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        ["node", str(tsc), "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return [line for line in result.stdout.splitlines() if "error TS" in line]


def test_keda_and_prometheus_operator_objects_pass_their_crd_validators(custom_objects: list[dict[str, Any]]) -> None:
    assert _compiled_validator_errors(custom_objects) == []


def test_keda_and_prometheus_operator_objects_have_only_fields_their_crds_declare(
    custom_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    assert _tsc_errors(custom_objects, tmp_path) == []


def test_crd_checks_report_a_misspelt_field_and_a_wrong_type(
    custom_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    scaled = next(doc for doc in custom_objects if doc["kind"] == "ScaledObject")
    misspelt = json.loads(json.dumps(scaled))
    misspelt["spec"]["minReplicas"] = misspelt["spec"].pop("minReplicaCount")
    wrong_type = json.loads(json.dumps(scaled))
    wrong_type["spec"]["maxReplicaCount"] = "six"

    errors = _tsc_errors([misspelt], tmp_path)
    assert len(errors) == 1 and "'\"minReplicas\"' does not exist" in errors[0]
    (entry,) = _compiled_validator_errors([wrong_type])
    assert entry["errors"] == ["data/spec/maxReplicaCount must be integer"]


# ---- assertions on the rendered objects of each ci values file ------------------------------------------------


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_every_container_of_the_ci_release_is_locked_down_with_resources(
    rendered: dict[tuple[str, str], list[dict[str, Any]]], values_file: str
) -> None:
    for name, pod in _pods(_newest(rendered, values_file)):
        _assert_locked_down(name, pod)
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_every_deployment_of_the_ci_release_has_startup_liveness_and_readiness_probes(
    rendered: dict[tuple[str, str], list[dict[str, Any]]], values_file: str
) -> None:
    for deployment in _of_kind(_newest(rendered, values_file), "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] == "http", (deployment["metadata"]["name"], probe)


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_every_image_of_the_ci_release_is_a_radcds_or_known_image_with_a_pinned_tag(
    rendered: dict[tuple[str, str], list[dict[str, Any]]], values_file: str
) -> None:
    for name, pod in _pods(_newest(rendered, values_file)):
        for container in pod["containers"] + pod.get("initContainers", []):
            repository, _, tag = container["image"].rpartition(":")
            assert tag and tag != "latest", (name, container["image"])
            assert repository.rsplit("/", 1)[-1] in RADCDS_IMAGES or repository in THIRD_PARTY_IMAGES, name


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_every_radcds_variable_of_the_ci_release_is_a_setting_of_its_service(
    rendered: dict[tuple[str, str], list[dict[str, Any]]], values_file: str
) -> None:
    names = _rendered_setting_names(_newest(rendered, values_file))

    for component, found in names.items():
        radcds = {name for name in found if name.startswith("RADCDS_")}
        if component not in SERVICE_SETTINGS:
            assert radcds == set(), component
            continue
        prefix = f"RADCDS_{component.upper()}_"
        assert {name.removeprefix(prefix) for name in radcds} <= SERVICE_SETTINGS[component], component


def test_production_release_runs_two_replicas_with_a_disruption_budget_and_egress_policy_each(
    rendered: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    docs = _newest(rendered, "production-values.yaml")

    deployments = {d["metadata"]["name"]: d for d in _of_kind(docs, "Deployment")}
    budgets = {d["metadata"]["name"] for d in _of_kind(docs, "PodDisruptionBudget")}
    policies = {d["metadata"]["name"]: d for d in _of_kind(docs, "NetworkPolicy")}
    assert all(d["spec"]["replicas"] >= 2 for d in deployments.values())
    assert budgets == set(deployments) - {f"{RELEASE}-triton"}
    assert set(policies) == set(deployments)
    assert all(p["spec"]["policyTypes"] == ["Ingress", "Egress"] for p in policies.values())


def test_production_release_migrates_every_database_in_hook_jobs_and_not_on_start(
    rendered: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    docs = _newest(rendered, "production-values.yaml")

    jobs = {d["metadata"]["name"]: d for d in _of_kind(docs, "Job")}
    services = ["referral", "imaging", "reporting", "fusion", "worklist"]
    assert set(jobs) == {f"{RELEASE}-{svc}-migrations" for svc in services}
    configs = {d["metadata"]["name"]: d["data"] for d in _of_kind(docs, "ConfigMap")}
    for svc in services:
        assert configs[f"{RELEASE}-{svc}"][f"RADCDS_{svc.upper()}_MIGRATE_ON_START"] == "false"
    assert "RADCDS_INFERENCE_MIGRATE_ON_START" not in configs[f"{RELEASE}-inference"]


def test_production_release_serves_cds_hooks_fhir_dicomweb_and_the_worklist_over_tls(
    rendered: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    (ingress,) = _of_kind(_newest(rendered, "production-values.yaml"), "Ingress")

    routes = {
        (rule["host"], path["path"]): path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routes == {
        ("radcds.example.org", "/cds-services"): f"{RELEASE}-referral",
        ("radcds.example.org", "/fhir"): f"{RELEASE}-reporting",
        ("radcds.example.org", "/dicom-web"): f"{RELEASE}-imaging",
        ("worklist.example.org", "/"): f"{RELEASE}-worklist",
    }
    assert {(tuple(t["hosts"]), t["secretName"]) for t in ingress["spec"]["tls"]} == {
        (("radcds.example.org",), "radcds-tls"),
        (("worklist.example.org",), "worklist-tls"),
    }
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_gpu_triton_release_requests_one_gpu_on_a_gpu_node(
    rendered: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    (triton,) = [
        d
        for d in _of_kind(_newest(rendered, "gpu-triton-values.yaml"), "Deployment")
        if "triton" in d["metadata"]["name"]
    ]

    pod = triton["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert triton["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_keda_release_scales_each_consumer_on_its_group_lag_and_triton_on_queue_time(
    rendered: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    docs = _newest(rendered, "keda-values.yaml")

    scaled = {d["metadata"]["name"]: d["spec"] for d in _of_kind(docs, "ScaledObject")}
    assert set(scaled) == {f"{RELEASE}-{svc}" for svc in ("inference", "reporting", "fusion", "worklist", "triton")}
    assert not _of_kind(docs, "HorizontalPodAutoscaler")
    for name, spec in scaled.items():
        assert spec["scaleTargetRef"]["name"] == name
        assert "replicas" not in next(d for d in _of_kind(docs, "Deployment") if d["metadata"]["name"] == name)["spec"]
    kafka = scaled[f"{RELEASE}-inference"]["triggers"]
    assert [t["metadata"]["consumerGroup"] for t in kafka] == ["radcds-inference"]
    assert kafka[0]["metadata"]["sasl"] == "scram_sha256" and kafka[0]["metadata"]["tls"] == "enable"
    assert kafka[0]["authenticationRef"] == {"name": f"{RELEASE}-keda-kafka"}
    (auth,) = _of_kind(docs, "TriggerAuthentication")
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password", "ca"}
    (queue,) = scaled[f"{RELEASE}-triton"]["triggers"]
    assert queue["type"] == "prometheus"
    assert "nv_inference_queue_duration_us" in queue["metadata"]["query"]
    assert "nv_inference_request_success" in queue["metadata"]["query"]


# ---- alerts, dashboard and docs ---------------------------------------------------------------------------------


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_severity_summary_description_and_a_runbook_anchor_in_operations_md(
    rendered: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    (rule,) = _of_kind(_newest(rendered, "production-values.yaml"), "PrometheusRule")
    anchors = {
        _github_anchor(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("## ") or line.startswith("### ")
    }

    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {a["alert"] for a in alerts} == {
        "RadcdsEventsDeadLettered",
        "RadcdsCriticalResultEventsFailing",
        "RadcdsConsumerLagHigh",
        "RadcdsDeadLetterTopicGrowing",
        "RadcdsOruParked",
        "RadcdsTritonInferenceFailures",
        "RadcdsModelMonitoringAlert",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        base, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert base == "https://docs.radcds.example.org/operations.md", alert["alert"]
        assert anchor in anchors, alert["alert"]


def _exported_metric_names() -> set[str]:
    """Prometheus names the services and Triton export (counters with their _total sample suffix)."""
    sources = [*ROOT.glob("libs/radcds/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    names: set[str] = set()
    for source in sources:
        text = source.read_text()
        for kind, name in re.findall(r"\b(Counter|Histogram|Gauge|GaugeMetricFamily)\(\s*\"(radcds_\w+)\"", text):
            names.add(name + "_total" if kind == "Counter" else name)
            if kind == "Histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
    # Triton's metrics (https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/metrics.html)
    # and a Kafka exporter's (github.com/danielqsj/kafka_exporter).
    names |= {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "kafka_consumergroup_lag",
        "kafka_topic_partition_current_offset",
    }
    return names


def _metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:radcds|nv|kafka)_[a-z0-9_]+)\s*(?:\{|\[|\))", expr))


def test_alerts_and_dashboard_query_only_metrics_radcds_triton_and_the_kafka_exporter_export(
    rendered: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    docs = _newest(rendered, "production-values.yaml")
    (rule,) = _of_kind(docs, "PrometheusRule")
    (dashboard,) = [d for d in _of_kind(docs, "ConfigMap") if d["metadata"]["name"] == f"{RELEASE}-dashboard"]

    exported = _exported_metric_names()
    expressions = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    panels = json.loads(dashboard["data"]["radcds.json"])["panels"]
    expressions += [target["expr"] for panel in panels for target in panel["targets"]]
    used = set().union(*(_metric_names_in(expr) for expr in expressions))
    assert used and used <= exported, used - exported
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    titles = " ".join(panel["title"] for panel in panels).lower()
    for topic in ("latency", "throughput", "consumer lag", "dead letters", "per-model"):
        assert topic in titles, topic


# ---- README.md and values.schema.json from values.yaml ----------------------------------------------------------


def _chart_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_docs", CHART_DOCS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerated_readme_and_values_schema_equal_the_committed_ones(tmp_path: Path) -> None:
    generator = _require(
        NODE_MODULES / "@bitnami" / "readme-generator-for-helm" / "bin" / "index.js", "readme-generator-for-helm"
    )
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: run `make deps`")

    _chart_docs().generate(chart=CHART, generator=generator, out=tmp_path)

    for name in ("README.md", "values.schema.json"):
        assert (tmp_path / name).read_text() == (CHART / name).read_text(), f"{name} is stale: run `make chart-docs`"


def test_schema_post_processing_keeps_constraints_adds_descriptions_and_generated_only_keys() -> None:
    generated = {
        "type": "object",
        "properties": {
            "kafka": {
                "type": "object",
                "properties": {"bootstrapServers": {"type": "string", "description": "Brokers", "default": ""}},
            },
            "referral": {"type": "object", "description": "Referral", "properties": {"replicas": {"type": "number"}}},
            "extra": {"type": "string", "description": "Only in values.yaml"},
        },
    }
    constraints = {
        "additionalProperties": False,
        "properties": {
            "kafka": {"additionalProperties": False, "properties": {"bootstrapServers": {"pattern": "^.+:[0-9]+$"}}},
            "referral": {"$ref": "#/definitions/component"},
        },
    }

    merged = _chart_docs().merge_constraints(generated, constraints)

    servers = merged["properties"]["kafka"]["properties"]["bootstrapServers"]
    assert servers == {"pattern": "^.+:[0-9]+$", "description": "Brokers", "default": ""}
    assert merged["properties"]["kafka"]["additionalProperties"] is False
    assert merged["properties"]["referral"] == {"$ref": "#/definitions/component", "description": "Referral"}
    assert merged["properties"]["extra"] == {"type": "string", "description": "Only in values.yaml"}
    assert constraints["properties"]["kafka"]["properties"]["bootstrapServers"] == {"pattern": "^.+:[0-9]+$"}
