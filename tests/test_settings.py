"""Configuration: sources and precedence, and one clear line (exit 2) for every mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oms_exporter import __version__
from oms_exporter.settings import ConfigError, load_settings

SECRET = "pa55-w0rd-never-shown"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OMS_EXPORTER_"):
            monkeypatch.delenv(name)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    return subprocess.run(
        [sys.executable, "-m", "oms_exporter", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_defaults_and_required_values(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMS_EXPORTER_OMS_URL", "http://oms.example:8089/")
    monkeypatch.setenv("OMS_EXPORTER_PROJECT_IDS", "np_a, np_b,,np_a")
    settings = load_settings({})
    assert settings.oms_url == "http://oms.example:8089"
    assert settings.project_ids == ["np_a", "np_b"]
    assert settings.api == "auto"
    assert (settings.poll_interval, settings.request_timeout, settings.max_concurrency) == (
        30,
        10,
        8,
    )
    assert settings.listen_address == ":18089"
    assert settings.oms_label == "oms.example:8089"
    assert settings.stale_after_seconds == 90
    assert settings.tls_insecure_skip_verify is False


def test_flags_beat_environment_beats_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "oms.yml"
    config.write_text(
        "oms_url: https://yaml.example\nproject_ids: [y1, y2]\npoll_interval: 11\n"
        "request_timeout: 7\napi: v3-sync\n"
    )
    monkeypatch.setenv("OMS_EXPORTER_POLL_INTERVAL", "12")
    monkeypatch.setenv("OMS_EXPORTER_API", "v4")
    settings = load_settings({"api": "v3-migration"}, config)
    assert settings.oms_url == "https://yaml.example"
    assert settings.oms_label == "yaml.example:443"
    assert settings.project_ids == ["y1", "y2"]
    assert settings.request_timeout == 7  # only in YAML
    assert settings.poll_interval == 12  # env beats YAML
    assert settings.api == "v3-migration"  # flag beats env


def test_password_file_is_read_and_trimmed(tmp_path: Path):
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    settings = load_settings(
        {"oms_url": "http://o:8089", "project_ids": "p", "oms_password_file": str(secret)}
    )
    assert settings.oms_targets()[0].read_password() == SECRET
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"project_ids": "p"}, "oms_url (OMS_EXPORTER_OMS_URL, --oms-url) is required"),
        ({"oms_url": "ftp://x", "project_ids": "p"}, "oms_url"),
        ({"oms_url": "http://u:pw@x", "project_ids": "p"}, "must not carry credentials"),
        ({"oms_url": "http://x", "discovery": "false"}, "project_ids (OMS_EXPORTER_PROJECT_IDS"),
        ({"oms_url": "http://x", "api": "v3-sync"}, "discovery needs OMS 4.x"),
        ({"oms_url": "http://x", "shard_count": "2", "shard_index": "2"}, "shard_index"),
        ({"oms_url": "http://x", "discovery_interval": "0"}, "discovery_interval"),
        ({"oms_url": "http://x", "project_ids": "p", "poll_interval": "0"}, "poll_interval"),
        ({"oms_url": "http://x", "project_ids": "p", "poll_interval": "soon"}, "poll_interval"),
        ({"oms_url": "http://x", "project_ids": "p", "api": "v5"}, "api (OMS_EXPORTER_API"),
        ({"oms_url": "http://x", "project_ids": "p", "max_concurrency": "0"}, "max_concurrency"),
        ({"oms_url": "http://x", "project_ids": "p", "listen_address": "nope"}, "listen_address"),
        ({"oms_url": "http://x", "project_ids": "p", "tls_ca_file": "/no/such"}, "tls_ca_file"),
        (
            {"oms_url": "http://x", "project_ids": "p", "oms_password_file": "/no/such"},
            "oms_password_file",
        ),
    ],
)
def test_invalid_settings_name_the_setting(values: dict[str, str], fragment: str):
    with pytest.raises(ConfigError) as caught:
        load_settings(values)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_yaml_key_and_broken_yaml(tmp_path: Path):
    typo = tmp_path / "typo.yml"
    typo.write_text("oms_url: http://x\nproject_ids: p\npoll_intervall: 5\n")
    with pytest.raises(ConfigError, match="unknown setting 'poll_intervall'"):
        load_settings({}, typo)
    broken = tmp_path / "broken.yml"
    broken.write_text("oms_url: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings({}, broken)
    with pytest.raises(ConfigError, match="not a readable file"):
        load_settings({}, tmp_path / "missing.yml")


def test_cli_invalid_config_exits_2_with_one_line_and_no_secret():
    result = run_cli(
        "--oms-url", "http://x:8089", "--project-ids", "p", "--poll-interval", "-1",
        "--oms-password", SECRET,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "poll_interval" in lines[0]
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr


def test_cli_unknown_flag_exits_2_in_one_line():
    result = run_cli("--no-such-flag")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_config_validates_and_exits(tmp_path: Path):
    config = tmp_path / "c.yml"
    config.write_text(f"oms_url: http://oms:8089\nproject_ids: a,b\noms_password: {SECRET}\n")
    result = run_cli("--config", str(config), "--check-config")
    assert result.returncode == 0, result.stderr
    assert "2 projects" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_environment_is_read_by_the_cli():
    result = run_cli(
        "--check-config",
        env={"OMS_EXPORTER_OMS_URL": "http://envhost:8089", "OMS_EXPORTER_PROJECT_IDS": "x"},
    )
    assert result.returncode == 0, result.stderr
    assert "envhost:8089" in result.stdout


def test_version_flag():
    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


BOMB = "\n".join(
    ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("oms_url: http://x:1\nproject_ids: " + "[" * 200 + "]" * 200, "nested more than"),
        (BOMB, "expands to too many values"),
        ("oms_url: http://x:1\nproject_ids: [a, [b, c]]\n", "not lists or maps"),
        ("oms_url: http://x:1\nproject_ids: [a, {b: c}]\n", "not lists or maps"),
        ('oms_url: http://x:1\nproject_ids: ["\\ud800"]\n', "valid UTF-8"),
        ("oms_url: https://x:1\nproject_ids: [a]\ntls_ca_file: CA\n", "holds no PEM certificate"),
    ],
)
def test_start_and_check_config_refuse_the_same_file_in_one_line(
    tmp_path: Path, text: str, fragment: str
):
    """What a reload would refuse is refused at start: exit 2, one line, no traceback."""
    (tmp_path / "CA").write_text("not a certificate\n")
    config = tmp_path / "c.yml"
    config.write_text(text.replace("CA", str(tmp_path / "CA")))
    assert len(config.read_bytes()) < 800 or fragment != "expands to too many values"
    for extra in (["--check-config"], []):
        result = run_cli("--config", str(config), *extra)
        assert result.returncode == 2, (extra, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert fragment in lines[0]
        assert "Traceback" not in result.stderr


def test_a_password_file_nobody_can_read_is_one_line(tmp_path: Path):
    password = tmp_path / "password"
    password.write_bytes(b"\xff\xfe not utf-8")
    result = run_cli("--oms-url", "http://x:1", "--project-ids", "a",
                     "--oms-password-file", str(password))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "oms-exporter: invalid configuration: password file (OMS_EXPORTER_OMS_PASSWORD_FILE): "
        "cannot be read: is not UTF-8 text"
    )


@pytest.mark.parametrize(
    ("flag", "value", "setting"),
    [
        ("--poll-interval", "1e-9", "poll_interval"),
        ("--poll-interval", "0.5", "poll_interval"),
        ("--request-timeout", "0.01", "request_timeout"),
        ("--discovery-interval", "0.1", "discovery_interval"),
    ],
)
def test_intervals_below_their_floor_are_refused(flag: str, value: str, setting: str):
    """A typo like 1e-9 must not turn the exporter into a load generator on OMS."""
    result = run_cli("--oms-url", "http://x:1", "--project-ids", "a", flag, value, "--check-config")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert setting in result.stderr
    assert "greater than or equal" in result.stderr


def test_metric_lists_are_regexes_and_mutually_exclusive(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMS_EXPORTER_OMS_URL", "http://x:1")
    monkeypatch.setenv("OMS_EXPORTER_PROJECT_IDS", "a")
    settings = load_settings({"metric_denylist": "oms_project_step_.*, oms_project_info"})
    assert settings.metric_denylist == ["oms_project_step_.*", "oms_project_info"]
    with pytest.raises(ConfigError, match=r"metric_allowlist .*not a valid regular expression"):
        load_settings({"metric_allowlist": "oms_(project"})
    with pytest.raises(ConfigError, match="not both"):
        load_settings({"metric_allowlist": "a", "metric_denylist": "b"})
