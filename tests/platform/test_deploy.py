"""deploy/ holds what docs/deployment.md says: every file parses; every service process
runs the same image, after the migrations, with its probes and resources; and every
environment it is given uses only names that app/settings.py reads, with values that
start microshop (``Settings.from_env`` accepts them).

The images are not built here (no Docker engine); the Dockerfile's health check is run
against a real server instead.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from support import ROOT, SERVICES, free_port, make_settings
from werkzeug.serving import make_server

from app.runtime.composition import create_application
from app.runtime.serving import DRAIN_SECONDS
from app.settings import Settings

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NGINX_CONF = "./nginx/microshop.conf"
SECRET_TEMPLATE = K8S / "secret.template.yaml"
COMPOSE_VARIABLES = {
    "MICROSHOP_JWT_SECRET": "compose-test-secret-0123456789abcdef0123456789",
    "POSTGRES_PASSWORD": "0123456789abcdef",
    "RABBITMQ_PASSWORD": "fedcba9876543210",
}
_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
_SERVICE_VARIABLE = re.compile(r"^MICROSHOP_(USER|ORDER|PAYMENT)_(DATABASE_)?URL$")
_PLACEHOLDER = re.compile(r"<[^>]*>")


def settings_names() -> set[str]:
    """The variables app/settings.py reads by name (besides the per-service patterns)."""
    source = (ROOT / "app" / "settings.py").read_text()
    return set(re.findall(r'"(MICROSHOP_[A-Z_]+)"', source))


def unknown_names(environment: dict[str, str]) -> set[str]:
    known = settings_names()
    return {name for name in environment if not (name in known or _SERVICE_VARIABLE.match(name))}


def interpolate(value: str) -> str:
    """Compose's ``${VAR}``, ``${VAR:?message}`` and ``${VAR:-default}``, from the test's
    variables."""
    return _INTERPOLATION.sub(lambda match: COMPOSE_VARIABLES[match[1]], value)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose_environment(service: str) -> dict[str, str]:
    environment = compose()["services"][service]["environment"]
    return {name: interpolate(str(value)) for name, value in environment.items()}


@cache
def manifests() -> list[dict[str, Any]]:
    """Every object kustomization.yaml applies (parsed once: the tests only read them)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        document
        for resource in kustomization["resources"]
        for document in yaml.safe_load_all((K8S / resource).read_text())
    ]


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item for item in manifests() if item["kind"] == kind}


