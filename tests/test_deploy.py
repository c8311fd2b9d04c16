"""Every deployment path in deploy/ checked by the tool that would run it.

No Docker engine or Kubernetes cluster runs here, so each path is checked as far as
its own tooling allows: hadolint and a replay of the image's build and runtime
conditions for the container, the compose specification schema and promtool for
the demo stack, systemd-analyze for the unit, kustomize and the Kubernetes schemas
for the manifests, and the exporter's own --check-config for every example config.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from oms_exporter import __version__
from oms_exporter.httpserver import limits_for
from oms_exporter.simulator.scenario import demo_projects
from tests.deploy_support import (
    DEFAULT_PORT,
    DEPLOY,
    REPO,
    RULES_FILE,
    DockerIgnore,
    Instruction,
    alerted_job_names,
    bind_mounts,
    build_context_files,
    command_words,
    copy_sources,
    dockerfile_instructions,
    env_file,
    free_port,
    handed_over,
    healthcheck_command,
    instruction_words,
    load_yaml,
    load_yaml_documents,
    option_value,
    require_tool,
    runnable_by_anyone,
    unit_entries,
    with_option,
    world_traversable_dir,
)
from tests.processes import stop

DOCKERFILE = REPO / "Dockerfile"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
UNIT_FILE = DEPLOY / "systemd" / "oms-exporter.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "oms-exporter.env.example"
KUSTOMIZE_DIR = DEPLOY / "kubernetes"
SHARDED_DIR = KUSTOMIZE_DIR / "sharded"
SECRET_EXAMPLE = KUSTOMIZE_DIR / "secret.example.yaml"
# The Prometheus Operator's CRDs: no schema in kubernetes-validate, checked by hand below.
OPERATOR_API_GROUP = "monitoring.coreos.com/"
# Exposure as systemd-analyze prints it, times ten: 11 means "1.1 or better". Keep it at
# the unit's current score so that any loosened directive fails here.
SYSTEMD_EXPOSURE_THRESHOLD = 11
TOOL_TIMEOUT_SECONDS = 120
START_TIMEOUT_SECONDS = 30


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False, **kwargs
    )


def http_get(url: str) -> tuple[int, str]:
    """Return the status and body of a GET, 4xx and 5xx included."""
    try:
        # Only http://127.0.0.1 URLs the tests build themselves.
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


# --- container -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE)


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(inst.stage for inst in instructions)
    return [inst for inst in instructions if inst.stage == last]


def image_user(instructions: list[Instruction]) -> tuple[int, int]:
    """Return the final stage's USER as numbers, failing on a name."""
    users = [i.args for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, "the image runs as root: it has no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"USER {users[-1]}: not numeric"
    assert gid.isdigit(), f"USER {users[-1]}: no numeric group"
    return int(uid), int(gid)


def test_dockerfile_has_no_hadolint_finding() -> None:
    hadolint = require_tool("hadolint")
    strict = ["--disable-ignore-pragma", "--failure-threshold=style", "--format=json"]
    result = run([hadolint, *strict, str(DOCKERFILE)])
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_image_is_built_in_two_stages_on_python_slim(instructions: list[Instruction]) -> None:
    froms = [instruction_words(i.args) for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "the build stage keeps pip and the sources out of the image"
    assert froms[-1][0] == "python:3.12-slim"
    build_stage = froms[0][-1]
    copies = [i.args for i in final_stage(instructions) if i.keyword == "COPY"]
    assert any(f"--from={build_stage}" in args for args in copies), copies


def test_image_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    # A numeric uid lets Kubernetes' runAsNonRoot verify it without a passwd entry.
    uid, gid = image_user(instructions)
    assert uid != 0
    assert gid != 0


def test_image_exposes_the_default_port_and_starts_the_exporter(
    instructions: list[Instruction],
) -> None:
    stage = final_stage(instructions)
    assert [i.args for i in stage if i.keyword == "EXPOSE"] == [str(DEFAULT_PORT)]
    entrypoints = [instruction_words(i.args) for i in stage if i.keyword == "ENTRYPOINT"]
    assert entrypoints[-1] == ["oms-exporter"]


def test_build_context_holds_every_file_the_dockerfile_copies(
    instructions: list[Instruction],
) -> None:
    ignore = DockerIgnore(REPO / ".dockerignore")
    sources = copy_sources(instructions)
    assert sources, "the Dockerfile copies nothing from the build context"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignore.excludes(source), f"COPY {source}: excluded by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "tests/test_deploy.py",
        "deploy/compose/oms-password.txt",
        "oms_exporter/__pycache__/cli.cpython-312.pyc",
        "secret.env",
    ],
)
def test_build_context_leaves_out_what_the_image_does_not_need(path: str) -> None:
    assert DockerIgnore(REPO / ".dockerignore").excludes(path)


