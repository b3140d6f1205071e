"""The Helm chart deploy/helm/radcds, checked offline.

helm-python-sdk (Helm v4 as a library) lints and renders the chart; the rendered manifests are
parsed with PyYAML and validated against the Kubernetes 1.32 JSON schemas (strict: unknown
fields are errors) with kubernetes-validate. No cluster and no helm binary are involved.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from radcds_devstack.images import IMAGE_NAMES
from radcds_worklist.settings import WorklistSettings

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "radcds"
KUBE_VERSION = "1.32.0"
RELEASE = "radcds"
NAMESPACE = "radcds"
BOOTSTRAP = "kafka-0.kafka:9092,kafka-1.kafka:9092"
REQUIRED: dict[str, Any] = {"kafka": {"bootstrapServers": BOOTSTRAP}}

# Service -> the ports the chart must open (container port name -> number).
SERVICE_PORTS = {
    "referral": {"http": 8081},
    "imaging": {"http": 8082, "dimse": 11112},
    "inference": {"http": 8083, "grpc": 50051},
    "reporting": {"http": 8085, "mllp": 2575},
    "fusion": {"http": 8084},
    "worklist": {"http": 8086},
}
# The settings each service reads, without the RADCDS_<SERVICE>_ prefix. The services ignore
# unknown variables silently, so a misspelt name in the chart is a silent bug: this mirrors
# services/*/src/*/settings.py and libs/radcds/src/radcds/runtime/settings.py (ServiceSettings,
# the common fields); update it when those change.
_COMMON_SETTINGS = frozenset(
    {
        "ENVIRONMENT",
        "HTTP_HOST",
        "HTTP_PORT",
        "LOG_LEVEL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_REQUEST_TIMEOUT_MS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "OTLP_ENDPOINT",
        "TRACE_FILE",
        "CONSUMER_MAX_RETRIES",
        "CONSUMER_BACKOFF_INITIAL_S",
        "CONSUMER_BACKOFF_MAX_S",
    }
)
# RADCDS_<SVC>_MIGRATE_ON_START (default true) is read by every service with a database; the chart sets it to
# "false" when its migration hook Job migrates that database (the setting comes with the images, issue #14).
_DATABASE_SETTINGS = frozenset({"DATABASE_URL", "MIGRATE_ON_START"})
SERVICE_SETTINGS: dict[str, frozenset[str]] = {
    "referral": _COMMON_SETTINGS | _DATABASE_SETTINGS | {"DATA_DIR", "FUSION_FHIR_URL", "FUSION_TIMEOUT_S"},
    "imaging": _COMMON_SETTINGS
    | _DATABASE_SETTINGS
    | {"DIMSE_PORT", "AE_TITLE", "STORAGE_DIR", "PUBLIC_BASE_URL", "MAX_REQUEST_BYTES"},
    "inference": _COMMON_SETTINGS
    | {
        "GRPC_PORT",
        "TRITON_URL",
        "TRITON_TIMEOUT_S",
        "TRITON_RETRIES",
        "TRITON_BACKOFF_S",
        "TRITON_SHARED_MEMORY",
        "TRITON_BREAKER_FAILURES",
        "TRITON_BREAKER_RESET_S",
        "MODEL_REPOSITORY",
        "IMAGING_DICOMWEB_URL",
        "RETRIEVE_TIMEOUT_S",
        "RETRIEVE_PARALLEL",
        "STORE_STRUCTURED_REPORTS",
        "ANALYZE_TIMEOUT_S",
        "CONSUMER_GROUP",
    },
    "reporting": _COMMON_SETTINGS
    | _DATABASE_SETTINGS
    | {"MLLP_PORT", "MLLP_DESTINATIONS", "MLLP_OPTIONS_FILE", "DATA_DIR", "CONSUMER_GROUP", "FHIR_BASE_URL"},
    "fusion": _COMMON_SETTINGS
    | _DATABASE_SETTINGS
    | {
        "DATA_DIR",
        "KNOWLEDGE_DIR",
        "CONSUMER_GROUP",
        "IMAGING_DICOMWEB_URL",
        "RETRIEVE_TIMEOUT_S",
        "OVERDUE_SWEEP_INTERVAL_S",
    },
    # The worklist is newer: its names are read from its settings class itself.
    "worklist": frozenset(name.upper() for name in WorklistSettings.model_fields) | _DATABASE_SETTINGS,
}
#: The radcds images the chart names (<image.repository>/<name>:<tag>): exactly those `make images` builds.
RADCDS_IMAGES = frozenset(IMAGE_NAMES)
#: Third-party images the chart uses (repository without tag).
THIRD_PARTY_IMAGES = frozenset({"nvcr.io/nvidia/tritonserver", "apache/kafka"})
TOPICS = {
    "radcds.referral.evaluations.v1": 6,
    "radcds.imaging.instances.v1": 6,
    "radcds.imaging.studies.v1": 6,
    "radcds.inference.findings.v1": 6,
    "radcds.reporting.reports.v1": 6,
    "radcds.reporting.orders.v1": 6,
    "radcds.reporting.findings.v1": 6,
    "radcds.fusion.assessments.v1": 6,
    "radcds.fusion.recommendations.v1": 6,
    "radcds.worklist.feedback.v1": 6,
    "radcds.worklist.alerts.v1": 6,
    "radcds.imaging.instances.v1.dlt": 1,
    "radcds.imaging.studies.v1.dlt": 1,
    "radcds.inference.findings.v1.dlt": 1,
    "radcds.reporting.reports.v1.dlt": 1,
    "radcds.reporting.orders.v1.dlt": 1,
    "radcds.reporting.findings.v1.dlt": 1,
    "radcds.fusion.assessments.v1.dlt": 1,
    "radcds.fusion.recommendations.v1.dlt": 1,
    "radcds.worklist.feedback.v1.dlt": 1,
    "radcds.worklist.alerts.v1.dlt": 1,
    "radcds.referral.evaluations.v1.dlt": 1,
}

ISSUER = "https://sso.example.org/realms/radiology"
# The worklist is off by default (it needs an OpenID Connect issuer and, in production, a Secret).
WORKLIST: dict[str, Any] = {
    "worklist": {"enabled": True, "auth": {"oidcIssuer": ISSUER, "existingSecret": "radcds-worklist-auth"}}
}

# Values that switch on every optional part of the chart at once.
EVERYTHING_ON: dict[str, Any] = {
    "kafka": {
        "securityProtocol": "SASL_SSL",
        "sasl": {"mechanism": "SCRAM-SHA-512", "existingSecret": "kafka-user"},
        "tls": {"caSecret": "kafka-ca"},
    },
    "database": {"existingSecret": "radcds-db", "existingSecretKeys": {"reporting": "reporting-dsn"}},
    "otel": {"endpoint": "http://otel-collector:4318/v1/traces"},
    "networkPolicy": {
        "enabled": True,
        "extraIngressFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}],
    },
    "fusion": {"enabled": True},
    "imaging": {
        "publicBaseUrl": "https://pacs.example.org/radcds",
        "pdb": {"enabled": True},
        "autoscaling": {"enabled": True, "maxReplicas": 3},
        "persistence": {"storageClass": "fast-ssd", "size": "200Gi"},
        "service": {"type": "LoadBalancer"},
    },
    "reporting": {
        "fhirBaseUrl": "https://radcds.example.org/fhir",
        "pdb": {"enabled": True, "maxUnavailable": 1},
        "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "envFromSecrets": ["reporting-extra"],
    },
    "triton": {
        "gpu": {"enabled": True, "count": 1},
        "runtimeClassName": "nvidia",
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "extraArgs": ["--log-verbose=1"],
    },
    "worklist": {
        "enabled": True,
        "publicBaseUrl": "https://worklist.example.org",
        "auth": {"oidcIssuer": ISSUER, "existingSecret": "radcds-worklist-auth"},
        "networkPolicy": {"egress": {"kafkaTo": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}},
        "persistence": {"enabled": True},
        "settings": {"LOCK_TTL_S": 600},
        "pdb": {"enabled": True},
    },
    "topics": {"create": True},
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (maps merge, everything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def _render_raw(chart: helm.Chart, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    values = _merge(REQUIRED, overrides or {})
    return chart.render(values, name=RELEASE, namespace=NAMESPACE)


def _render(chart: helm.Chart, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rendered manifests as parsed objects (NOTES.txt left out)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(_render_raw(chart, overrides).items()):
        if path.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def _objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _deployment(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return _objects(docs, "Deployment")[f"{RELEASE}-{component}"]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _config(docs: list[dict[str, Any]], component: str) -> dict[str, str]:
    data: dict[str, str] = _objects(docs, "ConfigMap")[f"{RELEASE}-{component}"]["data"]
    return data


def _render_error(chart: helm.Chart, overrides: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        _render_raw(chart, overrides)
    return str(caught.value)


def test_lint_with_required_values_reports_no_warnings_or_errors_in_strict_mode() -> None:
    report = helm.lint(CHART, REQUIRED, strict=True, kube_version=f"v{KUBE_VERSION}")

    assert report["errors"] == []
    # Severity 1 is INFO (e.g. "icon is recommended"); 2 WARNING and 3 ERROR must not occur.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_metadata_is_api_v2_version_and_app_version_0_1_0(chart: helm.Chart) -> None:
    metadata = chart.metadata

    assert metadata["apiVersion"] == "v2"
    assert metadata["version"] == "0.1.0"
    assert metadata["appVersion"] == "0.1.0"


def test_default_values_render_deployments_for_enabled_services(chart: helm.Chart) -> None:
    docs = _render(chart)

    expected = {f"{RELEASE}-{name}" for name in ("referral", "imaging", "inference", "reporting", "fusion")}
    expected.add(f"{RELEASE}-triton")
    assert set(_objects(docs, "Deployment")) == expected
    assert set(_objects(docs, "Service")) == expected
    assert not _objects(docs, "ServiceAccount")


def test_fusion_reads_imaging_dicomweb_and_referral_reads_fusion_fhir(chart: helm.Chart) -> None:
    docs = _render(chart)

    assert _config(docs, "fusion")["RADCDS_FUSION_IMAGING_DICOMWEB_URL"] == f"http://{RELEASE}-imaging:8082/dicom-web"
    assert _config(docs, "fusion")["RADCDS_FUSION_DATA_DIR"] == "/var/lib/radcds/fusion"
    assert _config(docs, "referral")["RADCDS_REFERRAL_FUSION_FHIR_URL"] == f"http://{RELEASE}-fusion:8084/fhir"
    without = _render(chart, {"fusion": {"enabled": False}})
    assert "RADCDS_REFERRAL_FUSION_FHIR_URL" not in _config(without, "referral")
    assert f"{RELEASE}-fusion" not in _objects(without, "ConfigMap")


def test_referral_without_a_database_keeps_its_sqlite_on_the_writable_tmp_volume(chart: helm.Chart) -> None:
    config = _config(_render(chart), "referral")

    assert config["RADCDS_REFERRAL_DATA_DIR"] == "/tmp/referral"  # the root filesystem is read-only
    with_db = _render(chart, {"referral": {"useDatabase": True}, "database": {"urls": {"referral": "postgresql://r"}}})
    assert "RADCDS_REFERRAL_DATA_DIR" not in _config(with_db, "referral")


def test_fusion_enabled_renders_deployment_and_service_on_port_8084(chart: helm.Chart) -> None:
    docs = _render(chart, {"fusion": {"enabled": True}})

    container = _container(_deployment(docs, "fusion"))
    assert container["command"] == ["radcds-fusion"]
    assert [p["containerPort"] for p in container["ports"]] == [8084]
    assert _objects(docs, "Service")[f"{RELEASE}-fusion"]["spec"]["ports"][0]["port"] == 8084


def test_referral_disabled_renders_no_referral_resources(chart: helm.Chart) -> None:
    docs = _render(chart, {"referral": {"enabled": False}})

    assert not [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-referral"]


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_service_ports_match_protocol_endpoints_in_container_and_service(chart: helm.Chart, service: str) -> None:
    docs = _render(chart, WORKLIST)

    container = _container(_deployment(docs, service))
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    svc = _objects(docs, "Service")[f"{RELEASE}-{service}"]
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert container_ports == SERVICE_PORTS[service]
    assert service_ports == {name: (port, name) for name, port in SERVICE_PORTS[service].items()}
    assert all(p["protocol"] == "TCP" for p in svc["spec"]["ports"])


@pytest.mark.parametrize("service", ["referral", "imaging", "inference", "reporting"])
def test_service_container_runs_console_script_from_its_own_image(chart: helm.Chart, service: str) -> None:
    docs = _render(chart)

    container = _container(_deployment(docs, service))
    assert container["image"] == f"registry.example.org/radcds/radcds-{service}:0.1.0"
    assert container["command"] == [f"radcds-{service}"]


def test_image_tag_overrides_apply_globally_and_per_service(chart: helm.Chart) -> None:
    docs = _render(
        chart,
        {
            "image": {"repository": "ghcr.io/acme", "tag": "1.2.3"},
            "imaging": {"image": {"tag": "9"}},
        },
    )

    assert _container(_deployment(docs, "referral"))["image"] == "ghcr.io/acme/radcds-referral:1.2.3"
    assert _container(_deployment(docs, "imaging"))["image"] == "ghcr.io/acme/radcds-imaging:9"
    init = _deployment(docs, "triton")["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == "ghcr.io/acme/radcds-models:1.2.3"


@pytest.mark.parametrize("service", ["referral", "imaging", "inference", "reporting"])
def test_service_probes_check_healthz_and_readyz_on_http_port(chart: helm.Chart, service: str) -> None:
    container = _container(_deployment(_render(chart), service))

    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


@pytest.mark.parametrize("service", ["referral", "imaging", "inference", "reporting"])
def test_service_reads_prefixed_kafka_and_http_settings_from_its_configmap(chart: helm.Chart, service: str) -> None:
    docs = _render(chart)

    prefix = f"RADCDS_{service.upper()}_"
    config = _config(docs, service)
    assert config[prefix + "KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP
    assert config[prefix + "KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert config[prefix + "HTTP_HOST"] == "0.0.0.0"
    assert config[prefix + "HTTP_PORT"] == str(SERVICE_PORTS[service]["http"])
    assert config[prefix + "ENVIRONMENT"] == "production"
    assert all(isinstance(value, str) for value in config.values())
    assert prefix + "OTLP_ENDPOINT" not in config
    container = _container(_deployment(docs, service))
    assert container["envFrom"] == [{"configMapRef": {"name": f"{RELEASE}-{service}"}}]


def test_imaging_and_reporting_settings_carry_dicom_and_hl7_endpoints(chart: helm.Chart) -> None:
    docs = _render(chart)

    imaging = _config(docs, "imaging")
    reporting = _config(docs, "reporting")
    assert imaging["RADCDS_IMAGING_DIMSE_PORT"] == "11112"
    assert imaging["RADCDS_IMAGING_AE_TITLE"] == "RADCDS"
    assert imaging["RADCDS_IMAGING_STORAGE_DIR"] == "/var/lib/radcds/imaging/instances"
    assert imaging["RADCDS_IMAGING_PUBLIC_BASE_URL"] == f"http://{RELEASE}-imaging:8082"
    assert reporting["RADCDS_REPORTING_MLLP_PORT"] == "2575"
    assert reporting["RADCDS_REPORTING_DATA_DIR"] == "/var/lib/radcds/reporting"
    assert reporting["RADCDS_REPORTING_FHIR_BASE_URL"] == f"http://{RELEASE}-reporting:8085/fhir"
    assert _config(docs, "inference")["RADCDS_INFERENCE_GRPC_PORT"] == "50051"


def test_base_urls_follow_the_release_name_and_http_ports(chart: helm.Chart) -> None:
    values = _merge(
        REQUIRED,
        {"imaging": {"ports": {"http": 9082}}, "reporting": {"ports": {"http": 9085}}},
    )
    manifests = chart.render(values, name="prod", namespace=NAMESPACE)
    docs = [d for path, text in manifests.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]

    configs = _objects(docs, "ConfigMap")
    imaging = configs["prod-radcds-imaging"]["data"]
    reporting = configs["prod-radcds-reporting"]["data"]
    assert imaging["RADCDS_IMAGING_PUBLIC_BASE_URL"] == "http://prod-radcds-imaging:9082"
    assert reporting["RADCDS_REPORTING_FHIR_BASE_URL"] == "http://prod-radcds-reporting:9085/fhir"
    assert "prod-radcds-imaging" in _objects(docs, "Service")
    assert "prod-radcds-reporting" in _objects(docs, "Service")


def test_public_and_fhir_base_urls_are_overridable_without_trailing_slash(chart: helm.Chart) -> None:
    docs = _render(
        chart,
        {
            "imaging": {"publicBaseUrl": "https://pacs.example.org/radcds/"},
            "reporting": {"fhirBaseUrl": "https://radcds.example.org/fhir"},
        },
    )

    assert _config(docs, "imaging")["RADCDS_IMAGING_PUBLIC_BASE_URL"] == "https://pacs.example.org/radcds"
    assert _config(docs, "reporting")["RADCDS_REPORTING_FHIR_BASE_URL"] == "https://radcds.example.org/fhir"


def test_reporting_data_dir_is_a_writable_empty_dir_by_default(chart: helm.Chart) -> None:
    docs = _render(chart)

    deployment = _deployment(docs, "reporting")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert mounts["data"] == _config(docs, "reporting")["RADCDS_REPORTING_DATA_DIR"]
    assert f"{RELEASE}-reporting" not in _objects(docs, "PersistentVolumeClaim")


def test_reporting_persistence_enabled_keeps_data_dir_on_a_claim(chart: helm.Chart) -> None:
    docs = _render(chart, {"reporting": {"persistence": {"enabled": True, "mountPath": "/data"}}})

    claim = _objects(docs, "PersistentVolumeClaim")[f"{RELEASE}-reporting"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    deployment = _deployment(docs, "reporting")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": f"{RELEASE}-reporting"}
    assert {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}["data"] == "/data"
    assert _config(docs, "reporting")["RADCDS_REPORTING_DATA_DIR"] == "/data"


def test_imaging_storage_dir_and_sqlite_fallback_live_on_the_data_volume(chart: helm.Chart) -> None:
    docs = _render(chart)

    deployment = _deployment(docs, "imaging")
    mount = {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}["data"]
    storage_dir = _config(docs, "imaging")["RADCDS_IMAGING_STORAGE_DIR"]
    # The service puts its SQLite fallback (no database configured) next to STORAGE_DIR.
    assert storage_dir.rsplit("/", 1)[0] == mount


def test_services_write_only_to_mounted_volumes(chart: helm.Chart) -> None:
    docs = _render(chart, WORKLIST)

    writable_settings = {
        "imaging": "STORAGE_DIR",
        "reporting": "DATA_DIR",
        "fusion": "DATA_DIR",
        "worklist": "DATA_DIR",
    }
    for service in SERVICE_PORTS:
        container = _container(_deployment(docs, service))
        mounts = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
        assert "/tmp" in mounts, service
        if service in writable_settings:
            path = _config(docs, service)[f"RADCDS_{service.upper()}_{writable_settings[service]}"]
            assert any(path == m or path.startswith(m + "/") for m in mounts), service


def _rendered_setting_names(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Component -> every env name its containers get, from its ConfigMaps and its env entries."""
    configs = _objects(docs, "ConfigMap")
    names: dict[str, set[str]] = {}
    for kind in ("Deployment", "Job"):
        for workload in _objects(docs, kind).values():
            # A service's migration Job (<svc>-migrations) runs with that service's settings.
            component = workload["metadata"]["labels"]["app.kubernetes.io/component"].removesuffix("-migrations")
            pod = workload["spec"]["template"]["spec"]
            found = names.setdefault(component, set())
            for container in pod["containers"] + pod.get("initContainers", []):
                found.update(entry["name"] for entry in container.get("env", []))
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        found.update(configs[source["configMapRef"]["name"]]["data"])
    return names


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        EVERYTHING_ON,
        {
            "database": {"urls": {"reporting": "postgresql://radcds:pw@db:5432/radcds_reporting"}},
            "reporting": {"persistence": {"enabled": True}},
        },
        {
            "triton": {"enabled": False, "externalUrl": "triton.models:8001"},
            "otel": {"endpoint": "http://c:4318/v1/traces"},
        },
        _merge(WORKLIST, {"environment": "development", "worklist": {"auth": {"existingSecret": ""}}}),
    ],
    ids=["defaults", "everything-on", "database-url", "external-triton", "worklist-development"],
)
def test_every_rendered_radcds_variable_is_a_setting_of_its_service(
    chart: helm.Chart, overrides: dict[str, Any]
) -> None:
    docs = _render(chart, overrides)

    names = _rendered_setting_names(docs)
    expected = set(SERVICE_SETTINGS) if "worklist" in overrides else set(SERVICE_SETTINGS) - {"worklist"}
    assert expected <= set(names)
    for component, found in names.items():
        radcds = {name for name in found if name.startswith("RADCDS_")}
        if component not in SERVICE_SETTINGS:  # triton, topics
            assert radcds == set(), component
            continue
        prefix = f"RADCDS_{component.upper()}_"
        assert {name for name in radcds if not name.startswith(prefix)} == set(), component
        unknown = {name.removeprefix(prefix) for name in radcds} - SERVICE_SETTINGS[component]
        assert unknown == set(), component
        config = _config(docs, component)
        assert all(key.startswith(prefix) for key in config), component