def secret_template() -> dict[str, str]:
    """The template's values, each ``<placeholder>`` made a value that microshop accepts."""
    data = yaml.safe_load(SECRET_TEMPLATE.read_text())["stringData"]
    return {key: _PLACEHOLDER.sub("placeholder" * 4, value) for key, value in data.items()}


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment as the kubelet makes it: the ConfigMaps, then ``env``."""
    config_maps = objects("ConfigMap")
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(config_maps[source["configMapRef"]["name"]]["data"])
    secret = secret_template()
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == "microshop"
            environment[variable["name"]] = secret[reference["key"]]
    return environment


def workload_containers() -> dict[str, dict[str, Any]]:
    """The container of each Deployment and of the migration Job, by object name."""
    workloads = {**objects("Deployment"), **objects("Job")}
    containers = {}
    for name, workload in workloads.items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        containers[name] = container
    return containers


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments left out."""
    lines = [
        line
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def instructions(name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile() if instruction == name]


def image_user() -> tuple[str, str]:
    """The (user, group) the image runs as."""
    user, _, group = instructions("USER")[-1].partition(":")
    return user, group


@pytest.mark.parametrize(
    "path",
    sorted(str(path.relative_to(DEPLOY)) for path in DEPLOY.rglob("*.yaml")),
)
def test_every_yaml_file_parses(path: str) -> None:
    documents = list(yaml.safe_load_all((DEPLOY / path).read_text()))
    assert documents
    assert all(isinstance(document, dict) for document in documents)


# The Dockerfile


def test_the_image_is_built_in_stages_and_runs_as_a_user_that_is_not_root() -> None:
    assert len(instructions("FROM")) >= 2
    assert image_user()[0] not in ("root", "0", "")
    assert instructions("EXPOSE") == ["8080"]
    assert json.loads(instructions("CMD")[-1]) == ["microshop", "serve", "--host", "0.0.0.0"]  # noqa: S104


def test_the_image_health_check_asks_healthz_and_fails_when_nobody_answers(
    tmp_path: Path,
) -> None:
    (healthcheck,) = instructions("HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python"
    command[0] = sys.executable
    application = create_application(make_settings(tmp_path, {}), deliver_events=False)
    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        alive = subprocess.run(
            command, env={"PORT": str(server.port)}, capture_output=True, check=False
        )
    finally:
        server.shutdown()
        thread.join()
        application.dispose()
    nobody = subprocess.run(
        command, env={"PORT": str(free_port())}, capture_output=True, check=False
    )

    assert "/healthz" in command[-1]
    assert alive.returncode == 0, alive.stderr
    assert nobody.returncode != 0


def test_dockerignore_lets_in_everything_the_wheel_is_built_from() -> None:
    """An allow-list: anything setup.cfg builds from that it leaves out breaks the image."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = {rule.removeprefix("!").rstrip("/") for rule in rules if rule.startswith("!")}
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    packages = {
        name for name in config["options.packages.find"]["include"].split() if "." not in name
    }
    modules = {f"{name}.py" for name in config["options"]["py_modules"].split()}
    readme = config["metadata"]["long_description"].removeprefix("file:").strip()

    assert rules[0] == "*"
    assert packages | modules | {readme, "setup.cfg", "pyproject.toml"} <= allowed


# compose.yaml


def test_the_services_and_the_migrations_run_one_image() -> None:
    services = compose()["services"]
    runs = [*SERVICES, "migrate"]

    assert {services[name]["image"] for name in runs} == {"microshop"}
    for name in runs:
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_the_services_start_after_the_migrations_the_broker_and_redis() -> None:
    services = compose()["services"]

    assert services["migrate"]["command"] == ["microshop", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in SERVICES:
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "rabbitmq": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }


def test_two_copies_of_order_and_payment_run_behind_nginx() -> None:
    services = compose()["services"]

    assert services["order"]["deploy"]["replicas"] == 2
    assert services["payment"]["deploy"]["replicas"] == 2
    assert services["user"].get("deploy", {}).get("replicas", 1) == 1
    assert services["nginx"]["ports"] == ["8080:8080"]
    assert f"{NGINX_CONF}:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    assert services["nginx"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in SERVICES
    }


def test_every_long_running_service_has_a_health_check() -> None:
    """The app services have the image's HEALTHCHECK; the others their own."""
    services = compose()["services"]

    for name in ("postgres", "redis", "rabbitmq", "nginx"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    for name in SERVICES:
        assert "healthcheck" not in services[name]


def test_nginx_is_the_one_trusted_proxy() -> None:
    """nginx's fixed address lies outside the range Docker hands out, so no other
    container can take it, and it is the one whose X-Forwarded-For the services believe."""
    document = compose()
    (network,) = document["networks"]["shop"]["ipam"]["config"]
    address = document["services"]["nginx"]["networks"]["shop"]["ipv4_address"]

    assert ipaddress.ip_address(address) in ipaddress.ip_network(network["subnet"])
    assert ipaddress.ip_address(address) not in ipaddress.ip_network(network["ip_range"])
    for name in SERVICES:
        assert compose_environment(name)["MICROSHOP_TRUSTED_PROXY"] == address


@pytest.mark.parametrize("name", [*SERVICES, "migrate"])
def test_compose_environment_uses_only_settings_names(name: str) -> None:
    assert unknown_names(compose_environment(name)) == set()


@pytest.mark.parametrize("name", SERVICES)
def test_compose_environment_starts_one_service_that_calls_the_others_through_nginx(
    name: str,
) -> None:
    document = compose()
    settings = Settings.from_env(compose_environment(name))
    rabbitmq = document["services"]["rabbitmq"]["environment"]
    broker = urlsplit(settings.broker_url or "")

    assert settings.is_production
    assert [spec.name for spec in settings.services] == [name]
    assert settings.service_urls == {
        other: "http://nginx:8080" for other in SERVICES if other != name
    }
    assert (
        settings.database_url(name)
        == compose_environment("migrate")[f"MICROSHOP_{name.upper()}_DATABASE_URL"]
    )
    assert (broker.hostname, broker.username, broker.path) == (
        "rabbitmq",
        rabbitmq["RABBITMQ_DEFAULT_USER"],
        f"/{rabbitmq['RABBITMQ_DEFAULT_VHOST']}",
    )
    assert urlsplit(settings.redis_url or "").hostname in document["services"]
    assert settings.jwt_secret == COMPOSE_VARIABLES["MICROSHOP_JWT_SECRET"]


def test_the_migrations_reach_the_three_databases_the_init_script_creates() -> None:
    document = compose()
    postgres = document["services"]["postgres"]
    script = DEPLOY / "postgres" / "create-databases.sql"
    created = re.findall(r"CREATE DATABASE (\w+);", script.read_text())
    settings = Settings.from_env(compose_environment("migrate"))

    assert f"./{script.relative_to(DEPLOY)}" in postgres["volumes"][1]
    assert [spec.name for spec in settings.services] == list(SERVICES)
    for name in SERVICES:
        url = urlsplit(settings.database_url(name))
        assert url.hostname == "postgres"
        assert url.username == postgres["environment"]["POSTGRES_USER"]
        assert url.path.removeprefix("/") in created
    assert len(created) == len(SERVICES)


def test_compose_commits_no_secret() -> None:
    """Every credential comes from deploy/.env (or the shell), and is required there."""
    services = compose()["services"]
    raw = {
        **services["user"]["environment"],
        **services["postgres"]["environment"],
        **services["rabbitmq"]["environment"],
    }

    assert raw["MICROSHOP_JWT_SECRET"].startswith("${MICROSHOP_JWT_SECRET:?")
    assert raw["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert raw["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().split()


def test_docker_stops_a_service_only_after_its_drain() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert int(services[name]["stop_grace_period"].removesuffix("s")) > DRAIN_SECONDS


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    plugin = docker and subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False
    )
    if not plugin or plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "--file", DEPLOY / "compose.yaml", "config", "--quiet"],
        env={**os.environ, **COMPOSE_VARIABLES},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# Kubernetes


def test_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")}

    assert set(kustomization["resources"]) == files - {"kustomization.yaml", SECRET_TEMPLATE.name}
    assert [image["name"] for image in kustomization["images"]] == ["microshop"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_has_its_probes_resources_and_the_one_image(name: str) -> None:
    deployment = objects("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (port,) = container["ports"]

    assert container["image"] == "microshop"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert port["containerPort"] == 8080
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert deployment["spec"]["replicas"] >= 2
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == image_user()
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_has_a_service_and_a_disruption_budget(name: str) -> None:
    labels = objects("Deployment")[name]["spec"]["template"]["metadata"]["labels"]
    service = objects("Service")[name]
    budget = objects("PodDisruptionBudget")[name]

    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_migration_job_migrates_the_three_databases_with_the_one_image() -> None:
    container = workload_containers()["migrate"]
    settings = Settings.from_env(container_environment(container))

    assert container["image"] == "microshop"
    assert container["command"] == ["microshop", "migrate"]
    assert [spec.name for spec in settings.services] == list(SERVICES)
    assert set(settings.database_urls) == set(SERVICES)


def test_the_ingress_routes_the_three_prefixes_to_their_services() -> None:
    (rule,) = objects("Ingress")["microshop"]["spec"]["rules"]
    routes = {
        path["path"]: (path["pathType"], path["backend"]["service"])
        for path in rule["http"]["paths"]
    }

    assert routes == {
        f"/{name}": ("Prefix", {"name": name, "port": {"name": "http"}}) for name in SERVICES
    }


@pytest.mark.parametrize("name", [*SERVICES, "migrate"])
def test_kubernetes_environment_uses_only_settings_names_and_starts_microshop(name: str) -> None:
    environment = container_environment(workload_containers()[name])
    settings = Settings.from_env(environment)

    assert unknown_names(environment) == set()
    assert settings.is_production
    if name != "migrate":
        assert [spec.name for spec in settings.services] == [name]
        assert set(settings.database_urls) == {name}
        assert settings.broker_url


def test_the_secret_template_holds_every_key_the_pods_use_and_no_secret() -> None:
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())
    used = {
        variable["valueFrom"]["secretKeyRef"]["key"]
        for container in workload_containers().values()
        for variable in container["env"]
        if "valueFrom" in variable
    }

    assert set(template["stringData"]) == used
    assert all(_PLACEHOLDER.search(value) for value in template["stringData"].values())


def test_kubectl_renders_the_manifests_with_one_image() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", K8S], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    rendered = [item for item in yaml.safe_load_all(result.stdout) if item]
    images = {
        container["image"]
        for item in rendered
        if item["kind"] in ("Deployment", "Job")
        for container in item["spec"]["template"]["spec"]["containers"]
    }

    assert len(images) == 1
    assert {item["metadata"].get("namespace") for item in rendered} == {"microshop"}


def test_settings_names_are_found() -> None:
    """The name check above is only as good as this list: it must hold the real names."""
    assert {"MICROSHOP_ENV", "MICROSHOP_JWT_SECRET", "MICROSHOP_TRUSTED_PROXY"} <= settings_names()
    assert unknown_names({"MICROSHOP_JWT_SECRETS": "x"}) == {"MICROSHOP_JWT_SECRETS"}


def test_the_deployment_guide_tells_the_numbers_the_files_hold() -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text()
    address = compose()["services"]["nginx"]["networks"]["shop"]["ipv4_address"]
    pod = objects("Deployment")["order"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]

    assert f"(`{address}`)" in guide
    assert f"`terminationGracePeriodSeconds` is {pod['terminationGracePeriodSeconds']}" in guide
    assert (
        f"requests of {resources['requests']['cpu']} CPU and "
        f"{resources['requests']['memory'].removesuffix('Mi')} MiB" in guide
    )
    assert (
        f"limits of {resources['limits']['cpu']} CPU and "
        f"{resources['limits']['memory'].removesuffix('Mi')} MiB" in guide
    )