@pytest.fixture(scope="module")
def image_venv() -> Iterator[Path]:
    """Replay the build stage: the .dockerignore'd context, `python -m venv`, `pip install .`.

    The image's unprivileged user must be able to run it, so neither the checkout's .venv
    nor the interpreter behind it (perhaps under /root) will do: the virtualenv is made
    from a system python3 that any uid can run, in a directory under /tmp that any uid can
    enter (as /opt/oms-exporter is in the image), with umask 022 whatever the caller's.
    """
    found = [
        shutil.which("python3", path=directory) for directory in ("/usr/bin", "/usr/local/bin")
    ]
    python = next((p for p in found if p is not None and runnable_by_anyone(Path(p))), None)
    if python is None:
        pytest.fail(
            "no python3 in /usr/bin or /usr/local/bin that the image's uid can run, "
            "to replay the image build (Debian packages python3 and python3-venv)"
        )
    ignore = DockerIgnore(REPO / ".dockerignore")
    with world_traversable_dir("oms-exporter-image-") as root:
        context = root / "context"
        for relative in build_context_files(REPO, ignore):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, context / relative)
        venv = root / "opt" / "oms-exporter"
        created = run([python, "-m", "venv", str(venv)], umask=0o022)
        assert created.returncode == 0, created.stderr
        installed = run(
            [str(venv / "bin" / "pip"), "install", "--no-cache-dir", "--quiet", str(context)],
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            umask=0o022,
        )
        assert installed.returncode == 0, (
            f"pip install of the build context:\n{installed.stderr[-3000:]}"
        )
        yield venv


