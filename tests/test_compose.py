"""docker-compose.yml and the Dockerfile: Docker cannot run on the CI machine, so the file is
checked by `docker compose config` where the compose plugin exists, and always by reading it."""

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def compose_plugin() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_compose_file_is_valid_where_docker_compose_exists():
    command = compose_plugin()
    if command is not None:
        result = subprocess.run([*command, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    # Always: the structure a user relies on (also the only check on machines without compose).
    assert set(COMPOSE["services"]) >= {"kafka", "dashboard", "simulator", "matcher", "zones"}


def test_kafka_is_the_apache_image_in_kraft_mode_with_a_listener_for_host_and_network():
    kafka = COMPOSE["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.3\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "127.0.0.1:9092:9092" in kafka["ports"]
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["HOST"] == "localhost:9092"
    assert advertised["INTERNAL"] == "kafka:19092"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert "healthcheck" in kafka


def test_every_app_service_reaches_kafka_on_the_network_and_waits_for_it():
    for name in ("dashboard", "simulator", "matcher", "zones"):
        service = COMPOSE["services"][name]
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092", name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        module = service["command"][-1]
        assert (ROOT / module / "__main__.py").exists(), f"{name} runs python -m {module}, which does not exist"
    dashboard = COMPOSE["services"]["dashboard"]
    assert "127.0.0.1:5000:5000" in dashboard["ports"]
    assert dashboard["environment"]["DASHBOARD_HOST"] == "0.0.0.0"


def test_dockerfile_copies_what_exists_and_installs_npm_assets():
    copied = re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE, flags=re.MULTILINE)
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    assert "npm ci" in DOCKERFILE and "COPY --from=assets /app/node_modules" in DOCKERFILE
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests", "bench", "broker"}
    assert packages <= set(Path(s).name for s in copied), "every product package belongs in the image"
