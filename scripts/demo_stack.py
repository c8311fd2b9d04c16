"""The demo monitoring stack on 127.0.0.1, without Docker (`make demo-stack`).

Runs the exporter against its built-in simulator (demo scenario), a real Prometheus
loading the shipped rules and scraping it, a real Alertmanager with the example
configuration, and a small webhook sink printing what Alertmanager sends. Prints the
URLs; Ctrl-C (SIGINT) or SIGTERM stops everything and removes the temporary folder
that holds the configuration, the data and the logs.

The demo's FAILED project (np_demo_failed) makes OMSProjectFailed fire after its
`for: 2m`: it shows in Prometheus' alerts page, then in Alertmanager, then at the sink.

    python scripts/demo_stack.py [--prometheus-port 9090] [--alert-for-max 10s] ...
    python scripts/demo_stack.py --screenshot docs/status-page.png
"""

from __future__ import annotations

import argparse
import ctypes
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy/prometheus/oms-exporter-rules.yml"
ALERTMANAGER_CONFIG = REPO / "deploy/alertmanager/alertmanager.yml"
EXAMPLE_WEBHOOK = "127.0.0.1:5001"  # where the example configuration's receivers point
# Fixed by default so that the URLs stay the same between runs; 0 picks a free port.
PORTS = {"exporter": 18089, "prometheus": 19090, "alertmanager": 19093, "webhook": 5001}
READY_TIMEOUT_SECONDS = 60
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_FOR_LINE = re.compile(r"^(\s+for:\s*)(\S+)(.*)$", re.MULTILINE)


def seconds(duration: str) -> float:
    """A Prometheus duration ("90s", "2m", "1h30m") in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise argparse.ArgumentTypeError(f"not a Prometheus duration: {duration!r}")
    return sum(int(number) * _UNITS[unit] for number, unit in parts)


def capped_for(rules: str, max_duration: str) -> str:
    """The rules with every alert's `for:` at most `max_duration`; all else unchanged."""
    limit = seconds(max_duration)

    def cap(match: re.Match[str]) -> str:
        shorter = max_duration if seconds(match.group(2)) > limit else match.group(2)
        return f"{match.group(1)}{shorter}{match.group(3)}"

    return _FOR_LINE.sub(cap, rules)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def choose_port(name: str, port: int) -> int:
    """`port`, checked free, or a free one for 0."""
    if port == 0:
        return free_port()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(f"port {port} ({name}) is in use on 127.0.0.1: pass --{name}-port 0")
    return port