def test_build_stage_installs_the_console_script(image_venv: Path) -> None:
    script = image_venv / "bin" / "oms-exporter"
    assert script.is_file()
    version = run([str(script), "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("oms-exporter ")


def sandboxed(command: list[str], *, uid: int, gid: int) -> list[str]:
    """Run `command` as the image does: the root filesystem read-only, a non-root uid."""
    if os.geteuid() != 0:
        pytest.fail("the read-only-root check needs root (for a mount namespace): run as CI does")
    unshare, setpriv = require_tool("unshare"), require_tool("setpriv")
    script = (
        "mount --bind / / && mount -o remount,bind,ro / && "
        f'exec {setpriv} --reuid={uid} --regid={gid} --clear-groups -- "$@"'
    )
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


@contextlib.contextmanager
def serving(
    command: list[str], *, env: dict[str, str], ready_url: str, log: Path
) -> Iterator[None]:
    """Run a server until the block ends, once `ready_url` answers 200; show its log if not.

    It runs in /, the image's working directory: the checkout may be closed to its uid.
    """
    with log.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            command, cwd="/", env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if http_get(ready_url)[0] == 200:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(
                f"{ready_url} did not answer 200 within {START_TIMEOUT_SECONDS} s "
                f"(exit status {process.poll()}); {log.name}:\n{log.read_text()}"
            )
        yield
    finally:
        stop(process)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return document


@pytest.fixture(scope="module")
def demo_exporter(
    image_venv: Path,
    instructions: list[Instruction],
    compose: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """Run the compose demo's simulator and exporter from the replayed image, as its user,
    with the root filesystem read-only; return the exporter's base URL.

    The password secret is a copy in a directory that uid can enter, as compose mounts it
    at /run/secrets: the checkout's deploy/compose/oms-password.txt may be out of its reach.
    """
    uid, gid = image_user(instructions)
    logs = tmp_path_factory.mktemp("demo-logs")
    services = compose["services"]
    image_env = {"PATH": f"{image_venv / 'bin'}:/usr/bin:/bin", "HOME": "/nonexistent"}
    sim_port, exporter_port = free_port(), free_port()
    sim_command = with_option(command_words(services["simulator"]), "--host", "127.0.0.1")
    sim_command = with_option(sim_command, "--port", str(sim_port))
    mounted = services["exporter"]["environment"]["OMS_EXPORTER_OMS_PASSWORD_FILE"]
    with world_traversable_dir("oms-exporter-secrets-") as secrets_root:
        secret = compose_secret_file(compose, "oms-password")
        password_file = handed_over(secret, secrets_root, mounted.lstrip("/"))
        exporter_env = {
            **services["exporter"]["environment"],
            "OMS_EXPORTER_OMS_URL": f"http://127.0.0.1:{sim_port}",
            "OMS_EXPORTER_OMS_PASSWORD_FILE": str(password_file),
            "OMS_EXPORTER_LISTEN_ADDRESS": f"127.0.0.1:{exporter_port}",
        }
        with (
            serving(
                sandboxed(["oms-exporter", *sim_command], uid=uid, gid=gid),
                env=image_env,
                ready_url=f"http://127.0.0.1:{sim_port}/oms/health",
                log=logs / "simulator.log",
            ),
            serving(
                sandboxed(["oms-exporter"], uid=uid, gid=gid),
                env={**image_env, **exporter_env},
                ready_url=f"http://127.0.0.1:{exporter_port}/readyz",
                log=logs / "exporter.log",
            ),
        ):
            yield f"http://127.0.0.1:{exporter_port}"


def compose_secret_file(compose: dict[str, Any], name: str) -> Path:
    return (COMPOSE_DIR / str(compose["secrets"][name]["file"])).resolve()


def test_image_serves_every_demo_project_as_non_root_on_a_read_only_root(
    demo_exporter: str, compose: dict[str, Any]
) -> None:
    status, body = http_get(f"{demo_exporter}/metrics")
    assert status == 200
    up = {
        sample.labels["project_id"]: sample.value
        for family in text_string_to_metric_families(body)
        if family.name == "oms_project_up"
        for sample in family.samples
    }
    wanted = compose["services"]["exporter"]["environment"]["OMS_EXPORTER_PROJECT_IDS"]
    assert up == dict.fromkeys(wanted.split(","), 1.0)


def run_healthcheck(
    instructions: list[Instruction], *, listen_address: str, bin_dir: Path
) -> subprocess.CompletedProcess[str]:
    """Run the HEALTHCHECK command with `python` found where the image's PATH finds it."""
    command = healthcheck_command(instructions)
    assert command[0] == "python"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OMS_EXPORTER_LISTEN_ADDRESS": listen_address}
    return run(command, env=env)


def test_healthcheck_passes_against_the_running_exporter(
    demo_exporter: str, instructions: list[Instruction], image_venv: Path
) -> None:
    listen_address = demo_exporter.removeprefix("http://")
    result = run_healthcheck(
        instructions, listen_address=listen_address, bin_dir=image_venv / "bin"
    )
    assert result.returncode == 0, result.stderr


class _Unhealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Keep test output clean."""


@pytest.fixture
def unhealthy_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unhealthy)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    thread.join()
    server.server_close()


def test_healthcheck_fails_when_healthz_answers_503(
    unhealthy_port: int, instructions: list[Instruction], image_venv: Path
) -> None:
    result = run_healthcheck(
        instructions, listen_address=f":{unhealthy_port}", bin_dir=image_venv / "bin"
    )
    assert result.returncode != 0
    assert "503" in result.stderr


def test_healthcheck_fails_when_nothing_listens(
    instructions: list[Instruction], image_venv: Path
) -> None:
    result = run_healthcheck(
        instructions, listen_address=f":{free_port()}", bin_dir=image_venv / "bin"
    )
    assert result.returncode != 0
    assert "Connection refused" in result.stderr


# --- compose demo stack --------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    check_jsonschema = require_tool("check-jsonschema")
    result = run([check_jsonschema, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_publishes_ports_on_loopback_only(compose: dict[str, Any]) -> None:
    published = [
        (name, str(port))
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]
    assert published
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_compose_mounts_only_paths_that_exist(compose: dict[str, Any]) -> None:
    missing = [
        f"{name}: {mount.source.relative_to(REPO)}"
        for name, service in compose["services"].items()
        for mount in bind_mounts(service, COMPOSE_DIR)
        if not mount.source.exists()
    ]
    missing += [
        f"secret {name}: {secret['file']}"
        for name, secret in compose.get("secrets", {}).items()
        if not (COMPOSE_DIR / secret["file"]).is_file()
    ]
    for name, service in compose["services"].items():
        if "build" in service:
            context = COMPOSE_DIR / service["build"]["context"]
            if not (context / service["build"].get("dockerfile", "Dockerfile")).is_file():
                missing.append(f"{name}: build context {context} has no Dockerfile")
    assert missing == []


def test_compose_runs_exporter_and_simulator_hardened(compose: dict[str, Any]) -> None:
    for name in ("exporter", "simulator"):
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_compose_prometheus_config_passes_promtool_as_mounted(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    promtool = require_tool("promtool")
    prometheus = compose["services"]["prometheus"]
    for mount in bind_mounts(prometheus, COMPOSE_DIR):
        if mount.target.startswith("/etc/prometheus/"):
            copy = tmp_path / mount.target.lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(mount.source, copy)
    config = tmp_path / option_value(command_words(prometheus), "--config.file").lstrip("/")
    result = run([promtool, "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_compose_prometheus_scrapes_the_exporter_under_the_alerted_job(
    compose: dict[str, Any],
) -> None:
    config = load_yaml(COMPOSE_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (job_name,) = alerted_job_names()
    targets = [t for sc in jobs[job_name]["static_configs"] for t in sc["targets"]]
    assert targets == [f"exporter:{DEFAULT_PORT}"]
    assert "OMS_EXPORTER_LISTEN_ADDRESS" not in compose["services"]["exporter"]["environment"]
    alertmanagers = [
        target
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for target in sc["targets"]
    ]
    assert alertmanagers == ["alertmanager:9093"]
    assert "alertmanager" in compose["services"]


def test_compose_grafana_mounts_dashboards_where_provisioning_looks(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    targets = {m.source: m.target for m in bind_mounts(grafana, COMPOSE_DIR)}
    provisioning = (REPO / "grafana" / "provisioning").resolve()
    assert targets[provisioning / "dashboards"] == "/etc/grafana/provisioning/dashboards"
    providers = load_yaml(provisioning / "dashboards" / "oms.yml")["providers"]
    dashboards_dir = targets[(REPO / "grafana" / "dashboards").resolve()]
    assert [provider["options"]["path"] for provider in providers] == [dashboards_dir]


def test_compose_grafana_datasource_is_the_shared_one_pointed_at_the_prometheus_service(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    (mounted,) = [
        m.source
        for m in bind_mounts(grafana, COMPOSE_DIR)
        if m.target.startswith("/etc/grafana/provisioning/datasources/")
    ]
    shared = load_yaml(REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    stack = load_yaml(mounted)
    (source,) = stack["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    for document in (shared, stack):
        for datasource in document["datasources"]:
            datasource.pop("url")
    assert stack == shared


def test_compose_demo_watches_every_simulated_project_with_its_credentials(
    compose: dict[str, Any],
) -> None:
    simulator = command_words(compose["services"]["simulator"])
    env = compose["services"]["exporter"]["environment"]
    assert option_value(simulator, "--scenario") == "demo"
    assert env["OMS_EXPORTER_PROJECT_IDS"].split(",") == [p.id for p in demo_projects()]
    assert env["OMS_EXPORTER_OMS_USERNAME"] == option_value(simulator, "--username")
    password = compose_secret_file(compose, "oms-password").read_text(encoding="utf-8")
    assert password.strip() == option_value(simulator, "--password")
    assert env["OMS_EXPORTER_OMS_PASSWORD_FILE"] == "/run/secrets/oms-password"
    assert env["OMS_EXPORTER_API"] == option_value(simulator, "--api")


# --- systemd -------------------------------------------------------------------------------


def test_systemd_unit_passes_the_security_review_at_a_strict_threshold() -> None:
    analyze = require_tool("systemd-analyze")
    threshold = f"--threshold={SYSTEMD_EXPOSURE_THRESHOLD}"
    result = run([analyze, "security", "--offline=yes", threshold, "--no-pager", str(UNIT_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overall exposure level for oms-exporter.service" in result.stdout


def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    """Verify in a scratch root holding the distribution's units and the ExecStart path.

    Offline, `systemd-analyze verify` needs the units the service refers to and an
    executable at ExecStart. It exits 0 on an unknown key or a bad value, only printing
    them (with --root, only at log level info, set here): so any output fails the test.
    """
    analyze = require_tool("systemd-analyze")
    system_units = Path("/usr/lib/systemd/system")
    if not (system_units / "multi-user.target").is_file():
        pytest.fail("systemd's units are not installed (Debian package systemd): run `make test`")
    shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT_FILE, tmp_path / "etc/systemd/system" / UNIT_FILE.name)
    exec_start = next(v for _, k, v in unit_entries(UNIT_FILE) if k == "ExecStart").split()[0]
    binary = tmp_path / exec_start.lstrip("-@+!:").lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n", encoding="utf-8")
    binary.chmod(0o755)
    result = run(
        [analyze, "verify", f"--root={tmp_path}", "--man=no", UNIT_FILE.name],
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "info"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_unit_sets_the_promised_sandbox() -> None:
    entries = {(key, value) for _, key, value in unit_entries(UNIT_FILE)}
    for promised in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
    ]:
        assert promised in entries, f"{promised[0]}={promised[1]} is missing"


def test_systemd_unit_sets_a_file_limit_that_leaves_room_for_many_connections() -> None:
    """systemd's default soft limit (1024) is what idle connections once used up."""
    entries = [(section, v) for section, k, v in unit_entries(UNIT_FILE) if k == "LimitNOFILE"]
    assert len(entries) == 1, "LimitNOFILE= must be set once"
    ((section, value),) = entries
    assert section == "Service"
    assert value.isdigit(), f"LimitNOFILE={value}: one number sets soft and hard"
    files = int(value)
    assert files >= 8192
    # The exporter's own cap under that limit: thousands of connections, files to spare.
    assert limits_for(files).max_connections >= 4096
    assert limits_for(files).max_connections <= files - 64 - files // 10


def test_systemd_unit_hands_the_password_over_as_a_credential() -> None:
    entries = unit_entries(UNIT_FILE)
    credentials = [v.partition(":")[0] for _, k, v in entries if k == "LoadCredential"]
    environment = [v for _, k, v in entries if k == "Environment"]
    assert [f"OMS_EXPORTER_OMS_PASSWORD_FILE=%d/{name}" for name in credentials] == environment
    assert "OMS_EXPORTER_OMS_PASSWORD" not in env_file(ENV_EXAMPLE)
    assert "OMS_EXPORTER_OMS_PASSWORD_FILE" not in env_file(ENV_EXAMPLE)


# --- Kubernetes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl")
    result = run([kubectl, "kustomize", str(KUSTOMIZE_DIR)])
    assert result.returncode == 0, result.stderr
    return load_yaml_documents(result.stdout)


def one(rendered: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (resource,) = [r for r in rendered if r["kind"] == kind]
    return resource


def test_kustomization_renders_the_exporter_resources_into_one_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    kinds = sorted(resource["kind"] for resource in rendered)
    assert kinds == ["ConfigMap", "Deployment", "PrometheusRule", "Service", "ServiceMonitor"]
    namespaces = {resource["metadata"].get("namespace") for resource in rendered}
    assert namespaces == {load_yaml(SECRET_EXAMPLE)["metadata"]["namespace"]}


def assert_core_resources_validate(
    resources: list[dict[str, Any]], kubernetes_version: str, tmp_path: Path
) -> None:
    """kubernetes-validate --strict on every core kind (the operator's CRDs have no schema)."""
    validate = require_tool("kubernetes-validate")
    core = [r for r in resources if not r["apiVersion"].startswith(OPERATOR_API_GROUP)]
    manifest = tmp_path / "core.yaml"
    manifest.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    version = [] if kubernetes_version == "latest" else ["-k", kubernetes_version]
    result = run([validate, "--strict", *version, str(manifest)])
    assert result.returncode == 0, result.stdout + result.stderr
    for resource in core:
        kind, name = resource["kind"].lower(), resource["metadata"]["name"]
        assert f"passed for resource {kind}/{name}" in result.stdout + result.stderr


@pytest.mark.parametrize("kubernetes_version", ["1.28.0", "latest"])
def test_core_resources_pass_strict_schema_validation(
    rendered: list[dict[str, Any]], kubernetes_version: str, tmp_path: Path
) -> None:
    resources = [*rendered, load_yaml(SECRET_EXAMPLE)]
    assert_core_resources_validate(resources, kubernetes_version, tmp_path)


def test_deployment_runs_one_hardened_non_root_replica(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] == image_user(dockerfile_instructions(DOCKERFILE))[0]
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_deployment_probes_liveness_and_readiness_on_the_metrics_port(
    rendered: list[dict[str, Any]],
) -> None:
    (container,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": DEFAULT_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_deployment_requests_modest_resources_with_a_memory_limit(
    rendered: list[dict[str, Any]],
) -> None:
    (container,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_deployment_reads_the_credentials_the_secret_example_defines(
    rendered: list[dict[str, Any]],
) -> None:
    secret = load_yaml(SECRET_EXAMPLE)
    name, keys = secret["metadata"]["name"], set(secret["stringData"])
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    refs = [
        env["valueFrom"]["secretKeyRef"]
        for env in container["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    ]
    volumes = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert refs
    assert volumes
    assert {ref["name"] for ref in refs} | {v["secretName"] for v in volumes} == {name}
    assert {ref["key"] for ref in refs} | {i["key"] for v in volumes for i in v["items"]} == keys


def test_service_and_servicemonitor_reach_the_exporter_pods(
    rendered: list[dict[str, Any]],
) -> None:
    deployment, service = one(rendered, "Deployment"), one(rendered, "Service")
    monitor = one(rendered, "ServiceMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container_ports = {port["name"] for port in container["ports"]}
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= service_ports


def test_servicemonitor_job_is_the_job_the_rules_alert_on(rendered: list[dict[str, Any]]) -> None:
    monitor, service = one(rendered, "ServiceMonitor"), one(rendered, "Service")
    # The operator names the job after the Service, or after the Service label jobLabel names.
    job_label = monitor["spec"].get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    assert alerted_job_names() == {job}


_DURATION = r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$"


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", duration))


def test_servicemonitor_has_the_operator_structure(rendered: list[dict[str, Any]]) -> None:
    monitor = one(rendered, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "jobLabel", "namespaceSelector"}
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["path"] == "/metrics"
        assert re.match(_DURATION, endpoint["interval"])
        assert re.match(_DURATION, endpoint["scrapeTimeout"])
        assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])


def test_prometheusrule_has_the_operator_structure(rendered: list[dict[str, Any]]) -> None:
    rule = one(rendered, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    group_keys = {"name", "interval", "rules", "limit", "partial_response_strategy"}
    rule_keys = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    for group in rule["spec"]["groups"]:
        assert set(group) <= group_keys, group["name"]
        assert group["rules"], group["name"]
        for entry in group["rules"]:
            assert set(entry) <= rule_keys, entry
            assert ("record" in entry) != ("alert" in entry), entry
            assert isinstance(entry["expr"], str), entry
            for mapping in (entry.get("labels", {}), entry.get("annotations", {})):
                assert all(isinstance(v, str) for v in mapping.values()), entry


def test_prometheusrule_carries_exactly_the_rules_file_groups(
    rendered: list[dict[str, Any]],
) -> None:
    assert one(rendered, "PrometheusRule")["spec"]["groups"] == load_yaml(RULES_FILE)["groups"]
    generator = KUSTOMIZE_DIR / "gen_prometheusrule.py"
    result = run([sys.executable, str(generator), "--check"])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("directory", [KUSTOMIZE_DIR, SHARDED_DIR], ids=["single", "sharded"])
def test_kustomize_image_tag_is_the_package_version(directory: Path) -> None:
    (image,) = load_yaml(directory / "kustomization.yaml")["images"]
    assert image["newTag"] == __version__


# --- Kubernetes, sharded: a StatefulSet of N replicas, each polling 1/N of the projects ----


SHARD_ENV = {"OMS_EXPORTER_SHARD_COUNT", "POD_NAME"}


@pytest.fixture(scope="module")
def sharded() -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl")
    result = run([kubectl, "kustomize", str(SHARDED_DIR)])
    assert result.returncode == 0, result.stderr
    return load_yaml_documents(result.stdout)


def container_env(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry for entry in container["env"]}


def test_sharded_kustomization_renders_a_statefulset_into_the_same_namespace(
    sharded: list[dict[str, Any]],
) -> None:
    kinds = sorted(resource["kind"] for resource in sharded)
    assert kinds == ["ConfigMap", "PrometheusRule", "Service", "ServiceMonitor", "StatefulSet"]
    namespaces = {resource["metadata"].get("namespace") for resource in sharded}
    assert namespaces == {load_yaml(SECRET_EXAMPLE)["metadata"]["namespace"]}


@pytest.mark.parametrize("kubernetes_version", ["1.28.0", "latest"])
def test_sharded_core_resources_pass_strict_schema_validation(
    sharded: list[dict[str, Any]], kubernetes_version: str, tmp_path: Path
) -> None:
    assert_core_resources_validate(sharded, kubernetes_version, tmp_path)


def test_statefulset_wires_the_shard_count_to_its_replicas_and_the_ordinal_to_pod_name(
    sharded: list[dict[str, Any]],
) -> None:
    statefulset = one(sharded, "StatefulSet")
    replicas = statefulset["spec"]["replicas"]
    assert replicas > 1
    env = container_env(statefulset)
    assert env["OMS_EXPORTER_SHARD_COUNT"]["value"] == str(replicas)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The index must come from the pod name: one fixed index would give every pod the same.
    assert "OMS_EXPORTER_SHARD_INDEX" not in env
    assert "OMS_EXPORTER_SHARD_INDEX" not in one(sharded, "ConfigMap")["data"]
    assert "OMS_EXPORTER_SHARD_COUNT" not in one(sharded, "ConfigMap")["data"]


def test_statefulset_pods_are_the_deployments_but_for_the_shard_env(
    sharded: list[dict[str, Any]], rendered: list[dict[str, Any]]
) -> None:
    """Same image, hardening, probes, resources, credentials and settings as deployment.yaml."""
    statefulset, deployment = one(sharded, "StatefulSet"), one(rendered, "Deployment")
    template = json.loads(json.dumps(statefulset["spec"]["template"]))
    (container,) = template["spec"]["containers"]
    container["env"] = [e for e in container["env"] if e["name"] not in SHARD_ENV]
    assert template == deployment["spec"]["template"]
    assert statefulset["spec"]["selector"] == deployment["spec"]["selector"]
    assert one(sharded, "ConfigMap") == one(rendered, "ConfigMap")


def test_sharded_service_is_headless_and_governs_the_statefulset(
    sharded: list[dict[str, Any]],
) -> None:
    statefulset, service = one(sharded, "StatefulSet"), one(sharded, "Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    container_ports = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports


def test_sharded_servicemonitor_scrapes_every_pod_under_the_alerted_job(
    sharded: list[dict[str, Any]], rendered: list[dict[str, Any]]
) -> None:
    # The operator turns each endpoint of the selected Service into a target: every pod.
    monitor, service = one(sharded, "ServiceMonitor"), one(sharded, "Service")
    assert monitor == one(rendered, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
        port["name"] for port in service["spec"]["ports"]
    }
    job_label = monitor["spec"].get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    assert alerted_job_names() == {job}


def test_sharded_prometheusrule_is_the_generated_one(
    sharded: list[dict[str, Any]], rendered: list[dict[str, Any]]
) -> None:
    assert one(sharded, "PrometheusRule") == one(rendered, "PrometheusRule")
    generated = (KUSTOMIZE_DIR / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert (SHARDED_DIR / "prometheusrule.yaml").read_text(encoding="utf-8") == generated


def sharded_pod_env(
    sharded: list[dict[str, Any]], password_file: Path, ordinal: int
) -> dict[str, str]:
    """What pod `<statefulset>-<ordinal>` gets: the ConfigMap, its env, the downward API."""
    statefulset = one(sharded, "StatefulSet")
    secret = load_yaml(SECRET_EXAMPLE)["stringData"]
    env = dict(one(sharded, "ConfigMap")["data"])
    for name, entry in container_env(statefulset).items():
        if "value" in entry:
            env[name] = entry["value"]
        elif "fieldRef" in entry["valueFrom"]:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[name] = f"{statefulset['metadata']['name']}-{ordinal}"
        else:
            env[name] = secret[entry["valueFrom"]["secretKeyRef"]["key"]]
    env["OMS_EXPORTER_OMS_PASSWORD_FILE"] = str(password_file)
    return env


def test_every_statefulset_pod_gets_a_shard_the_exporter_accepts(
    sharded: list[dict[str, Any]], tmp_path: Path
) -> None:
    password_file = tmp_path / "oms-password"
    password_file.write_text("secret\n", encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    clean.pop("POD_NAME", None)
    check = [sys.executable, "-m", "oms_exporter", "--check-config"]
    replicas = one(sharded, "StatefulSet")["spec"]["replicas"]
    for ordinal in range(replicas):
        env = sharded_pod_env(sharded, password_file, ordinal)
        accepted = run(check, env={**clean, **env})
        assert accepted.returncode == 0, f"pod {ordinal}: {accepted.stderr}"
    # A pod beyond the shard count (replicas raised, the count not) is refused, naming it.
    env = sharded_pod_env(sharded, password_file, replicas)
    rejected = run(check, env={**clean, **env})
    assert rejected.returncode == 2, rejected.stderr
    assert "shard" in rejected.stderr


# --- every example configuration is one the exporter accepts -------------------------------


def systemd_example_env(password_file: Path, _rendered: list[dict[str, Any]]) -> dict[str, str]:
    """The env file plus the unit's Environment=, the credential copied as systemd does."""
    entries = unit_entries(UNIT_FILE)
    credentials_dir = password_file.parent / "credentials"  # what %d names
    credentials_dir.mkdir()
    for value in (v for _, k, v in entries if k == "LoadCredential"):
        shutil.copy(password_file, credentials_dir / value.partition(":")[0])
    env = env_file(ENV_EXAMPLE)
    for value in (v for _, k, v in entries if k == "Environment"):
        name, _, setting = value.partition("=")
        env[name] = setting.replace("%d", str(credentials_dir))
    return env


def compose_example_env(password_file: Path, _rendered: list[dict[str, Any]]) -> dict[str, str]:
    env = dict(load_yaml(COMPOSE_FILE)["services"]["exporter"]["environment"])
    env["OMS_EXPORTER_OMS_PASSWORD_FILE"] = str(password_file)
    return env


def kubernetes_example_env(password_file: Path, resources: list[dict[str, Any]]) -> dict[str, str]:
    secret = load_yaml(SECRET_EXAMPLE)["stringData"]
    env = dict(one(resources, "ConfigMap")["data"])
    (container,) = one(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            env[entry["name"]] = secret[entry["valueFrom"]["secretKeyRef"]["key"]]
    env["OMS_EXPORTER_OMS_PASSWORD_FILE"] = str(password_file)
    return env


@pytest.mark.parametrize(
    "example", [systemd_example_env, compose_example_env, kubernetes_example_env]
)
def test_example_configuration_passes_check_config(
    example: Any, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    password_file = tmp_path / "oms-password"
    password_file.write_text("secret\n", encoding="utf-8")
    env = example(password_file, rendered)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    check = [sys.executable, "-m", "oms_exporter", "--check-config"]
    accepted = run(check, env={**clean, **env})
    assert accepted.returncode == 0, accepted.stderr
    # The same without the URL must fail: the check reads the configuration given here.
    del env["OMS_EXPORTER_OMS_URL"]
    rejected = run(check, env={**clean, **env})
    assert rejected.returncode == 2, rejected.stderr


# --- documentation -------------------------------------------------------------------------


def test_deploy_doc_has_a_section_per_path_naming_only_existing_files() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", doc, flags=re.MULTILINE)
    for path in ("Container", "Compose", "systemd", "Kubernetes"):
        assert any(path in heading for heading in headings), f"no section for {path}"
    named = set(re.findall(r"\b((?:deploy|grafana|docs)/[\w./-]*\w)", doc))
    assert named
    assert sorted(p for p in named if not (REPO / p).exists()) == []
