"""platform/compose.yaml is a layout a platform team can run: checked here without Docker.

Every long-running service has a health check and a restart policy, Docent's services wait
for a healthy database and broker and for the migrations, each queue has its own workers,
there is one beat, no secret has a default, and every command names a real module or
management command. Where Docker's compose plugin (or docker-compose) is installed, `config`
must accept the file too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

from tests.conftest import ROOT

COMPOSE = ROOT / "platform" / "compose.yaml"
DOCKERFILE = ROOT / "platform" / "Dockerfile"
DOCENT = {"migrate", "web", "worker-ingest", "worker-default", "beat"}
LONG_RUNNING = {"db", "redis", "web", "worker-ingest", "worker-default", "beat"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY(_ID)?$")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?P<operator>:?[-?])?(?P<rest>[^}]*)\}")
REQUIRED = re.compile(r"\$\{\w+:?\?[^}]+\}")


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def words(command) -> list[str]:
    """A command as its words, whether written as a string or a list; [] for none."""
    if isinstance(command, str):
        return command.split()
    return [word for part in command or [] for word in part.split()]


def option(command, name: str) -> str:
    arguments = words(command)
    return arguments[arguments.index(name) + 1]


def test_the_services_of_an_installation_are_all_there(services):
    assert set(services) == LONG_RUNNING | {"migrate"}


def test_every_long_running_service_has_a_health_check_and_comes_back_after_a_crash(services):
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"  # it runs once, to completion


def test_each_health_check_asks_the_service_itself(services):
    def probe(name: str) -> str:
        return " ".join(words(services[name]["healthcheck"]["test"]))

    assert "pg_isready" in probe("db")
    assert "redis-cli ping" in probe("redis")
    # Slim images have no curl: the web check is Python's urllib against the liveness endpoint.
    assert "urllib.request.urlopen('http://127.0.0.1:8000/healthz'" in probe("web")
    for name in ("worker-ingest", "worker-default"):
        node = option(services[name]["command"], "--hostname").replace("%h", "$$HOSTNAME")
        assert f"celery -A config inspect ping --destination {node}" in probe(name), name
    assert "/data/celerybeat-schedule" in probe("beat")


def test_docent_starts_once_the_database_and_broker_are_healthy_and_migrated(services):
    for name in DOCENT - {"migrate"}:
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}


def test_each_queue_has_workers_of_its_own_with_their_own_concurrency_and_there_is_one_beat(services):
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE} | {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    workers = {name: service for name, service in services.items() if words(service.get("command"))[3:4] == ["worker"]}
    consumed = [option(service["command"], "--queues") for service in workers.values()]
    assert sorted(consumed) == sorted(queues) == ["default", "ingest"]
    for name, service in workers.items():
        assert re.fullmatch(r"\$\{DOCENT_\w+_CONCURRENCY:-\d+\}", option(service["command"], "--concurrency")), name
        assert not {"--beat", "-B"} & set(words(service["command"])), f"{name} must not run a beat of its own"
    assert [name for name, service in services.items() if words(service.get("command"))[3:4] == ["beat"]] == ["beat"]


def test_no_secret_has_a_default(services):
    for match in INTERPOLATION.finditer(COMPOSE.read_text()):
        if SECRET_NAME.search(match["name"]):
            assert match["operator"] in (":?", "?"), f"{match[0]}: a secret must be required, never defaulted"
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                # Passed through from the environment as it is, or required.
                assert value is None or REQUIRED.fullmatch(value), (name, key, value)
            if isinstance(value, str) and (password := re.search(r"://[^:/@]+:([^@]*)@", value)):
                assert REQUIRED.fullmatch(password[1]), (name, key, "a password in a URL must be required")


def test_every_docent_service_shares_the_uploads_and_gets_the_object_storage_settings(services):
    names_read = set(re.findall(r'env_str\("(DOCENT_S3_\w+)"', (ROOT / "config" / "settings.py").read_text()))
    assert "DOCENT_S3_BUCKET" in names_read
    for name in DOCENT:
        assert "media:/data" in services[name]["volumes"], name
        environment = services[name]["environment"]
        assert names_read | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(environment), name
    assert "DOCENT_DATA_DIR=/data" in DOCKERFILE.read_text()


def test_every_command_names_a_real_module_or_management_command(services):
    from config.celery import app

    assert app.main == "docent"  # what `celery -A config` loads
    commands = [words(service["command"]) for service in services.values() if "command" in service]
    commands += [words(service["healthcheck"]["test"][1:]) for service in services.values() if "healthcheck" in service]
    commands.append(words(re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M)[1].replace('"', "")[1:-1]))
    checked = 0
    for arguments in commands:
        arguments = [argument.strip(",") for argument in arguments]
        if "celery" in arguments:
            assert arguments[arguments.index("celery") + 1 : arguments.index("celery") + 3] == ["-A", "config"]
            checked += 1
        if "manage.py" in arguments:
            assert arguments[arguments.index("manage.py") + 1] in get_commands(), arguments
            checked += 1
    assert checked >= 8  # migrate, web, the image's own, two workers, their pings and beat


def _compose() -> list[str] | None:
    """Docker's compose plugin, or else the standalone docker-compose; None when neither is here."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose() is None, reason="neither Docker's compose plugin nor docker-compose is installed here")
def test_docker_compose_accepts_the_file_and_refuses_to_run_without_the_secrets():
    command = [*_compose(), "-f", str(COMPOSE), "config", "--quiet"]
    environment = {
        key: value for key, value in os.environ.items() if key not in ("DOCENT_SECRET_KEY", "POSTGRES_PASSWORD")
    }
    secrets = {"DOCENT_SECRET_KEY": "x" * 50, "POSTGRES_PASSWORD": "pass-word"}
    accepted = subprocess.run(command, env=environment | secrets, capture_output=True, text=True, timeout=60)
    assert accepted.returncode == 0, accepted.stderr
    refused = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert re.search(r"set (DOCENT_SECRET_KEY|POSTGRES_PASSWORD)", refused.stderr + refused.stdout), refused.stderr
