"""docker-compose.yml, Dockerfile and .env.example: what can be checked without Docker.

No Docker engine runs here, so these tests read the files: services, images pinned,
ports, the KRaft settings, the listeners the scripts rely on, and the "app" profile
wiring (which settings reach the containers, which services they wait for).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from metrics_pipeline.settings import CONSUMER_OPTIONS, PRODUCER_OPTIONS

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_and_pinned_images() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"kafka", "mongo", "productor", "consumidor"}
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert re.fullmatch(r"mongo:\d+\.\d+\.\d+", services["mongo"]["image"])
    assert "27017:27017" in services["mongo"]["ports"]
    assert any(v.startswith("mongo-data:") for v in services["mongo"]["volumes"])
    assert set(COMPOSE["volumes"]) == {"kafka-data", "mongo-data"}


def test_kafka_runs_kraft_with_a_host_and_an_internal_listener() -> None:
    kafka = COMPOSE["services"]["kafka"]
    env = kafka["environment"]
    assert not any("ZOOKEEPER" in key for key in env) and "zookeeper" not in COMPOSE["services"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["CLUSTER_ID"]
    assert kafka["ports"] == ["29092:29092"]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners == {"INTERNAL": ":19092", "HOST": ":29092", "CONTROLLER": ":9093"}
    assert advertised == {"INTERNAL": "kafka:19092", "HOST": "${KAFKA_ADVERTISED_HOST:-localhost}:29092"}
    assert set(protocols) == set(listeners)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_default_bootstrap_of_the_scripts_is_the_published_host_listener() -> None:
    default = next(o.default for o in CONSUMER_OPTIONS if o.env == "KAFKA_BOOTSTRAP_SERVERS")
    assert default == "localhost:29092"


def test_app_profile_runs_the_scripts_against_the_compose_services() -> None:
    services = COMPOSE["services"]
    for name, script, options in (("productor", "productor_metrics_iabd06.py", PRODUCER_OPTIONS),
                                  ("consumidor", "consumidor_metrics_iabd06.py", CONSUMER_OPTIONS)):
        service = services[name]
        assert service["profiles"] == ["app"]
        assert service["build"] == "."
        assert service["command"] == ["python", script]
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        # Every setting of the script reaches it from the shell or .env (compose reads .env for
        # ${...}; empty = the script's default), through environment: only: env_file with
        # "required: false" needs compose 2.24+, and a .env made for the host says "localhost".
        assert "env_file" not in service
        environment = service["environment"]
        assert set(environment) == {o.env for o in options if o.env}
        fixed = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:19092", "MONGODB_URI": "${MONGODB_URI:-mongodb://mongo:27017}"}
        for variable, value in environment.items():
            assert value == fixed.get(variable, f"${{{variable}:-}}"), variable
    assert services["consumidor"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "profiles" not in services["kafka"] and "profiles" not in services["mongo"]


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def test_compose_itself_takes_the_file_with_a_env_copied_from_the_example(tmp_path: Path) -> None:
    # What a user does: cp .env.example .env, then docker compose --profile app up.
    compose = _compose_command()
    if compose is None:
        pytest.skip("no docker-compose / docker compose here (.ci/run installs Debian's docker-compose)")
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    done = subprocess.run([*compose, "--profile", "app", "config"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]}, timeout=60)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"kafka", "mongo", "productor", "consumidor"}
    consumer = services["consumidor"]["environment"]
    assert consumer["MONGODB_URI"] == "mongodb://mongo:27017"
    assert consumer["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert str(consumer["KPI_WINDOW_SIZE"]) == "20"  # from .env
    assert services["productor"]["environment"]["SERVER_IDS"] == "web01,web02,db01,app01,cache01"
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert advertised == "INTERNAL://kafka:19092,HOST://localhost:29092"


def test_dockerfile_copies_the_scripts_and_their_package() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    for path in ("metrics_pipeline/", "productor_metrics_iabd06.py", "consumidor_metrics_iabd06.py",
                 "informe_kpis_iabd06.py"):
        assert path in dockerfile
        assert (REPO / path.rstrip("/")).exists()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_env_example_lists_every_variable() -> None:
    text = (REPO / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    expected = {o.env for o in PRODUCER_OPTIONS + CONSUMER_OPTIONS if o.env}
    assert expected <= names, expected - names
    assert re.search(r"^# MONGODB_URI=mongodb\+srv://", text, re.M)
    # Empty, not localhost: the same .env serves the containers of the "app" profile.
    assert re.search(r"^MONGODB_URI=$", text, re.M)
