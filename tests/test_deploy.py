"""The production shape, checked offline (no Docker engine, no cluster here): every Kubernetes
manifest of both overlays against the Kubernetes schemas, the custom resources against their shape,
docker-compose.yml against the compose specification, and the cross-references between them and
the code: ports, probes, environment variables, topics, consumer groups, secrets."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from matchnet.contracts import TOPICS
from matchnet.healthcheck import probe_url
from services.matcher.app import CONSUMER_GROUP as MATCHER_GROUP
from services.matcher.settings import MatcherSettings
from services.needs.settings import NeedsSettings
from services.notifications.events import CONSUMER_GROUP as NOTIFICATIONS_GROUP
from services.notifications.settings import NotificationsSettings
from services.seeds.settings import SeedsSettings
from shared.events import Topic
from shared.settings import DEFAULT_PORTS, KEY_REGISTRY_SERVICE, ServiceSettings
from tests.kustomize import render

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "prod"]
KUBERNETES_VERSION = "1.30.0"
SERVICES = list(DEFAULT_PORTS)
SETTINGS: dict[str, type[ServiceSettings]] = {
    "seeds": SeedsSettings, "needs": NeedsSettings, "matcher": MatcherSettings, "notifications": NotificationsSettings,
}
CONSUMER_GROUPS = {"matcher": MATCHER_GROUP, "notifications": NOTIFICATIONS_GROUP}
CONSUMED_TOPICS = {"matcher": [Topic.seeds, Topic.needs], "notifications": [Topic.pairings]}
# Read by the image and its tools, not by a settings class.
IMAGE_VARIABLES = {"MATCHNET_SERVICE"}

Resource = dict[str, Any]


@cache
def rendered(overlay: str) -> tuple[Resource, ...]:
    return tuple(render(K8S / "overlays" / overlay))


def of_kind(overlay: str, kind: str) -> list[Resource]:
    return [r for r in rendered(overlay) if r["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> Resource:
    [resource] = [r for r in of_kind(overlay, kind) if r["metadata"]["name"] == name]
    return resource


def env_names(settings_class: type[ServiceSettings]) -> set[str]:
    """Every environment variable a settings class reads (upper case)."""
    prefix = settings_class.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def container_environment(overlay: str, deployment: Resource) -> dict[str, Any]:
    """What the container's process sees: env entries (value or valueFrom) and envFrom ConfigMaps."""
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    environment: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        environment.update(named(overlay, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        environment[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return environment


# ---- Kubernetes: schemas --------------------------------------------------------------------

# The custom resources' shape (Strimzi v1beta2, KEDA v1alpha1): what these manifests rely on.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
CUSTOM_RESOURCE_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _METADATA, "spec": {
            "type": "object", "required": ["kafka", "entityOperator"], "additionalProperties": False,
            "properties": {
                "kafka": {"type": "object", "required": ["listeners"], "additionalProperties": False, "properties": {
                    "version": {"type": "string"}, "metadataVersion": {"type": "string"},
                    "listeners": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["name", "port", "type", "tls"],
                        "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
                                       "port": {"type": "integer", "minimum": 9092},
                                       "type": {"enum": ["internal", "route", "loadbalancer", "nodeport",
                                                         "ingress", "cluster-ip"]},
                                       "tls": {"type": "boolean"}}}},
                    "config": _STRING_MAP}},
                "entityOperator": {"type": "object", "properties": {"topicOperator": {"type": "object"},
                                                                    "userOperator": {"type": "object"}}},
            }}},
    },
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _METADATA, "spec": {
            "type": "object", "required": ["replicas", "roles", "storage"], "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "roles": {"type": "array", "items": {"enum": ["controller", "broker"]}, "minItems": 1},
                "storage": {"type": "object", "required": ["type"], "properties": {
                    "type": {"enum": ["jbod", "persistent-claim", "ephemeral"]},
                    "volumes": {"type": "array", "items": {"type": "object", "required": ["id", "type"],
                                                           "properties": {"size": {"type": "string"}}}}}},
                "resources": {"type": "object"},
            }}},
    },
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _METADATA, "spec": {
            "type": "object", "required": ["topicName", "partitions", "replicas"], "additionalProperties": False,
            "properties": {"topicName": {"type": "string"}, "partitions": {"type": "integer", "minimum": 1},
                           "replicas": {"type": "integer", "minimum": 1, "maximum": 32767}, "config": _STRING_MAP}}},
    },
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _METADATA, "spec": {
            "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"}, "cooldownPeriod": {"type": "integer"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"type": {"type": "string"}, "metricType": {"enum": ["Utilization", "AverageValue"]},
                                   "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}}},
            }}},
    },
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_validates_against_the_kubernetes_schemas_or_its_custom_resource_shape(overlay: str) -> None:
    for resource in rendered(overlay):
        key = (resource["apiVersion"], resource["kind"])
        where = f"{overlay}: {resource['kind']}/{resource['metadata']['name']}"
        if key in CUSTOM_RESOURCE_SCHEMAS:
            jsonschema.validate(resource, CUSTOM_RESOURCE_SCHEMAS[key])
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{where}: {error.message} at {list(error.path)}") from None