def _die_with_parent() -> None:
    """In a child, before exec: get SIGTERM if this script dies, even by SIGKILL."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(f"  {line}" for line in text.splitlines()[-lines:])


class Stack:
    """Owns every process and the temporary folder; `close()` always ends them all."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        self.workdir = Path(tempfile.mkdtemp(prefix="oms-demo-stack-"))
        self.children: list[Child] = []

    def start(self, name: str, args: list[str], *, env: dict[str, str] | None = None) -> Child:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                # Its own session: Ctrl-C reaches this script only, which stops the
                # children in order; they still end if the script is killed.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, url: str) -> None:
        """Until `url` answers 200; fail with the child's log if it exits or times out."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.stopping.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if child.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not get ready ({url}):\n{child.tail()}")
            self.stopping.wait(0.2)

    def exited(self) -> Child | None:
        """A child that has ended on its own, if any."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def close(self) -> None:
        """SIGTERM every child (the last started first), SIGKILL any left after 10 s."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.terminate()
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


class WebhookSink(http.server.ThreadingHTTPServer):
    """Receives Alertmanager's webhooks and prints one line per alert."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                for alert in body.get("alerts", []):
                    labels = alert.get("labels", {})
                    name, where = labels.get("alertname"), _where(labels)
                    say(f"webhook {self.path}: {alert.get('status')} {name} {where}")
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: one line per alert is printed instead."""

        super().__init__(("127.0.0.1", port), Handler)


def _where(labels: dict[str, str]) -> str:
    """The project (or OMS, or exporter) an alert is about."""
    return labels.get("project_id") or labels.get("oms") or labels.get("instance", "")


def say(line: str) -> None:
    print(line, flush=True)


def _loopback_env(**extra: str) -> dict[str, str]:
    """This environment without OMS_EXPORTER_* (the demo must not reach a real OMS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    return {**env, **extra}


def start_exporter(stack: Stack, port: int) -> str:
    """The simulator and the exporter in one process (`oms-exporter --demo`); host:port."""
    address = f"127.0.0.1:{port}"
    args = [sys.executable, "-m", "oms_exporter", "--demo"]
    child = stack.start("exporter", args, env=_loopback_env(OMS_EXPORTER_LISTEN_ADDRESS=address))
    stack.wait_ready(child, f"http://{address}/readyz")
    return address


def alert_wait(rules: str, alert: str) -> float:
    """The `for:` of one alert of a rules file, in seconds."""
    for group in yaml.safe_load(rules)["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                return seconds(rule.get("for", "0s"))
    return 0.0


def run_stack(args: argparse.Namespace, stack: Stack) -> int:
    """Start the exporter, Alertmanager, Prometheus and the sink; watch until stopped."""
    ports = {name: choose_port(name, getattr(args, f"{name}_port")) for name in PORTS}
    exporter = start_exporter(stack, ports["exporter"])
    alertmanager = f"127.0.0.1:{ports['alertmanager']}"
    webhook = f"127.0.0.1:{ports['webhook']}"
    start_alertmanager(stack, alertmanager, webhook=webhook)
    rules = RULES.read_text(encoding="utf-8")
    if args.alert_for_max:
        rules = capped_for(rules, args.alert_for_max)
    prometheus = f"127.0.0.1:{ports['prometheus']}"
    start_prometheus(
        stack, prometheus, args, rules=rules, exporter=exporter, alertmanager=alertmanager
    )
    if stack.stopping.is_set():
        return 0
    # Started after the children: no thread runs while they fork (see _die_with_parent).
    sink = WebhookSink(ports["webhook"])
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        wait = alert_wait(rules, "OMSProjectFailed") + seconds(args.evaluation_interval)
        say(
            "oms-exporter demo stack on 127.0.0.1 (Ctrl-C to stop):\n"
            f"  status page:  http://{exporter}/\n"
            f"  metrics:      http://{exporter}/metrics\n"
            f"  Prometheus:   http://{prometheus}/graph\n"
            f"  its alerts:   http://{prometheus}/alerts\n"
            f"  Alertmanager: http://{alertmanager}/\n"
            f"  webhook sink: {webhook} (prints here what Alertmanager sends)\n"
            f"  state:        {stack.workdir} (removed on exit)\n"
            "  pids:         "
            + ", ".join(f"{c.name} {c.process.pid}" for c in stack.children)
            + f"\nOMSProjectFailed (np_demo_failed) should reach Alertmanager in ~{wait:.0f} s."
        )
        return watch(stack, f"http://{alertmanager}")
    finally:
        sink.shutdown()
        sink.server_close()


def start_alertmanager(stack: Stack, address: str, *, webhook: str) -> None:
    """The example configuration, its receivers pointed at the sink when not on 5001."""
    config = ALERTMANAGER_CONFIG
    if webhook != EXAMPLE_WEBHOOK:
        config = stack.workdir / "alertmanager.yml"
        text = ALERTMANAGER_CONFIG.read_text(encoding="utf-8").replace(EXAMPLE_WEBHOOK, webhook)
        config.write_text(text, encoding="utf-8")
    child = stack.start(
        "alertmanager",
        [
            "prometheus-alertmanager",
            f"--config.file={config}",
            f"--storage.path={stack.workdir / 'alertmanager-data'}",
            f"--web.listen-address={address}",
            f"--web.external-url=http://{address}/",
            "--cluster.listen-address=",  # one instance: no gossip port
        ],
    )
    stack.wait_ready(child, f"http://{address}/-/ready")


def start_prometheus(
    stack: Stack,
    address: str,
    args: argparse.Namespace,
    *,
    rules: str,
    exporter: str,
    alertmanager: str,
) -> None:
    """Scraping the exporter as job oms-exporter, with the rules, alerting Alertmanager."""
    rules_file = RULES
    if args.alert_for_max:
        rules_file = stack.workdir / RULES.name
        rules_file.write_text(rules, encoding="utf-8")
    config = {
        "global": {
            "scrape_interval": args.scrape_interval,
            "evaluation_interval": args.evaluation_interval,
        },
        "rule_files": [str(rules_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        # The rules select the exporter by this job name (OMSExporterDown).
        "scrape_configs": [
            {"job_name": "oms-exporter", "static_configs": [{"targets": [exporter]}]}
        ],
    }
    config_file = stack.workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    child = stack.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={stack.workdir / 'prometheus-data'}",
            f"--web.listen-address={address}",
            f"--web.external-url=http://{address}/",
        ],
    )
    stack.wait_ready(child, f"http://{address}/-/ready")


def watch(stack: Stack, alertmanager: str) -> int:
    """Until asked to stop: print each alert Alertmanager gets; fail if a child dies."""
    seen: set[tuple[str, str]] = set()
    while not stack.stopping.wait(1):
        child = stack.exited()
        if child is not None:
            say(f"{child.name} exited with {child.process.returncode}:\n{child.tail()}")
            return 1
        try:
            with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=2) as answer:  # noqa: S310
                alerts = json.load(answer)
        except OSError:
            continue
        for alert in alerts:
            labels = alert["labels"]
            key = (labels.get("alertname", ""), alert.get("fingerprint", ""))
            if key not in seen:
                seen.add(key)
                where = _where(labels)
                state = alert.get("status", {}).get("state", "")
                say(f"Alertmanager: {key[0]} {where} ({labels.get('severity')}, {state})")
    return 0


def take_screenshot(stack: Stack, path: Path) -> int:
    """docs/status-page.png: the demo's status page once every project was polled."""
    sys.path.insert(0, str(REPO))
    from tests.status_page_support import png_size, screenshot

    exporter = start_exporter(stack, free_port())
    stack.stopping.wait(3)  # a couple more rounds: progress has moved, rates exist
    screenshot(f"http://{exporter}/", path.resolve(), width=1400, height=720)
    width, height = png_size(path)
    say(f"wrote {path} ({width}x{height})")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, port in PORTS.items():
        parser.add_argument(
            f"--{name}-port",
            type=int,
            default=port,
            metavar="PORT",
            help=f"port of the {name} on 127.0.0.1 (default {port}; 0: a free one)",
        )
    parser.add_argument(
        "--scrape-interval",
        default="5s",
        type=_duration,
        help="Prometheus' scrape interval (default 5s)",
    )
    parser.add_argument(
        "--evaluation-interval",
        default="5s",
        type=_duration,
        help="Prometheus' rule evaluation interval (default 5s)",
    )
    parser.add_argument(
        "--alert-for-max",
        type=_duration,
        metavar="DURATION",
        help="cap every alert's `for:` in a copy of the rules (for tests; "
        "default: the shipped rules unchanged)",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="only save a screenshot of the demo's status page, then exit",
    )
    return parser.parse_args(argv)


def _duration(text: str) -> str:
    seconds(text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        say(f"{signal.Signals(signum).name}: stopping...")
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    stack = Stack(stopping)
    try:
        if args.screenshot:
            return take_screenshot(stack, args.screenshot)
        return run_stack(args, stack)
    except RuntimeError as error:
        say(str(error))
        return 1
    finally:
        stack.close()
        say(f"stopped; removed {stack.workdir}")


if __name__ == "__main__":
    sys.exit(main())