def test_common_settings_carry_values_the_services_accept(chart: helm.Chart) -> None:
    docs = _render(chart, EVERYTHING_ON)

    for service in SERVICE_PORTS:
        config = _config(docs, service)
        prefix = f"RADCDS_{service.upper()}_"
        assert config[prefix + "ENVIRONMENT"] in {"development", "test", "production"}
        assert config[prefix + "LOG_LEVEL"] in {"DEBUG", "INFO", "WARNING", "ERROR"}
        assert config[prefix + "KAFKA_REQUEST_TIMEOUT_MS"] == "30000"
        assert config[prefix + "KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert config[prefix + "KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert config[prefix + "KAFKA_SSL_CAFILE"] == "/etc/radcds/kafka/ca.crt"
        assert config[prefix + "OTLP_ENDPOINT"] == "http://otel-collector:4318/v1/traces"
        assert config[prefix + "HTTP_PORT"] == str(SERVICE_PORTS[service]["http"])


def test_config_change_changes_pod_checksum_so_pods_roll(chart: helm.Chart) -> None:
    before = _deployment(_render(chart), "imaging")
    after = _deployment(_render(chart, {"logLevel": "DEBUG"}), "imaging")

    annotation = "checksum/config"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][annotation]
        != after["spec"]["template"]["metadata"]["annotations"][annotation]
    )


