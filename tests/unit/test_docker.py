"""The container files agree with the settings and with each other.

No Docker engine is needed: the compose file is read with PyYAML and the
Dockerfile as text. Only ``test_compose_config_is_valid`` calls the docker
client, and it skips when the client or its compose plugin is missing.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sysmon_faust.settings import ENVIRONMENT_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

KAFKA_SERVICE = "kafka"
SETTING_PREFIXES = ("SYSMON_", "KAFKA_BOOTSTRAP_SERVERS")


# --- reading the files --------------------------------------------------------


_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` with an empty host environment: the defaults."""
    if isinstance(value, str):
        return _VARIABLE.sub(
            lambda match: "$" if match.group(0) == "$$" else match.group("default") or "", value
        )
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw_compose)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, from either of compose's two forms."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def built_from_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if isinstance(build, str):
        return (COMPOSE_FILE.parent / build / "Dockerfile").resolve() == DOCKERFILE
    if isinstance(build, dict):
        context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
        return (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    return False


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every service that runs the sysmon-faust image (workers and tools)."""
    return {name: svc for name, svc in services.items() if built_from_dockerfile(svc)}


def worker_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the image's own command: the Faust worker."""
    return {
        name: svc
        for name, svc in app_services(services).items()
        if "entrypoint" not in svc and "command" not in svc and not svc.get("profiles")
    }


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(host port, container port) of each published port, short or long syntax."""
    result: list[tuple[str | None, int]] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published = port.get("published")
            result.append((None if published is None else str(published), int(port["target"])))
            continue
        parts = str(port).split("/", 1)[0].split(":")
        host = parts[-2] if len(parts) >= 2 else None
        result.append((host, int(parts[-1])))
    return result


def parse_listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` → {NAME: (host, port)}."""
    listeners: dict[str, tuple[str, int]] = {}
    for item in value.split(","):
        match = re.fullmatch(r"\s*([A-Za-z0-9_]+)://([^:,]*):(\d+)\s*", item)
        assert match, f"cannot read listener {item!r} in {value!r}"
        listeners[match.group(1)] = (match.group(2), int(match.group(3)))
    return listeners


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    instructions = []
    for line in lines:
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_final_stage():
        if word != "ENV":
            continue
        tokens = shlex.split(rest)
        if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


def instruction(word: str) -> list[str]:
    return [rest for found, rest in dockerfile_final_stage() if found == word]


def exec_or_shell(args: str) -> str:
    """An instruction's command as one string, from exec (JSON) or shell form."""
    if args.startswith("["):
        return " ".join(json.loads(args))
    return args


# --- compose: Kafka -----------------------------------------------------------


def test_kafka_is_the_official_image_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    kafka = services[KAFKA_SERVICE]
    image = kafka["image"]
    assert image.startswith("apache/kafka:"), image
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", image), f"pin a 4.1.x tag, not {image!r}"

    env = environment(kafka)
    roles = {role.strip() for role in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}

    # The single voter is this node, on the controller listener.
    controller_names = {name.strip() for name in env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")}
    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    controller_ports = {listeners[name][1] for name in controller_names}
    voters = [voter.strip() for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert len(voters) == 1
    node_id, _, address = voters[0].partition("@")
    host, _, port = address.rpartition(":")
    assert node_id == env["KAFKA_NODE_ID"]
    assert host in (KAFKA_SERVICE, kafka.get("hostname"), "localhost")
    assert int(port) in controller_ports

    # One node: internal topics must not ask for replicas that cannot exist.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"


def test_no_zookeeper_anywhere(compose: dict[str, Any]) -> None:
    assert "zookeeper" not in json.dumps(compose).lower()


def test_kafka_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    healthcheck = services[KAFKA_SERVICE].get("healthcheck") or {}
    assert not healthcheck.get("disable")
    test = healthcheck.get("test")
    command = " ".join(test) if isinstance(test, list) else str(test)
    assert "kafka-broker-api-versions.sh" in command
    assert "--bootstrap-server" in command


def test_kafka_listener_for_the_host_is_published(services: dict[str, dict[str, Any]]) -> None:
    kafka = services[KAFKA_SERVICE]
    env = environment(kafka)
    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    advertised = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    published = {container for _, container in published_ports(kafka)}
    host_listeners = [
        name for name, (host, _) in advertised.items() if host in ("localhost", "127.0.0.1")
    ]
    assert host_listeners, "no listener is advertised for clients on the host"
    for name in host_listeners:
        assert listeners[name][1] in published, f"{name} listener port is not published"


# --- compose: workers ---------------------------------------------------------


def test_exactly_two_workers_of_one_app(services: dict[str, dict[str, Any]]) -> None:
    workers = worker_services(services)
    assert sorted(workers) == ["worker-1", "worker-2"]
    app_ids = {environment(svc).get("SYSMON_APP_ID") for svc in workers.values()}
    assert len(app_ids) == 1 and None not in app_ids, app_ids
    partitions = {environment(svc).get("SYSMON_PARTITIONS") for svc in workers.values()}
    assert len(partitions) == 1, "workers of one app must agree on SYSMON_PARTITIONS"


def test_workers_have_distinct_published_web_ports(services: dict[str, dict[str, Any]]) -> None:
    workers = worker_services(services)
    web_ports = {}
    host_ports = []
    for name, svc in workers.items():
        settings = Settings.from_env({**dockerfile_env(), **environment(svc)})
        web_ports[name] = settings.web_port
        ports = published_ports(svc)
        matching = [host for host, container in ports if container == settings.web_port]
        assert matching, f"{name}: web port {settings.web_port} is not published ({ports})"
        host_ports.extend(matching)
        assert settings.web_host == "0.0.0.0", f"{name}: web server not reachable from outside"
    assert len(set(web_ports.values())) == len(web_ports), web_ports
    assert len(set(host_ports)) == len(host_ports), host_ports


@pytest.mark.parametrize("source", ["compose", "dockerfile"])
def test_settings_in_the_container_files_are_known_and_valid(
    raw_compose: dict[str, Any], source: str
) -> None:
    if source == "dockerfile":
        envs = {"Dockerfile": dockerfile_env()}
    else:
        raw_services = raw_compose["services"]
        envs = {name: environment(svc) for name, svc in app_services(raw_services).items()}
    assert envs
    for name, env in envs.items():
        settings_keys = {key for key in env if key.startswith(SETTING_PREFIXES)}
        unknown = settings_keys - set(ENVIRONMENT_VARIABLES)
        assert not unknown, f"{name}: not settings of sysmon_faust: {sorted(unknown)}"
        for key in settings_keys:
            assert "${" not in env[key], f"{name}: {key} depends on interpolation"
        Settings.from_env({**dockerfile_env(), **env})  # raises SettingsError if invalid


def test_workers_reach_kafka_on_a_declared_listener(services: dict[str, dict[str, Any]]) -> None:
    kafka = services[KAFKA_SERVICE]
    kafka_env = environment(kafka)
    listeners = parse_listeners(kafka_env["KAFKA_LISTENERS"])
    advertised = parse_listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    controllers = set(kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    kafka_names = {KAFKA_SERVICE, kafka.get("hostname")}

    for name, svc in app_services(services).items():
        settings = Settings.from_env({**dockerfile_env(), **environment(svc)})
        for server in settings.bootstrap_servers.split(","):
            host, _, port_text = server.rpartition(":")
            port = int(port_text)
            assert host in kafka_names, f"{name}: {server} is not the kafka service"
            # Bootstrap, then the advertised address: both must be this listener.
            matching = [
                listener
                for listener, (_, bound_port) in listeners.items()
                if bound_port == port and listener not in controllers
            ]
            assert matching, f"{name}: kafka declares no client listener on port {port}"
            for listener in matching:
                assert advertised.get(listener) == (host, port), (
                    f"{name}: listener {listener} advertises {advertised.get(listener)}, "
                    f"not {server}"
                )


def test_workers_wait_for_a_healthy_kafka(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in app_services(services).items():
        depends_on = svc.get("depends_on")
        assert isinstance(depends_on, dict), f"{name}: depends_on needs the long form"
        assert depends_on.get(KAFKA_SERVICE, {}).get("condition") == "service_healthy", name


def test_workers_keep_state_in_separate_named_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    used = []
    for name, svc in worker_services(services).items():
        data_dir = Settings.from_env({**dockerfile_env(), **environment(svc)}).data_dir
        mounts = [str(volume).split(":") for volume in svc.get("volumes") or []]
        sources = [parts[0] for parts in mounts if len(parts) >= 2 and parts[1] == str(data_dir)]
        assert sources, f"{name}: nothing is mounted on its data dir {data_dir}"
        assert sources[0] in declared, f"{name}: {sources[0]} is not a named volume"
        used.append(sources[0])
    assert len(set(used)) == len(used), used


# --- Dockerfile ---------------------------------------------------------------


def test_dockerfile_runs_the_faust_worker() -> None:
    commands = instruction("CMD") + instruction("ENTRYPOINT")
    command = " ".join(exec_or_shell(args) for args in commands)
    assert re.search(r"\bfaust -A sysmon_faust worker\b", command), command
    assert re.search(r"--web-port \W*\$\{SYSMON_WEB_PORT", command), command


def test_dockerfile_environment_for_a_container() -> None:
    env = dockerfile_env()
    assert env.get("SYSMON_WEB_HOST") == "0.0.0.0"
    assert env.get("SYSMON_DATA_DIR") == "/var/lib/sysmon-faust"
    volumes = " ".join(instruction("VOLUME"))
    assert env["SYSMON_DATA_DIR"] in volumes
    assert "6066" in " ".join(instruction("EXPOSE")).split()


def test_dockerfile_healthcheck_uses_health_endpoint() -> None:
    healthchecks = instruction("HEALTHCHECK")
    assert len(healthchecks) == 1
    check = healthchecks[0]
    assert "CMD" in check.split()
    assert "/health" in check
    assert "urllib" in check


def test_dockerfile_runs_as_non_root_user() -> None:
    users = instruction("USER")
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0"), users


def test_dockerfile_builds_from_python_311_slim() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "python:3.11-slim" in text


def test_dockerignore_keeps_local_state_out_but_not_the_package() -> None:
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".venv", ".git", "kafka/lib", "data", ".demo", "bench/results", ".kafka"):
        assert any(fnmatch.fnmatch(excluded, pattern) for pattern in patterns), excluded
    for needed in ("pyproject.toml", "sysmon_faust", "sysmon_faust/stream/topology.py"):
        hits = [pattern for pattern in patterns if fnmatch.fnmatch(needed, pattern)]
        assert not hits, f"{needed} is excluded by {hits}"


# --- the docker client, when it has compose -----------------------------------


def _dev_tool(name: str) -> str:
    tool = Path(sys.executable).parent / name
    assert tool.exists(), f"{name} is a dev dependency: run 'make install'"
    return str(tool)


def test_compose_file_matches_the_compose_specification() -> None:
    # No Docker engine (and no compose plugin) here: the compose-spec JSON
    # schema, vendored by check-jsonschema, stands in for `docker compose config`.
    result = subprocess.run(
        [_dev_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_dev_tool("hadolint"), str(ROOT / "docker" / "Dockerfile")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_workers_are_static_members_with_ids_of_their_own(
    services: dict[str, dict[str, Any]],
) -> None:
    # Two workers with one SYSMON_GROUP_INSTANCE_ID: the second is refused.
    ids = [
        environment(svc).get("SYSMON_GROUP_INSTANCE_ID")
        for svc in worker_services(services).values()
    ]
    assert all(ids) and len(set(ids)) == len(ids), ids