def test_the_schema_check_is_not_a_blank_cheque() -> None:
    deployment = json.loads(json.dumps(named("prod", "Deployment", "seeds")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    topic = json.loads(json.dumps(of_kind("prod", "KafkaTopic")[0]))
    topic["spec"]["partition"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(topic, CUSTOM_RESOURCE_SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaTopic")])


def test_both_overlays_name_their_namespace_and_the_image_they_run() -> None:
    for overlay, namespace in (("dev", "matchnet-dev"), ("prod", "matchnet")):
        assert {r["metadata"].get("namespace") for r in rendered(overlay) if r["kind"] != "Namespace"} == {namespace}
        images = {named(overlay, "Deployment", s)["spec"]["template"]["spec"]["containers"][0]["image"]
                  for s in SERVICES}
        assert len(images) == 1 and not images.pop().endswith(":latest")


# ---- Kubernetes: the services ----------------------------------------------------------------

@cache
def app_paths(service: str) -> frozenset[str]:
    """The paths the service's app really serves (built, not started)."""
    import importlib
    import tempfile

    create_app = importlib.import_module(f"services.{service}.app").create_app
    settings = SETTINGS[service](database_url=f"sqlite:///{tempfile.mkdtemp()}/{service}.db")
    return frozenset(create_app(settings).openapi()["paths"])


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_deployment_agrees_with_the_code_on_port_probes_command_and_environment(
    overlay: str, service: str
) -> None:
    deployment = named(overlay, "Deployment", service)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    port = DEFAULT_PORTS[service]
    environment = container_environment(overlay, deployment)

    assert container["command"] == ["matchnet", "serve", service]
    assert environment["MATCHNET_SERVICE"] == service
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert environment[f"MATCHNET_{service.upper()}_PORT"] == str(port)
    assert environment[f"MATCHNET_{service.upper()}_HOST"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"/readyz", "/healthz", "/metrics"} <= app_paths(service)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] in app_paths(service)

    unknown = {name for name in environment if name.startswith(("MATCHNET_", "OTEL_"))} - IMAGE_VARIABLES \
        - env_names(SETTINGS[service])
    assert not unknown, f"{service} does not read {sorted(unknown)}"
    required = {"MATCHNET_KAFKA_BOOTSTRAP_SERVERS", "MATCHNET_BOOTSTRAP_ADMIN_KEY", "MATCHNET_OTLP_ENDPOINT",
                f"MATCHNET_{service.upper()}_DATABASE_URL"}
    if service != KEY_REGISTRY_SERVICE:
        required.add("MATCHNET_KEY_REGISTRY_URL")
    if service == "matcher":
        required |= {"MATCHNET_MATCHER_SEEDS_URL", "MATCHNET_MATCHER_NEEDS_URL"}
    assert required <= set(environment), f"{service} misses {sorted(required - set(environment))}"
    assert environment["MATCHNET_KAFKA_CREATE_TOPICS"] == "false"  # KafkaTopic resources own them
    assert environment["MATCHNET_KAFKA_FETCH_MAX_WAIT_MS"] == "500"
    settings = SETTINGS[service].model_validate(
        {k: v for k, v in environment.items() if isinstance(v, str) and k.startswith("MATCHNET_")}
        | {"MATCHNET_BOOTSTRAP_ADMIN_KEY": "from-a-secret"}
    )
    assert settings.port == port

    # Hardened: not root, nothing writable but /tmp, no privilege, bounded.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert environment["MATCHNET_DATA_DIR"].startswith("/tmp/")
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
    # The drain fits in the grace period: unready, shutdown delay, then at most the drain timeout.
    budget = float(environment["MATCHNET_SHUTDOWN_DELAY_S"]) + float(environment["MATCHNET_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > budget


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_urls_between_services_name_services_on_their_ports(overlay: str) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(overlay, "Service")}
    config = named(overlay, "ConfigMap", "matchnet-config")["data"]
    matcher = container_environment(overlay, named(overlay, "Deployment", "matcher"))
    for variable in ("MATCHNET_KEY_REGISTRY_URL", "MATCHNET_MATCHER_SEEDS_URL", "MATCHNET_MATCHER_NEEDS_URL",
                     "MATCHNET_OTLP_ENDPOINT"):
        url = urlsplit(matcher[variable])
        assert url.hostname in services, f"{variable}: no Service {url.hostname}"
        assert url.port in [p["port"] for p in services[url.hostname]["spec"]["ports"]], variable
    assert urlsplit(config["MATCHNET_KEY_REGISTRY_URL"]).hostname == KEY_REGISTRY_SERVICE
    for service in SERVICES:
        spec = services[service]["spec"]
        assert spec["selector"].items() <= named(overlay, "Deployment", service)["spec"]["template"]["metadata"][
            "labels"].items()
        assert spec["ports"][0]["port"] == DEFAULT_PORTS[service] and spec["ports"][0]["targetPort"] == "http"
    kafka = of_kind(overlay, "Kafka")[0]
    listener = kafka["spec"]["kafka"]["listeners"][0]
    # Strimzi's bootstrap Service is <cluster>-kafka-bootstrap.
    assert config["MATCHNET_KAFKA_BOOTSTRAP_SERVERS"] == \
        f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_written(overlay: str) -> None:
    assert not of_kind(overlay, "Secret"), "no Secret (and so no secret value) in the repository"
    text = "\n".join(yaml.safe_dump(r) for r in rendered(overlay))
    referenced = set(re.findall(r"secretKeyRef:\n\s+key: \S+\n\s+name: (\S+)", text))
    assert referenced >= {"matchnet-admin", "matchnet-database"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for secret in referenced:
        assert secret in readme, f"README must say how to create the Secret {secret}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_autoscalers_target_the_deployments(overlay: str) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(overlay, "Deployment")}
    for budget in of_kind(overlay, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values()), budget["metadata"]["name"]
    assert {b["metadata"]["name"] for b in of_kind(overlay, "PodDisruptionBudget")} == set(SERVICES)
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(overlay, "HorizontalPodAutoscaler")}
    keda_targets = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(overlay, "ScaledObject")}
    assert hpa_targets == {"seeds", "needs"} and keda_targets == {"matcher", "notifications"}
    assert (hpa_targets | keda_targets) <= set(deployments)
    for hpa in of_kind(overlay, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_each_consumer_on_the_lag_of_the_group_it_really_uses(overlay: str) -> None:
    config = named(overlay, "ConfigMap", "matchnet-config")["data"]
    partitions = {t.topic_name: t.partitions for t in _topics(overlay)}
    for scaled in of_kind(overlay, "ScaledObject"):
        service = scaled["spec"]["scaleTargetRef"]["name"]
        [kafka] = [t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"]
        assert kafka["metadata"]["consumerGroup"] == CONSUMER_GROUPS[service]
        assert kafka["metadata"]["bootstrapServers"] == config["MATCHNET_KAFKA_BOOTSTRAP_SERVERS"]
        # More consumers than partitions would idle.
        most = min(partitions[topic.value] for topic in CONSUMED_TOPICS[service])
        assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= most
    # Matcher replicas each keep a full index (a follower per replica): each needs its own replica id.
    matcher = named(overlay, "Deployment", "matcher")["spec"]["template"]["spec"]["containers"][0]
    replica_id = next(e for e in matcher["env"] if e["name"] == "MATCHNET_MATCHER_REPLICA_ID")
    assert replica_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


class _Topic:
    def __init__(self, resource: Resource) -> None:
        self.topic_name: str = resource["spec"]["topicName"]
        self.partitions: int = resource["spec"]["partitions"]
        self.replicas: int = resource["spec"]["replicas"]
        self.config: dict[str, Any] = resource["spec"]["config"]


def _topics(overlay: str) -> list[_Topic]:
    return [_Topic(r) for r in of_kind(overlay, "KafkaTopic")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_the_code_uses_is_declared_as_the_contract_states_it(overlay: str) -> None:
    topics = {t.topic_name: t for t in _topics(overlay)}
    assert set(topics) == {topic.value for topic in Topic}
    nodes = of_kind(overlay, "KafkaNodePool")[0]["spec"]["replicas"]
    kafka_config = of_kind(overlay, "Kafka")[0]["spec"]["kafka"]["config"]
    for topic, policy in TOPICS.items():
        declared = topics[topic.value]
        assert declared.partitions == policy.partitions, topic
        assert declared.config["cleanup.policy"] == policy.cleanup_policy, topic
        assert declared.config["retention.ms"] == policy.retention_ms, topic
        assert declared.replicas == (policy.replicas if overlay == "prod" else 1), topic
        assert declared.replicas <= nodes and declared.config["min.insync.replicas"] <= max(1, declared.replicas - 1)
    cluster = of_kind(overlay, "Kafka")[0]["metadata"]["name"]
    assert {r["metadata"]["labels"]["strimzi.io/cluster"] for r in of_kind(overlay, "KafkaTopic")} == {cluster}
    assert kafka_config["default.replication.factor"] <= nodes
    assert kafka_config["offsets.topic.replication.factor"] <= nodes
    assert kafka_config["auto.create.topics.enable"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_select_real_pods_and_open_the_ports_the_services_listen_on(overlay: str) -> None:
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in rendered(overlay)
                  if w["kind"] in ("Deployment", "StatefulSet")]
    names = {labels["app.kubernetes.io/name"] for labels in pod_labels}

    def selected(selector: dict[str, Any]) -> list[dict[str, str]]:
        matches = []
        for labels in pod_labels:
            if not selector.get("matchLabels", {}).items() <= labels.items():
                continue
            if all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])):
                matches.append(labels)
        return matches

    policies = of_kind(overlay, "NetworkPolicy")
    for policy in policies:
        selector = policy["spec"]["podSelector"]
        for expression in selector.get("matchExpressions", []):
            assert set(expression["values"]) <= names, policy["metadata"]["name"]
        assert selected(selector), f"{policy['metadata']['name']} selects no pod"
    for service in SERVICES:
        # Each API port is open to the ingress controller.
        ingress = named(overlay, "NetworkPolicy", "matchnet-api-ingress")["spec"]["ingress"][0]
        assert DEFAULT_PORTS[service] in [p["port"] for p in ingress["ports"]]
    denied = named(overlay, "NetworkPolicy", "matchnet-default-deny")
    assert {"seeds", "needs", "matcher", "notifications"} <= {
        labels["app.kubernetes.io/name"] for labels in selected(denied["spec"]["podSelector"])}
    egress_ports = {port["port"] for policy in policies if "egress" in policy["spec"]
                    for rule in policy["spec"]["egress"] for port in rule.get("ports", [])}
    assert {53, 9092, 5432, 4318, DEFAULT_PORTS[KEY_REGISTRY_SERVICE], 443} <= egress_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_collector_pipelines_use_what_they_define_and_services_send_to_its_otlp_port(overlay: str) -> None:
    collector = yaml.safe_load(named(overlay, "ConfigMap", "otel-collector")["data"]["collector.yaml"])
    for pipeline in collector["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(collector[kind]), kind
    assert {"traces", "metrics"} <= set(collector["service"]["pipelines"])
    endpoint = urlsplit(named(overlay, "ConfigMap", "matchnet-config")["data"]["MATCHNET_OTLP_ENDPOINT"])
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(f":{endpoint.port}")
    backend = named(overlay, "ConfigMap", "otel-backend")["data"]["endpoint"]
    assert urlsplit(backend).scheme in ("http", "https")


def test_the_dev_database_is_one_per_service_as_in_the_compose_init_script() -> None:
    script = named("dev", "ConfigMap", "postgres-init")["data"]["10-databases.sql"]
    assert _databases(script) == _databases((ROOT / "deploy" / "postgres-init.sql").read_text()) == set(SERVICES)


def _databases(sql: str) -> set[str]:
    return set(re.findall(r"CREATE DATABASE (\w+);", sql))


# ---- docker-compose.yml ----------------------------------------------------------------------

@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))

    jsonschema.validate(compose(), schema, cls=jsonschema.Draft7Validator)
    broken = json.loads(json.dumps(compose()))
    broken["services"]["seeds"]["depends_on"] = {"notifications": {"condition": "service_ready"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("service", SERVICES)
def test_each_compose_service_agrees_with_the_code(service: str) -> None:
    definition = compose()["services"][service]
    environment: dict[str, str] = {k: str(v) for k, v in definition["environment"].items()}
    port = DEFAULT_PORTS[service]

    assert definition["build"] == "." and definition["read_only"] is True
    assert environment["MATCHNET_SERVICE"] == service
    assert definition["ports"] == [f"{port}:{port}"]
    unknown = {name for name in environment if name.startswith("MATCHNET_")} - IMAGE_VARIABLES \
        - env_names(SETTINGS[service])
    assert not unknown, f"{service} does not read {sorted(unknown)}"
    assert environment["MATCHNET_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert environment["MATCHNET_KAFKA_FETCH_MAX_WAIT_MS"] == "500"  # Apache Kafka answers when data arrives
    assert environment["MATCHNET_KAFKA_CREATE_TOPICS"] == "false"
    database = re.fullmatch(r"postgresql://(\w+):(\$\{[^}]+\})@(\w+):5432/(\w+)",
                            environment[f"MATCHNET_{service.upper()}_DATABASE_URL"])
    assert database is not None
    user, password, host, name = database.groups()
    assert (host, name) == ("postgres", service)
    assert password == "${POSTGRES_PASSWORD:?}"  # interpolated at `up`: no secret in the file
    assert user == compose()["services"]["postgres"]["environment"]["POSTGRES_USER"]
    assert environment["MATCHNET_BOOTSTRAP_ADMIN_KEY"].startswith("${MATCHNET_BOOTSTRAP_ADMIN_KEY:?")
    registry = urlsplit(environment["MATCHNET_KEY_REGISTRY_URL"])
    assert (registry.hostname, registry.port) == (KEY_REGISTRY_SERVICE, DEFAULT_PORTS[KEY_REGISTRY_SERVICE])
    otlp = urlsplit(environment["MATCHNET_OTLP_ENDPOINT"])
    assert otlp.hostname in compose()["services"] and f"{otlp.port}:{otlp.port}" in \
        compose()["services"][otlp.hostname]["ports"]
    for dependency in definition["depends_on"]:
        assert dependency in compose()["services"]
    if service == "matcher":
        for other in ("seeds", "needs"):
            url = urlsplit(environment[f"MATCHNET_MATCHER_{other.upper()}_URL"])
            assert (url.hostname, url.port) == (other, DEFAULT_PORTS[other])
    assert probe_url(service).endswith(f":{port}/readyz")  # the image's health check


def test_compose_creates_every_topic_as_the_contract_states_it_and_the_demo_loader_runs_once() -> None:
    script = compose()["services"]["kafka-topics"]["command"][0]
    created = {}
    for line in script.splitlines():
        if line.strip().startswith("create "):
            words = shlex.split(line)
            created[words[1]] = (int(words[2]), words[3], int(words[4]))
    assert created == {topic.value: (policy.partitions, policy.cleanup_policy, policy.retention_ms)
                       for topic, policy in TOPICS.items()}
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:") and "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    demo = compose()["services"]["demo-data"]
    assert demo["command"][:2] == ["matchnet", "demo-load"] and demo["restart"] == "no"
    urls = dict(zip(demo["command"][2::2], demo["command"][3::2], strict=True))
    assert urls == {"--seeds-url": "http://seeds:8001", "--needs-url": "http://needs:8002"}
    assert _databases((ROOT / "deploy" / "postgres-init.sql").read_text()) == set(SERVICES)


def test_the_image_is_slim_unprivileged_and_checks_its_own_readiness() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert stages and all(image.endswith("-slim") or image.startswith("python:3.11-slim") for image in stages)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert re.search(r'^HEALTHCHECK .*"matchnet\.healthcheck", "readyz"', dockerfile, re.M)
    assert re.search(r'^CMD \["matchnet", "serve"\]', dockerfile, re.M)  # exec form: the service gets SIGTERM