def test_inference_triton_url_points_at_triton_grpc_service(chart: helm.Chart) -> None:
    config = _config(_render(chart), "inference")

    assert config["RADCDS_INFERENCE_TRITON_URL"] == f"{RELEASE}-triton:8001"


def test_triton_disabled_with_external_url_uses_it_and_renders_no_triton(
    chart: helm.Chart,
) -> None:
    docs = _render(chart, {"triton": {"enabled": False, "externalUrl": "triton.models:8001"}})

    assert f"{RELEASE}-triton" not in _objects(docs, "Deployment")
    assert f"{RELEASE}-triton" not in _objects(docs, "Service")
    assert _config(docs, "inference")["RADCDS_INFERENCE_TRITON_URL"] == "triton.models:8001"


def test_triton_disabled_without_external_url_fails_with_clear_message(chart: helm.Chart) -> None:
    message = _render_error(chart, {"triton": {"enabled": False}})

    assert "triton.externalUrl is required when triton.enabled=false" in message


def test_empty_kafka_bootstrap_servers_fails_with_clear_message(chart: helm.Chart) -> None:
    message = _render_error(chart, {"kafka": {"bootstrapServers": ""}})

    assert "kafka.bootstrapServers is required" in message


def test_no_sasl_mechanism_sets_no_sasl_variables(chart: helm.Chart) -> None:
    docs = _render(chart, {"kafka": {"sasl": {"existingSecret": "kafka-user"}}})

    for service in ("referral", "imaging", "inference", "reporting"):
        names = set(_config(docs, service)) | set(_env(_container(_deployment(docs, service))))
        assert not [name for name in names if "_KAFKA_SASL_" in name], service


def test_sasl_mechanism_without_secret_fails_with_clear_message(chart: helm.Chart) -> None:
    message = _render_error(chart, {"kafka": {"sasl": {"mechanism": "PLAIN"}}})

    assert "kafka.sasl.existingSecret is required" in message


def test_sasl_and_tls_expose_credentials_from_secret_and_mount_the_ca(chart: helm.Chart) -> None:
    docs = _render(chart, {"kafka": EVERYTHING_ON["kafka"]})

    config = _config(docs, "inference")
    assert config["RADCDS_INFERENCE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["RADCDS_INFERENCE_KAFKA_SSL_CAFILE"] == "/etc/radcds/kafka/ca.crt"
    deployment = _deployment(docs, "inference")
    env = _env(_container(deployment))
    assert env["RADCDS_INFERENCE_KAFKA_SASL_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-user",
        "key": "username",
    }
    assert env["RADCDS_INFERENCE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-user",
        "key": "password",
    }
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-ca"]["secret"]["secretName"] == "kafka-ca"


def test_database_secret_gives_imaging_reporting_and_fusion_each_its_own_url_key(chart: helm.Chart) -> None:
    docs = _render(chart, {"database": {"existingSecret": "radcds-db", "existingSecretKeys": {"reporting": "dsn"}}})

    for service, key in (("imaging", "imaging-url"), ("reporting", "dsn"), ("fusion", "fusion-url")):
        env = _env(_container(_deployment(docs, service)))
        ref = env[f"RADCDS_{service.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "radcds-db", "key": key}
    for service in ("referral", "inference"):
        env = _env(_container(_deployment(docs, service)))
        assert not [name for name in env if name.endswith("_DATABASE_URL")]
    assert not _objects(docs, "Secret")


def test_database_urls_without_existing_secret_create_chart_secret_for_the_services_named(chart: helm.Chart) -> None:
    urls = {"reporting": "postgresql://radcds:pw@db:5432/radcds_reporting", "fusion": "postgresql://f@db/radcds_fusion"}
    docs = _render(chart, {"database": {"urls": urls}})

    secret = _objects(docs, "Secret")[f"{RELEASE}-database"]
    assert secret["stringData"] == {"reporting-url": urls["reporting"], "fusion-url": urls["fusion"]}
    env = _env(_container(_deployment(docs, "reporting")))
    assert env["RADCDS_REPORTING_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE}-database",
        "key": "reporting-url",
    }
    # imaging has no URL in the Secret: no reference to a missing key (the pod would not start)
    assert "RADCDS_IMAGING_DATABASE_URL" not in _env(_container(_deployment(docs, "imaging")))


@pytest.mark.parametrize(
    "database",
    [{"url": "postgresql://radcds:pw@db:5432/radcds"}, {"existingSecret": "db", "existingSecretKey": "url"}],
    ids=["url", "existingSecretKey"],
)
def test_one_shared_database_url_of_earlier_releases_is_refused_by_the_values_schema(
    chart: helm.Chart, database: dict[str, Any]
) -> None:
    message = _render_error(chart, {"database": database})

    assert f"at '/database': additional properties '{next(iter(database.keys() - {'existingSecret'}))}'" in message


def test_no_database_configured_sets_no_database_url(chart: helm.Chart) -> None:
    docs = _render(chart)

    env = _env(_container(_deployment(docs, "imaging")))
    assert "RADCDS_IMAGING_DATABASE_URL" not in env


def test_otel_endpoint_sets_otlp_endpoint_for_every_service(chart: helm.Chart) -> None:
    endpoint = "http://otel-collector:4318/v1/traces"
    docs = _render(chart, {"otel": {"endpoint": endpoint}})

    for service in ("referral", "imaging", "inference", "reporting"):
        config = _config(docs, service)
        assert config[f"RADCDS_{service.upper()}_OTLP_ENDPOINT"] == endpoint
        assert "OTEL_SERVICE_NAME" not in config


def test_extra_env_and_secret_refs_are_added_to_the_container(chart: helm.Chart) -> None:
    docs = _render(chart, {"reporting": EVERYTHING_ON["reporting"]})

    container = _container(_deployment(docs, "reporting"))
    assert _env(container)["TZ"] == {"name": "TZ", "value": "UTC"}
    assert {"secretRef": {"name": "reporting-extra"}} in container["envFrom"]


def test_settings_map_becomes_prefixed_env_in_configmap(chart: helm.Chart) -> None:
    docs = _render(chart, {"referral": {"settings": {"CONSUMER_MAX_RETRIES": 5}}})

    assert _config(docs, "referral")["RADCDS_REFERRAL_CONSUMER_MAX_RETRIES"] == "5"


def _resources_of_all_containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resources = []
    for deployment in _objects(docs, "Deployment").values():
        spec = deployment["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            resources.append(container.get("resources", {}))
    return resources


def test_triton_requests_no_gpu_when_gpu_disabled(chart: helm.Chart) -> None:
    docs = _render(chart)

    for resources in _resources_of_all_containers(docs):
        for section in resources.values():
            assert "nvidia.com/gpu" not in section


def test_triton_gpu_enabled_requests_gpus_with_node_placement(chart: helm.Chart) -> None:
    docs = _render(chart, {"triton": EVERYTHING_ON["triton"] | {"gpu": {"enabled": True, "count": 2}}})

    deployment = _deployment(docs, "triton")
    pod = deployment["spec"]["template"]["spec"]
    assert _container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == EVERYTHING_ON["triton"]["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    gpu_users = [
        name
        for name, d in _objects(docs, "Deployment").items()
        if "nvidia.com/gpu" in _container(d).get("resources", {}).get("limits", {})
    ]
    assert gpu_users == [f"{RELEASE}-triton"]


def test_triton_runs_tritonserver_on_models_copied_by_init_container(chart: helm.Chart) -> None:
    deployment = _deployment(_render(chart), "triton")

    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert container["args"][:2] == ["tritonserver", "--model-repository=/models"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example.org/radcds/radcds-models:0.1.0"
    assert {"name": "MODELS_SOURCE", "value": "/models"} in init["env"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["models"]
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["models"] == "/models"
    assert init["volumeMounts"][0]["name"] == "models"


def test_triton_version_and_model_source_are_configurable(chart: helm.Chart) -> None:
    docs = _render(
        chart,
        {
            "triton": {
                "image": {"tag": "25.01"},
                "modelRepository": {
                    "image": {"repository": "ghcr.io/acme/models", "tag": "7"},
                    "path": "/opt/models",
                },
            }
        },
    )

    pod = _deployment(docs, "triton")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "nvcr.io/nvidia/tritonserver:25.01-py3"
    assert pod["initContainers"][0]["image"] == "ghcr.io/acme/models:7"
    assert {"name": "MODELS_SOURCE", "value": "/opt/models"} in pod["initContainers"][0]["env"]


def test_triton_model_repository_from_existing_claim_mounts_it_read_only(
    chart: helm.Chart,
) -> None:
    docs = _render(chart, {"triton": {"modelRepository": {"source": "pvc", "existingClaim": "models"}}})

    pod = _deployment(docs, "triton")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


def test_triton_model_claim_source_without_claim_fails_with_clear_message(
    chart: helm.Chart,
) -> None:
    message = _render_error(chart, {"triton": {"modelRepository": {"source": "pvc"}}})

    assert "triton.modelRepository.existingClaim is required" in message


def test_imaging_persistence_creates_claim_with_storage_class_and_size(chart: helm.Chart) -> None:
    docs = _render(chart, {"imaging": {"persistence": {"storageClass": "fast", "size": "1Ti"}}})

    claim = _objects(docs, "PersistentVolumeClaim")[f"{RELEASE}-imaging"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Ti"
    deployment = _deployment(docs, "imaging")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": f"{RELEASE}-imaging"}
    mounts = {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}
    assert mounts["data"] == "/var/lib/radcds/imaging"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_imaging_persistence_disabled_uses_empty_dir_and_no_claim(chart: helm.Chart) -> None:
    docs = _render(chart, {"imaging": {"persistence": {"enabled": False}}})

    assert not _objects(docs, "PersistentVolumeClaim")
    deployment = _deployment(docs, "imaging")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert "strategy" not in deployment["spec"]


def test_imaging_existing_claim_is_mounted_and_no_claim_is_created(chart: helm.Chart) -> None:
    docs = _render(chart, {"imaging": {"persistence": {"existingClaim": "pacs-store"}}})

    assert not _objects(docs, "PersistentVolumeClaim")
    volumes = _deployment(docs, "imaging")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "pacs-store"}} in volumes


def _assert_locked_down(name: str, pod: dict[str, Any]) -> None:
    """Non-root, no service-account token, read-only root, no privilege escalation, no capabilities."""
    assert pod["securityContext"]["runAsNonRoot"] is True, name
    assert pod["automountServiceAccountToken"] is False, name
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name


def test_pods_run_as_non_root_with_read_only_root_and_writable_tmp(chart: helm.Chart) -> None:
    docs = _render(chart)

    for name, deployment in _objects(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        _assert_locked_down(name, pod)
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["tmp"], name
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["tmp"] == "/tmp", name


def test_pods_carry_prometheus_scrape_annotations_for_metrics(chart: helm.Chart) -> None:
    docs = _render(chart)

    expected_ports = {f"{RELEASE}-{s}": str(p["http"]) for s, p in SERVICE_PORTS.items()}
    expected_ports[f"{RELEASE}-triton"] = "8002"
    for name, deployment in _objects(docs, "Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == expected_ports[name]


def test_disruption_budgets_autoscalers_and_network_policies_are_off_by_default(
    chart: helm.Chart,
) -> None:
    docs = _render(chart)

    assert not _objects(docs, "PodDisruptionBudget")
    assert not _objects(docs, "HorizontalPodAutoscaler")
    assert not _objects(docs, "NetworkPolicy")
    assert not _objects(docs, "Job")


def test_enabled_pdb_and_hpa_render_for_that_service_and_drop_fixed_replicas(
    chart: helm.Chart,
) -> None:
    docs = _render(chart, {"imaging": EVERYTHING_ON["imaging"]})

    pdb = _objects(docs, "PodDisruptionBudget")
    hpa = _objects(docs, "HorizontalPodAutoscaler")
    assert set(pdb) == set(hpa) == {f"{RELEASE}-imaging"}
    assert pdb[f"{RELEASE}-imaging"]["spec"]["minAvailable"] == 1
    selector = _deployment(docs, "imaging")["spec"]["selector"]["matchLabels"]
    assert pdb[f"{RELEASE}-imaging"]["spec"]["selector"]["matchLabels"] == selector
    target = hpa[f"{RELEASE}-imaging"]["spec"]
    assert target["scaleTargetRef"]["name"] == f"{RELEASE}-imaging"
    assert target["maxReplicas"] == 3
    assert "replicas" not in _deployment(docs, "imaging")["spec"]
    assert _deployment(docs, "reporting")["spec"]["replicas"] == 1


def test_network_policy_admits_only_component_ports(chart: helm.Chart) -> None:
    docs = _render(chart, {"networkPolicy": EVERYTHING_ON["networkPolicy"]})

    policies = _objects(docs, "NetworkPolicy")
    assert set(policies) == set(_objects(docs, "Deployment"))
    (rule,) = policies[f"{RELEASE}-reporting"]["spec"]["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [2575, 8085]
    assert EVERYTHING_ON["networkPolicy"]["extraIngressFrom"][0] in rule["from"]
    (triton_rule,) = policies[f"{RELEASE}-triton"]["spec"]["ingress"]
    assert sorted(p["port"] for p in triton_rule["ports"]) == [8000, 8001, 8002]


def test_topics_job_creates_every_topic_with_its_partitions_after_install(
    chart: helm.Chart,
) -> None:
    docs = _render(chart, {"topics": {"create": True, "replicationFactor": 2}})

    job = _objects(docs, "Job")[f"{RELEASE}-topics"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    container = _container(job)
    script = container["args"][0]
    for topic, partitions in TOPICS.items():
        command = f"--topic '{topic}' --partitions {partitions} --replication-factor 2"
        assert command + " --config 'message.timestamp.type=LogAppendTime'" in script, topic
        assert f"configure --entity-name '{topic}' --add-config 'message.timestamp.type=LogAppendTime'" in script
    assert _env(container)["KAFKA_BOOTSTRAP_SERVERS"]["value"] == BOOTSTRAP


def test_topics_job_lets_an_items_own_config_override_the_common_one(chart: helm.Chart) -> None:
    items = [{"name": "radcds.imaging.studies.v1", "partitions": 6,
              "config": {"retention.ms": 604800000, "message.timestamp.type": "CreateTime"}}]  # fmt: skip
    docs = _render(chart, {"topics": {"create": True, "items": items}})

    script = _container(_objects(docs, "Job")[f"{RELEASE}-topics"])["args"][0]
    assert (
        "--config 'message.timestamp.type=CreateTime' --config 'retention.ms=604800000'" in script
        and "--add-config 'message.timestamp.type=CreateTime,retention.ms=604800000'" in script
        and "LogAppendTime" not in script
    )


def test_chart_topic_configs_are_the_ones_the_local_stack_gives_its_topics() -> None:
    import yaml

    from radcds_devstack.kafka_admin import radcds_topics

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {dict(t.config)["message.timestamp.type"] for t in radcds_topics()} == {"LogAppendTime"}
    assert all(dict(t.config) == values["topics"]["config"] for t in radcds_topics())


def test_notes_point_at_the_fixed_dicomweb_and_fhir_paths(chart: helm.Chart) -> None:
    notes = _render_raw(chart)[f"{RELEASE}/templates/NOTES.txt"]

    assert "http://127.0.0.1:8082/dicom-web/studies" in notes
    assert "http://127.0.0.1:8085/fhir/metadata" in notes
    assert "set reporting.fhirBaseUrl" in notes
    assert "/var/lib/radcds/imaging/imaging.db" in notes
    assert "/var/lib/radcds/reporting/reporting.db (emptyDir" in notes
    configured = _render_raw(
        chart,
        {"reporting": {"fhirBaseUrl": "https://radcds.example.org/fhir"}, "database": {"existingSecret": "db"}},
    )[f"{RELEASE}/templates/NOTES.txt"]
    assert "set reporting.fhirBaseUrl" not in configured
    assert "WARNING: no database" not in configured


def test_notes_list_the_topics_when_the_chart_does_not_create_them(chart: helm.Chart) -> None:
    notes = _render_raw(chart)[f"{RELEASE}/templates/NOTES.txt"]

    for topic, partitions in TOPICS.items():
        assert f"{topic} ({partitions} partitions)" in notes


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"imaging": {"replicaCount": "two"}}, "/imaging/replicaCount"),
        ({"imaging": {"ports": {"http": 70000}}}, "/imaging/ports/http"),
        ({"kafka": {"securityProtocol": "TLS"}}, "/kafka/securityProtocol"),
        ({"kafka": {"bootstrapServers": "no-port"}}, "/kafka/bootstrapServers"),
        ({"kafka": {"bootstrapServers": "a:9092, b:9092"}}, "/kafka/bootstrapServers"),
        ({"triton": {"externalUrl": "grpc://triton"}}, "/triton/externalUrl"),
        ({"triton": {"gpu": {"enabled": "yes"}}}, "/triton/gpu/enabled"),
        ({"referral": {"replicas": 2}}, "/referral"),
        ({"logLevel": "TRACE"}, "/logLevel"),
        ({"referral": {"publicBaseUrl": "http://x"}}, "/referral"),
        ({"inference": {"persistence": {"enabled": False, "mountPath": "/x"}}}, "/inference"),
        ({"imaging": {"fhirBaseUrl": "http://x"}}, "/imaging"),
        ({"imaging": {"publicBaseUrl": "imaging:8082"}}, "/imaging/publicBaseUrl"),
        ({"reporting": {"fhirBaseUrl": "/fhir"}}, "/reporting/fhirBaseUrl"),
        ({"reporting": {"persistence": {"mountPath": "relative"}}}, "/reporting/persistence/mountPath"),
        ({"worklist": {"enabled": True}}, "/worklist/auth/oidcIssuer"),
        ({"worklist": {"auth": {"oidcIssuer": "sso.example.org"}}}, "/worklist/auth/oidcIssuer"),
        (_merge(WORKLIST, {"worklist": {"settings": {"AUTH_MODE": "development"}}}), "/worklist/settings"),
        (_merge(WORKLIST, {"worklist": {"settings": {"SESSION_SECRET": "plain"}}}), "/worklist/settings"),
        (_merge(WORKLIST, {"worklist": {"auth": {"scopes": "profile"}}}), "/worklist/auth/scopes"),
        ({"worklist": {"publicBaseUrl": "worklist.example.org"}}, "/worklist/publicBaseUrl"),
        ({"database": {"existingSecretKeys": {"worklist": ""}}}, "/database/existingSecretKeys/worklist"),
    ],
)
def test_values_schema_rejects_bad_value_naming_its_path(
    chart: helm.Chart, overrides: dict[str, Any], path: str
) -> None:
    values = _merge(REQUIRED, overrides)

    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(values)
    assert path in str(caught.value)
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_values_schema_accepts_defaults_and_every_option_switched_on(chart: helm.Chart) -> None:
    chart.validate_schema(REQUIRED)
    chart.validate_schema(_merge(REQUIRED, EVERYTHING_ON))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        EVERYTHING_ON,
        {"triton": {"enabled": False, "externalUrl": "triton.models:8001"}},
        {
            "imaging": {"persistence": {"enabled": False}},
            "triton": {"modelRepository": {"source": "pvc", "existingClaim": "models"}},
        },
        _merge(WORKLIST, {"networkPolicy": {"enabled": True}, "database": {"existingSecret": "radcds-db"}}),
    ],
    ids=["defaults", "everything-on", "external-triton", "no-claims", "worklist-network-policy"],
)
def test_rendered_manifests_validate_against_kubernetes_1_32_strict(
    chart: helm.Chart, overrides: dict[str, Any]
) -> None:
    docs = _render(chart, overrides)

    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_everything_on_lints_clean_in_strict_mode() -> None:
    report = helm.lint(CHART, _merge(REQUIRED, EVERYTHING_ON), strict=True, kube_version=f"v{KUBE_VERSION}")

    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_imaging_s3_storage_settings_and_credentials_secret_reach_the_imaging_container(chart: helm.Chart) -> None:
    docs = _render(
        chart,
        {
            "imaging": {
                "settings": {
                    "STORAGE_BACKEND": "s3",
                    "S3_BUCKET": "radcds-dicom",
                    "S3_ENDPOINT_URL": "http://minio:9000",
                },
                "envFromSecrets": ["radcds-imaging-s3"],
            }
        },
    )
    config = _config(docs, "imaging")
    assert config["RADCDS_IMAGING_STORAGE_BACKEND"] == "s3"
    assert config["RADCDS_IMAGING_S3_BUCKET"] == "radcds-dicom"
    assert config["RADCDS_IMAGING_S3_ENDPOINT_URL"] == "http://minio:9000"
    env_from = _container(_deployment(docs, "imaging")).get("envFrom", [])
    assert {"secretRef": {"name": "radcds-imaging-s3"}} in env_from


def test_chart_topics_are_exactly_the_topics_the_services_use() -> None:
    from radcds_devstack.kafka_admin import radcds_topics

    assert {t.name: t.partitions for t in radcds_topics()} == TOPICS


def test_reporting_mllp_destinations_and_options_become_env_and_a_mounted_json_file(chart: helm.Chart) -> None:
    options = {
        "defaults": {"sending_facility": "HOSP"},
        "destinations": {"mirth.hospital:6661": {"text_layout": "formatted-text"}},
    }
    docs = _render(
        chart, {"reporting": {"mllp": {"destinations": ["mirth.hospital:6661", "rhapsody:7000"], "options": options}}}
    )
    config = _config(docs, "reporting")
    assert config["RADCDS_REPORTING_MLLP_DESTINATIONS"] == "mirth.hospital:6661,rhapsody:7000"
    assert config["RADCDS_REPORTING_MLLP_OPTIONS_FILE"] == "/etc/radcds/hl7/destinations.json"
    hl7 = _objects(docs, "ConfigMap")[f"{RELEASE}-reporting-hl7"]
    import json

    assert json.loads(hl7["data"]["destinations.json"]) == options
    from pathlib import Path

    from radcds_reporting.adapters.hl7v2.config import load_destinations

    rendered = Path(__file__).parent / ".rendered-destinations.json"
    try:
        rendered.write_text(hl7["data"]["destinations.json"])
        loaded = load_destinations(config["RADCDS_REPORTING_MLLP_DESTINATIONS"], rendered)
    finally:
        rendered.unlink(missing_ok=True)
    assert [d.options.text_layout.value for d in loaded] == ["formatted-text", "obx-per-line"]
    deployment = _deployment(docs, "reporting")
    mounts = {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}
    assert mounts["hl7-destinations"] == "/etc/radcds/hl7"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hl7-destinations"]["configMap"]["name"] == f"{RELEASE}-reporting-hl7"


def test_reporting_without_mllp_destinations_renders_no_hl7_configmap(chart: helm.Chart) -> None:
    docs = _render(chart)
    assert f"{RELEASE}-reporting-hl7" not in _objects(docs, "ConfigMap")
    assert "RADCDS_REPORTING_MLLP_DESTINATIONS" not in _config(docs, "reporting")


def test_reporting_mllp_destination_without_a_port_is_refused(chart: helm.Chart) -> None:
    assert "destinations" in _render_error(chart, {"reporting": {"mllp": {"destinations": ["mirth.hospital"]}}})


# ---- the worklist (issue #13) ----------------------------------------------------------------


def _worklist_env(docs: list[dict[str, Any]], secrets: dict[str, str]) -> dict[str, str]:
    """The worklist container's environment as the kubelet would build it: its ConfigMap, then its env
    entries, a secretKeyRef resolved through ``secrets`` (``"<secret>/<key>" -> value``)."""
    env = dict(_config(docs, "worklist"))
    for entry in _container(_deployment(docs, "worklist")).get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
    return env


def test_worklist_is_off_by_default_and_renders_nothing(chart: helm.Chart) -> None:
    docs = _render(chart)

    assert not [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-worklist"]
    assert "worklist:" not in _render_raw(chart)[f"{RELEASE}/templates/NOTES.txt"]


def test_worklist_enabled_runs_radcds_worklist_on_8086_with_health_probes(chart: helm.Chart) -> None:
    docs = _render(chart, WORKLIST)

    container = _container(_deployment(docs, "worklist"))
    assert container["image"] == "registry.example.org/radcds/radcds-worklist:0.1.0"
    assert container["command"] == ["radcds-worklist"]
    assert container["ports"] == [{"name": "http", "containerPort": 8086, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = _deployment(docs, "worklist")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8086"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert _objects(docs, "Service")[f"{RELEASE}-worklist"]["spec"]["ports"][0]["port"] == 8086


def test_worklist_reads_the_chart_reporting_fhir_and_imaging_dicomweb_services(chart: helm.Chart) -> None:
    values = _merge(REQUIRED, _merge(WORKLIST, {"reporting": {"ports": {"http": 9085}}}))
    manifests = chart.render(values, name="prod", namespace=NAMESPACE)
    docs = [d for path, text in manifests.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]

    config = _objects(docs, "ConfigMap")["prod-radcds-worklist"]["data"]
    assert config["RADCDS_WORKLIST_REPORTING_FHIR_URL"] == "http://prod-radcds-reporting:9085/fhir"
    assert config["RADCDS_WORKLIST_IMAGING_DICOMWEB_URL"] == "http://prod-radcds-imaging:8082/dicom-web"
    assert config["RADCDS_WORKLIST_DATA_DIR"] == "/var/lib/radcds/worklist"
    assert config["RADCDS_WORKLIST_MODEL_MANIFEST"] == "/app/models/manifest.json"
    external = {"reporting": {"enabled": False}, "worklist": {"settings": {"REPORTING_FHIR_URL": "https://ris/fhir"}}}
    assert _config(_render(chart, _merge(WORKLIST, external)), "worklist")["RADCDS_WORKLIST_REPORTING_FHIR_URL"] == (
        "https://ris/fhir"
    )


@pytest.mark.parametrize(
    ("peer", "setting"), [("reporting", "REPORTING_FHIR_URL"), ("imaging", "IMAGING_DICOMWEB_URL")]
)
def test_worklist_without_the_chart_peer_or_its_url_setting_fails_with_clear_message(
    chart: helm.Chart, peer: str, setting: str
) -> None:
    message = _render_error(chart, _merge(WORKLIST, {peer: {"enabled": False}}))

    assert f"worklist.settings.{setting} is required when {peer}.enabled=false" in message


def test_worklist_signs_in_with_oidc_always_and_secure_cookies_behind_an_https_url(chart: helm.Chart) -> None:
    docs = _render(chart, _merge(WORKLIST, {"worklist": {"publicBaseUrl": "https://worklist.example.org/"}}))

    config = _config(docs, "worklist")
    assert config["RADCDS_WORKLIST_AUTH_MODE"] == "oidc"
    assert config["RADCDS_WORKLIST_OIDC_ISSUER"] == ISSUER
    assert config["RADCDS_WORKLIST_OIDC_CLIENT_ID"] == "radcds-worklist"
    assert config["RADCDS_WORKLIST_OIDC_SCOPES"] == "openid profile fhirUser"
    assert config["RADCDS_WORKLIST_OIDC_ROLES_CLAIM"] == "roles"
    assert config["RADCDS_WORKLIST_PUBLIC_BASE_URL"] == "https://worklist.example.org"
    assert config["RADCDS_WORKLIST_SECURE_COOKIES"] == "true"
    development = _config(_render(chart, _merge(WORKLIST, {"environment": "development"})), "worklist")
    assert development["RADCDS_WORKLIST_AUTH_MODE"] == "oidc"
    assert "RADCDS_WORKLIST_PUBLIC_BASE_URL" not in development
    assert "RADCDS_WORKLIST_SECURE_COOKIES" not in development


def test_worklist_secrets_come_from_secret_key_refs_and_never_from_the_configmap(chart: helm.Chart) -> None:
    docs = _render(chart, _merge(WORKLIST, {"database": {"existingSecret": "radcds-db"}}))

    refs = {
        name: entry["valueFrom"]["secretKeyRef"]
        for name, entry in _env(_container(_deployment(docs, "worklist"))).items()
        if "valueFrom" in entry
    }
    assert refs == {
        "RADCDS_WORKLIST_SESSION_SECRET": {"name": "radcds-worklist-auth", "key": "session-secret"},
        "RADCDS_WORKLIST_OIDC_CLIENT_SECRET": {"name": "radcds-worklist-auth", "key": "client-secret"},
        "RADCDS_WORKLIST_DATABASE_URL": {"name": "radcds-db", "key": "worklist-url"},
    }
    assert not [name for name in _config(docs, "worklist") if "SECRET" in name or "DATABASE_URL" in name]
    public = _render(chart, _merge(WORKLIST, {"worklist": {"auth": {"clientSecretKey": ""}}}))
    public_env = _env(_container(_deployment(public, "worklist")))
    assert "RADCDS_WORKLIST_OIDC_CLIENT_SECRET" not in public_env
    assert "RADCDS_WORKLIST_SESSION_SECRET" in public_env


def test_worklist_database_url_uses_its_own_key_of_the_secret_or_of_the_chart_secret(chart: helm.Chart) -> None:
    renamed = _render(
        chart,
        _merge(WORKLIST, {"database": {"existingSecret": "db", "existingSecretKeys": {"worklist": "wl-dsn"}}}),
    )
    created = _render(chart, _merge(WORKLIST, {"database": {"urls": {"worklist": "postgresql://w:pw@db/wl"}}}))

    ref = _env(_container(_deployment(renamed, "worklist")))["RADCDS_WORKLIST_DATABASE_URL"]["valueFrom"]
    assert ref["secretKeyRef"] == {"name": "db", "key": "wl-dsn"}
    secret = _objects(created, "Secret")[f"{RELEASE}-database"]
    assert secret["stringData"] == {"worklist-url": "postgresql://w:pw@db/wl"}
    ref = _env(_container(_deployment(created, "worklist")))["RADCDS_WORKLIST_DATABASE_URL"]["valueFrom"]
    assert ref["secretKeyRef"] == {"name": f"{RELEASE}-database", "key": "worklist-url"}
    assert "RADCDS_IMAGING_DATABASE_URL" not in _env(_container(_deployment(created, "imaging")))


def test_worklist_rendered_environment_passes_the_worklist_production_settings(
    chart: helm.Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _render(chart, _merge(WORKLIST, {"database": {"existingSecret": "radcds-db"}}))
    secrets = {
        "radcds-worklist-auth/session-secret": "a-long-random-session-secret-from-the-secret",
        "radcds-worklist-auth/client-secret": "client-secret-from-the-secret",
        "radcds-db/worklist-url": "postgresql+psycopg://worklist:pw@postgres:5432/radcds_worklist",
    }

    for name, value in _worklist_env(docs, secrets).items():
        monkeypatch.setenv(name, value)
    settings = WorklistSettings()

    assert settings.environment == "production"
    assert settings.auth_mode == "oidc"
    assert settings.oidc_issuer == ISSUER
    assert settings.session_secret.get_secret_value() == secrets["radcds-worklist-auth/session-secret"]
    assert settings.oidc_client_secret is not None
    assert settings.resolved_database_url() == secrets["radcds-db/worklist-url"]
    assert settings.reporting_fhir_url == f"http://{RELEASE}-reporting:8085/fhir"
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == 8086


def test_worklist_in_production_without_an_auth_secret_fails_with_clear_message(chart: helm.Chart) -> None:
    message = _render_error(chart, _merge(WORKLIST, {"worklist": {"auth": {"existingSecret": ""}}}))

    assert "worklist.auth.existingSecret is required when environment=production" in message
    development = _render(
        chart, _merge(WORKLIST, {"environment": "development", "worklist": {"auth": {"existingSecret": ""}}})
    )
    env = _env(_container(_deployment(development, "worklist")))
    assert "RADCDS_WORKLIST_SESSION_SECRET" not in env


def test_worklist_enabled_without_issuer_is_refused_by_the_schema_and_disabled_needs_none(
    chart: helm.Chart,
) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        _render_raw(chart, {"worklist": {"enabled": True, "auth": {"existingSecret": "radcds-worklist-auth"}}})

    assert "/worklist/auth/oidcIssuer" in str(caught.value)
    chart.validate_schema(_merge(REQUIRED, {"worklist": {"enabled": False}}))


def _worklist_policy(chart: helm.Chart, overrides: dict[str, Any]) -> dict[str, Any]:
    values = _merge(_merge(WORKLIST, {"networkPolicy": {"enabled": True}}), overrides)
    policy: dict[str, Any] = _objects(_render(chart, values), "NetworkPolicy")[f"{RELEASE}-worklist"]
    return policy


def test_worklist_network_policy_admits_users_through_the_ingress_controller_on_8086(chart: helm.Chart) -> None:
    controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    default = _worklist_policy(chart, {})
    narrowed = _worklist_policy(
        chart, {"worklist": {"networkPolicy": {"ingressFrom": [controller]}}, "networkPolicy": {"extraIngressFrom": []}}
    )

    (rule,) = default["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8086, "protocol": "TCP"}]
    assert {"namespaceSelector": {}} in rule["from"]
    (rule,) = narrowed["spec"]["ingress"]
    assert controller in rule["from"]
    assert {"namespaceSelector": {}} not in rule["from"]


def test_worklist_network_policy_lets_out_only_dns_reporting_imaging_kafka_database_and_issuer(
    chart: helm.Chart,
) -> None:
    policy = _worklist_policy(
        chart,
        {
            "kafka": {"bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092,kafka-2.kafka:9094"},
            "database": {"existingSecret": "radcds-db"},
            "worklist": {"auth": {"oidcIssuer": "https://sso.example.org:8443/realms/radiology"}},
        },
    )

    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    rules = policy["spec"]["egress"]
    by_peer = {
        rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: rule["ports"]
        for rule in rules
        if "to" in rule
    }
    assert by_peer == {"reporting": [{"port": 8085, "protocol": "TCP"}], "imaging": [{"port": 8082, "protocol": "TCP"}]}
    anywhere = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in rules if "to" not in rule]
    assert anywhere == [
        [(53, "TCP"), (53, "UDP")],
        [(9092, "TCP"), (9094, "TCP")],
        [(5432, "TCP")],
        [(8443, "TCP")],
    ]


def test_worklist_egress_peers_are_configurable_and_egress_can_stay_open(chart: helm.Chart) -> None:
    kafka_net = {"ipBlock": {"cidr": "10.20.0.0/16"}}
    issuer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keycloak"}}}
    policy = _worklist_policy(
        chart,
        {
            "otel": {"endpoint": "http://otel-collector:4318/v1/traces"},
            "worklist": {"networkPolicy": {"egress": {"kafkaTo": [kafka_net], "oidcTo": [issuer]}}},
        },
    )
    open_egress = _worklist_policy(chart, {"worklist": {"networkPolicy": {"egress": {"enabled": False}}}})

    rules = policy["spec"]["egress"]
    assert {"to": [kafka_net], "ports": [{"port": 9092, "protocol": "TCP"}]} in rules
    assert {"to": [issuer], "ports": [{"port": 443, "protocol": "TCP"}]} in rules
    assert {"ports": [{"port": 4318, "protocol": "TCP"}]} in rules
    assert open_egress["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in open_egress["spec"]


def test_reporting_and_imaging_network_policies_admit_the_worklist_pods(chart: helm.Chart) -> None:
    docs = _render(chart, _merge(WORKLIST, {"networkPolicy": {"enabled": True}}))

    policies = _objects(docs, "NetworkPolicy")
    worklist_labels = _deployment(docs, "worklist")["spec"]["template"]["metadata"]["labels"]
    for peer in ("reporting", "imaging"):
        assert "Egress" not in policies[f"{RELEASE}-{peer}"]["spec"]["policyTypes"]
        (rule,) = policies[f"{RELEASE}-{peer}"]["spec"]["ingress"]
        selectors = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
        assert any(selector.items() <= worklist_labels.items() for selector in selectors), peer


def test_notes_tell_where_the_worklist_is_opened_and_which_redirect_uri_to_register(chart: helm.Chart) -> None:
    forwarded = _render_raw(chart, WORKLIST)[f"{RELEASE}/templates/NOTES.txt"]
    public = _render_raw(chart, _merge(WORKLIST, {"worklist": {"publicBaseUrl": "https://worklist.example.org"}}))[
        f"{RELEASE}/templates/NOTES.txt"
    ]

    assert f"port-forward svc/{RELEASE}-worklist 8086:8086" in forwarded
    assert "http://127.0.0.1:8086/auth/callback" in forwarded
    assert "/var/lib/radcds/worklist/worklist.db (emptyDir" in forwarded
    assert "https://worklist.example.org/auth/callback" in public
    assert "Set worklist.publicBaseUrl" not in public


# ---- images (issue #14) ------------------------------------------------------------------------------------------


def _images(docs: list[dict[str, Any]]) -> set[str]:
    """Every image of every container, init container, Job and hook."""
    images: set[str] = set()
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            images.update(c["image"] for c in pod["containers"] + pod.get("initContainers", []))
    return images


def test_every_image_with_the_default_repository_is_a_radcds_image_or_a_known_third_party_one(
    chart: helm.Chart,
) -> None:
    everything = _merge(EVERYTHING_ON, {"database": {"existingSecret": "radcds-db"}, "referral": {"useDatabase": True}})
    docs = _render(chart, everything)

    images = _images(docs)
    radcds = {image for image in images if image.startswith("registry.example.org/radcds/")}
    assert {image.removeprefix("registry.example.org/radcds/").split(":")[0] for image in radcds} == RADCDS_IMAGES
    assert {image.rsplit(":", 1)[0] for image in images - radcds} == THIRD_PARTY_IMAGES
    assert all(image.rsplit(":", 1)[1] not in {"", "latest"} for image in images)
    assert {job["spec"]["template"]["spec"]["containers"][0]["image"] for job in _objects(docs, "Job").values()} >= {
        f"registry.example.org/radcds/radcds-{svc}:0.1.0"
        for svc in ("referral", "imaging", "reporting", "fusion", "worklist")
    }


# ---- migrations, KEDA, ingress and egress (issue #14) --------------------------------------------------------------


def test_migration_jobs_run_only_for_services_with_a_database_url_and_switch_off_migrate_on_start(
    chart: helm.Chart,
) -> None:
    docs = _render(chart, {"database": {"urls": {"reporting": "postgresql://r@db/radcds_reporting"}}})

    (job,) = _objects(docs, "Job").values()
    assert job["metadata"]["name"] == f"{RELEASE}-reporting-migrations"
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    container = _container(job)
    assert container["command"] == ["radcds-reporting", "migrate"]
    assert container["image"] == _container(_deployment(docs, "reporting"))["image"]
    assert _env(container)["RADCDS_REPORTING_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE}-database",
        "key": "reporting-url",
    }
    assert _config(docs, "reporting")["RADCDS_REPORTING_MIGRATE_ON_START"] == "false"
    assert "RADCDS_IMAGING_MIGRATE_ON_START" not in _config(docs, "imaging")
    # The Job's pods must not look like the service's: its Service and PDB select by component.
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "reporting-migrations"
    secret = _objects(docs, "Secret")[f"{RELEASE}-database"]["metadata"]["annotations"]
    assert secret["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_migrations_disabled_render_no_jobs_and_the_services_migrate_on_start(chart: helm.Chart) -> None:
    docs = _render(chart, {"database": {"existingSecret": "radcds-db"}, "migrations": {"enabled": False}})

    assert not _objects(docs, "Job")
    assert not [key for key in _config(docs, "imaging") if key.endswith("MIGRATE_ON_START")]


#: The worklist's setting naming an external imaging (the chart's imaging disabled).
WORKLIST_URLS = {"IMAGING_DICOMWEB_URL": "https://pacs.example.org/dicom-web"}


def test_chart_consumed_topics_are_the_services_consumed_topics(chart: helm.Chart) -> None:
    from radcds_fusion.app import CONSUMED_TOPICS as FUSION
    from radcds_fusion.app import SR_TOPICS
    from radcds_inference.app import CONSUMED_TOPICS as INFERENCE
    from radcds_reporting.app import CONSUMED_TOPICS as REPORTING
    from radcds_worklist.app import CONSUMED_TOPICS as WORKLIST_TOPICS

    values = _merge(WORKLIST, {"keda": {"enabled": True, "triton": {"enabled": False}}})
    scaled = _objects(_render(chart, values), "ScaledObject")

    def topics(service: str) -> set[str]:
        return {t["metadata"]["topic"] for t in scaled[f"{RELEASE}-{service}"]["spec"]["triggers"]}

    assert topics("inference") == set(INFERENCE)
    assert topics("reporting") == set(REPORTING)
    assert topics("fusion") == set(FUSION) | set(SR_TOPICS)
    assert topics("worklist") == set(WORKLIST_TOPICS)
    without_imaging = _merge(values, {"imaging": {"enabled": False}, "worklist": {"settings": WORKLIST_URLS}})
    fusion = _objects(_render(chart, without_imaging), "ScaledObject")[f"{RELEASE}-fusion"]
    assert {t["metadata"]["topic"] for t in fusion["spec"]["triggers"]} == set(FUSION)


def test_keda_triggers_use_the_consumer_group_setting_and_no_authentication_without_sasl_or_ca(
    chart: helm.Chart,
) -> None:
    docs = _render(
        chart,
        {"keda": {"enabled": True, "triton": {"enabled": False}}, "reporting": {"settings": {"CONSUMER_GROUP": "rep"}}},
    )

    triggers = _objects(docs, "ScaledObject")[f"{RELEASE}-reporting"]["spec"]["triggers"]
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {"rep"}
    assert {t["metadata"]["bootstrapServers"] for t in triggers} == {BOOTSTRAP}
    assert all("authenticationRef" not in t and "sasl" not in t["metadata"] for t in triggers)
    assert not _objects(docs, "TriggerAuthentication")
    assert f"{RELEASE}-referral" not in _objects(docs, "ScaledObject")
    assert "replicas" not in _deployment(docs, "reporting")["spec"]
    assert _deployment(docs, "referral")["spec"]["replicas"] == 1


def test_hpa_and_keda_on_the_same_deployment_fail_with_a_clear_message(chart: helm.Chart) -> None:
    message = _render_error(
        chart,
        {"keda": {"enabled": True, "triton": {"enabled": False}}, "inference": {"autoscaling": {"enabled": True}}},
    )

    assert "inference.autoscaling.enabled and keda.enabled both scale the inference Deployment" in message
    allowed = {"keda": {"enabled": True, "triton": {"enabled": False}, "consumers": {"inference": {"enabled": False}}}}
    docs = _render(chart, _merge(allowed, {"inference": {"autoscaling": {"enabled": True}}}))
    assert set(_objects(docs, "HorizontalPodAutoscaler")) == {f"{RELEASE}-inference"}
    assert f"{RELEASE}-inference" not in _objects(docs, "ScaledObject")


def test_keda_for_triton_without_a_prometheus_address_fails_with_a_clear_message(chart: helm.Chart) -> None:
    assert "keda.triton.serverAddress is required" in _render_error(chart, {"keda": {"enabled": True}})


def test_ingress_routes_follow_the_fhir_base_path_and_refuse_a_disabled_service(chart: helm.Chart) -> None:
    values = {
        "reporting": {"fhirBaseUrl": "https://radcds.example.org/r4/fhir"},
        "ingress": {"enabled": True, "hosts": [{"host": "radcds.example.org", "routes": ["fhir", "cdsHooks"]}]},
    }
    (ingress,) = _objects(_render(chart, values), "Ingress").values()

    paths = {p["path"]: p["backend"]["service"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {
        "/r4/fhir": {"name": f"{RELEASE}-reporting", "port": {"name": "http"}},
        "/cds-services": {"name": f"{RELEASE}-referral", "port": {"name": "http"}},
    }
    assert "tls" not in ingress["spec"]
    worklist_off = _merge(values, {"ingress": {"hosts": [{"host": "w.example.org", "routes": ["worklist"]}]}})
    assert "routes names worklist, but worklist.enabled=false" in _render_error(chart, worklist_off)
    assert "ingress.hosts is required" in _render_error(chart, {"ingress": {"enabled": True}})


def _egress(chart: helm.Chart, overrides: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    values = _merge({"networkPolicy": {"enabled": True, "egress": {"enabled": True}}}, overrides)
    policies = _objects(_render(chart, values), "NetworkPolicy")
    return {name.removeprefix(f"{RELEASE}-"): policy["spec"].get("egress", []) for name, policy in policies.items()}


def _ports(rules: list[dict[str, Any]]) -> set[int]:
    return {port["port"] for rule in rules for port in rule["ports"]}


def test_egress_of_every_component_admits_dns_and_only_the_flows_it_needs(chart: helm.Chart) -> None:
    egress = _egress(
        chart,
        {
            "database": {"existingSecret": "radcds-db"},
            "reporting": {"mllp": {"destinations": ["ris:6661"]}},
            "fusion": {"settings": {"EHR_FHIR_BASE_URL": "https://ehr.example.org:8443/fhir"}},
            "imaging": {"settings": {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": "http://minio:9000"}},
        },
    )

    assert set(egress) == {"referral", "imaging", "inference", "reporting", "fusion", "triton"}
    for name, rules in egress.items():
        assert rules[0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], name
        assert rules[0]["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}, name
    assert _ports(egress["triton"]) == {53}
    assert _ports(egress["inference"]) == {53, 9092, 8001, 8082}
    assert _ports(egress["imaging"]) == {53, 9092, 5432, 9000}
    assert _ports(egress["reporting"]) == {53, 9092, 5432, 6661}
    assert _ports(egress["fusion"]) == {53, 9092, 5432, 8082, 8443}
    assert _ports(egress["referral"]) == {53, 9092, 8084, 443}
    to_triton = next(rule for rule in egress["inference"] if rule["ports"][0]["port"] == 8001)
    assert to_triton["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "triton"


def test_egress_to_an_external_triton_and_the_otlp_collector_uses_their_ports(chart: helm.Chart) -> None:
    egress = _egress(
        chart,
        {
            "triton": {"enabled": False, "externalUrl": "triton.models:9001"},
            "otel": {"endpoint": "http://otel-collector:4318/v1/traces"},
        },
    )

    assert _ports(egress["inference"]) == {53, 9092, 9001, 4318, 8082}
    assert "triton" not in egress
