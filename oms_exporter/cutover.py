"""`oms-exporter cutover PROJECT_ID`: can this migration cut over now? Asked of OMS itself.

No exporter or Prometheus is needed: the command reads the usual configuration, asks OMS
for the project's progress, steps and full verification, and judges them with the same
``readiness.assess`` as /metrics and the status page, as of the answer that just came.
Exit codes: 0 ready, 1 not ready, 2 configuration error, 3 OMS unreachable or the project
unknown. Nothing secret is printed: no password, user name or URL, only the ``oms`` name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import IO, Any, Final

from oms_exporter.config import ExporterConfig, TargetConfig, load_config
from oms_exporter.logsetup import setup_logging
from oms_exporter.model import MAX_WORST_TABLES, FullVerification, ProjectProgress, VerifiedTable
from oms_exporter.oms.client import OmsClient
from oms_exporter.oms.errors import OmsError
from oms_exporter.oms.transport import Transport, make_session
from oms_exporter.readiness import Readiness, applies, assess, verifier
from oms_exporter.settings import ConfigError

EXIT_READY: Final = 0
EXIT_NOT_READY: Final = 1
EXIT_CONFIG: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130
PROG: Final = "oms-exporter cutover"
_OWN: Final = ("project_id", "oms", "wait", "timeout", "json")
_NOT_HERE: Final = ("check_config", "demo")  # exporter flags that mean nothing here
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_BARE_SECONDS: Final = re.compile(r"\d+(?:\.\d+)?")
_MARK: Final = {True: "FAILED", False: "passed", None: "unknown"}

Clock = Callable[[], float]


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1h30m`` or plain seconds; argparse reports the error."""
    value = text.strip()
    if _BARE_SECONDS.fullmatch(value):
        seconds = float(value)
    elif value and _DURATION.sub("", value) == "":
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _DURATION.findall(value))
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m or 2h")
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be above 0")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The exporter's own flags (the same configuration), plus the command's."""
    from oms_exporter.cli import build_parser as exporter_parser

    parser = exporter_parser()
    parser.prog = PROG
    parser.description = (
        "Check whether a migration can cut over now, asking OMS directly (no exporter or "
        "Prometheus needed), with the exporter's configuration: flags, OMS_EXPORTER_* "
        "variables, --config. Exit 0 ready, 1 not ready, 2 configuration error, 3 OMS "
        "unreachable or the project unknown."
    )
    parser.add_argument("project_id", metavar="PROJECT_ID", help="the OMS project ID")
    parser.add_argument(
        "--oms", default=None, metavar="NAME", help="the OMS (its `oms` name) when several"
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        default=False,
        help="check again every poll interval until ready (or --timeout)",
    )
    parser.add_argument(
        "--timeout",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="with --wait: give up after this long, e.g. 90s, 30m, 2h (default: never)",
    )
    parser.add_argument(
        "--json", action="store_true", default=False, help="print the result as one JSON object"
    )
    return parser


@dataclass(frozen=True, slots=True)
class Options:
    project_id: str
    oms: str | None
    wait: bool
    timeout_seconds: float | None
    json: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """One check: what OMS said and the verdict on it."""

    progress: ProjectProgress
    readiness: Readiness
    checked_at: float
    notes: tuple[str, ...] = ()

    @property
    def applies(self) -> bool:
        return applies(self.progress)

    @property
    def ready(self) -> bool:
        return self.applies and self.readiness.ready


def choose_target(config: ExporterConfig, name: str | None, project_id: str) -> TargetConfig:
    """The OMS asked: --oms NAME, the only one, or the only one listing the project."""
    names = ", ".join(target.name for target in config.targets)
    if name is not None:
        for target in config.targets:
            if target.name == name:
                return target
        raise ConfigError(f"--oms {name!r}: no OMS of that name (configured: {names})")
    if len(config.targets) == 1:
        return config.targets[0]
    listing = [target for target in config.targets if project_id in target.project_ids]
    if len(listing) == 1:
        return listing[0]
    raise ConfigError(f"several OMS are configured ({names}): choose one with --oms NAME")


async def check(
    client: OmsClient,
    project_id: str,
    *,
    interval_seconds: float,
    max_lag_seconds: float,
    clock: Clock = time.time,
) -> Outcome:
    """Ask OMS now; an OmsError from the progress answer means no verdict at all."""
    progress = await client.fetch_progress(project_id)
    notes: list[str] = []
    try:
        steps = await client.fetch_steps(project_id)
    except OmsError as error:  # an OMS without the Action: judged like 3.3, from progress
        notes.append(f"no step details: {error}")
        steps = None
    if steps is not None:
        progress = replace(progress, steps=steps)
    step = verifier(steps)
    if step is not None and step.status != "INIT":  # the poller's rule, so both agree
        try:
            result = await client.fetch_verification(project_id)
        except OmsError as error:
            notes.append(f"no verification result: {error}")
            result = None
        if result is not None:
            progress = replace(progress, verification=result)
    now = clock()
    readiness = assess(
        progress,
        up=True,
        last_success_seconds=now,  # the answer just came
        now=now,
        interval_seconds=interval_seconds,
        max_lag_seconds=max_lag_seconds,
    )
    return Outcome(progress, readiness, now, tuple(notes))


# ---------------------------------------------------------------------------- printing


def printable(text: str) -> str:
    """OMS's text without control characters: a table name must not drive the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def _rows(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def table_line(table: VerifiedTable) -> str:
    """One verified table as a person reads it."""
    where = printable(f"{table.source_schema}.{table.source_table} -> {table.dest_schema or '?'}")
    text = f"{where}: {table.result}"
    if table.status != "FINISHED":
        done = "" if table.progress_ratio is None else f", {table.progress_ratio * 100:.0f} %"
        text += f" ({table.status}{done})"
    if table.different_rows:
        kinds = [
            f"{_rows(value)} {label}"
            for label, value in (
                ("mismatched", table.mismatched_rows),
                ("only in the source", table.source_only_rows),
                ("only in the destination", table.dest_only_rows),
            )
            if value
        ]
        text += f", {_rows(table.different_rows)} different rows ({', '.join(kinds)})"
    return text


def _title(outcome: Outcome, oms: str) -> str:
    name = outcome.progress.name
    named = f" ({printable(name)})" if name else ""
    return (
        f"Cut-over check of {printable(outcome.progress.project_id)}{named} on OMS "
        f"{printable(oms)} at {_utc(outcome.checked_at)}"
    )


def _verdict(outcome: Outcome) -> str:
    if not outcome.applies:
        return (
            "Verdict: NOT APPLICABLE: only migrations with incremental sync cut over "
            f"(this one is a {outcome.progress.kind.value} project"
            f"{'' if outcome.progress.features.get('incr') else ' without incremental sync'})"
        )
    if outcome.ready:
        return "Verdict: READY for cut-over"
    return f"Verdict: NOT READY, blocked by {', '.join(outcome.readiness.blockers)}"


def checklist(outcome: Outcome, *, oms: str) -> str:
    """The whole result for a person: every blocker, the worst tables, the verdict."""
    lines = [_title(outcome, oms)]
    width = max(len(check.blocker) for check in outcome.readiness.checks)
    lines += [
        f"  {_MARK[check.blocked]:<8} {check.blocker:<{width}}  {printable(check.detail)}"
        for check in outcome.readiness.checks
    ]
    lines += [f"  note: {printable(note)}" for note in outcome.notes]
    result = outcome.progress.verification
    if result is not None:
        different = "unknown" if result.different_rows is None else _rows(result.different_rows)
        summary = f"Full verification: {different} different rows in {result.table_count:,} tables"
        shown = result.worst_tables[:MAX_WORST_TABLES]
        if shown:
            summary += f"; the {len(shown)} to look at first:"
        lines.append(summary)
        lines += [f"  {table_line(table)}" for table in shown]
    lines.append(_verdict(outcome))
    return "\n".join(lines)


def waiting_line(outcome: Outcome, *, waited_seconds: float, left_seconds: float | None) -> str:
    """One line while --wait waits: what still blocks, and for how long it has waited."""
    blocked = [
        f"{check.blocker} ({printable(check.detail)})"
        for check in outcome.readiness.checks
        if check.blocked
    ]
    line = f"waiting {_duration(waited_seconds)}: blocked by {', '.join(blocked)}"
    if left_seconds is not None:
        line += f"; {_duration(left_seconds)} left"
    return line


def verification_json(result: FullVerification | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "different_rows": result.different_rows,
        "rows": dict(result.rows),
        "tables_by_result": dict(result.tables_by_result),
        "table_count": result.table_count,
        "worst_tables": [
            {
                "source_schema": table.source_schema,
                "source_table": table.source_table,
                "dest_schema": table.dest_schema,
                "result": table.result,
                "status": table.status,
                "progress_ratio": table.progress_ratio,
                "different_rows": table.different_rows,
                "consistent_rows": table.consistent_rows,
                "mismatched_rows": table.mismatched_rows,
                "source_only_rows": table.source_only_rows,
                "dest_only_rows": table.dest_only_rows,
            }
            for table in result.worst_tables[:MAX_WORST_TABLES]
        ],
    }


def result_json(outcome: Outcome, *, oms: str) -> dict[str, Any]:
    """The same result for scripts; ``blockers`` and ``checks`` as on /metrics."""
    return {
        "project_id": outcome.progress.project_id,
        "oms": oms,
        "name": outcome.progress.name,
        "applies": outcome.applies,
        "ready": outcome.ready,
        "blockers": list(outcome.readiness.blockers),
        "checks": [
            {"blocker": check.blocker, "blocked": check.blocked, "detail": check.detail}
            for check in outcome.readiness.checks
        ],
        "verification": verification_json(outcome.progress.verification),
        "notes": list(outcome.notes),
        "checked_at": _utc(outcome.checked_at),
    }


class StatusLine:
    """One line that updates: rewritten with ``\\r`` on a terminal, else one line per check."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if self._tty:
            text = text[: max(20, shutil.get_terminal_size().columns - 1)]
            self._stream.write("\r" + text + " " * max(0, self._width - len(text)))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def end(self) -> None:
        """Leave the line as it is and go on below it."""
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
        self._width = 0


# ---------------------------------------------------------------------------- running


async def run(
    options: Options,
    config: ExporterConfig,
    target: TargetConfig,
    *,
    out: IO[str],
    err: IO[str],
    clock: Clock = time.time,
    monotonic: Clock = time.monotonic,
) -> int:
    """Check (and with --wait, check again) and print; the session is always closed."""
    session = make_session(
        base_url=target.url,
        username=target.username,
        password=target.password,
        timeout_seconds=config.request_timeout_seconds,
        ssl_context=target.ssl_context,
    )
    try:
        client = OmsClient(
            transport=Transport(
                session=session,
                max_concurrency=config.max_concurrency,
                max_response_bytes=config.max_response_bytes,
            ),
            api=target.api,
            oms_name=target.name,
        )
        return await _checks(options, config, target, client, out=out, err=err,
                             clock=clock, monotonic=monotonic)  # fmt: skip
    finally:
        await session.close()


async def _checks(
    options: Options,
    config: ExporterConfig,
    target: TargetConfig,
    client: OmsClient,
    *,
    out: IO[str],
    err: IO[str],
    clock: Clock,
    monotonic: Clock,
) -> int:
    interval = config.poll_interval_seconds

    async def one() -> Outcome:
        return await check(client, options.project_id, interval_seconds=interval,
                           max_lag_seconds=target.cutover_max_lag_seconds, clock=clock)  # fmt: skip

    started = monotonic()
    try:
        outcome = await one()
    except OmsError as error:
        return _unreachable(options, target, error, out=out, err=err, clock=clock)
    failure: OmsError | None = None
    if options.wait:
        line = StatusLine(err if options.json else out)
        deadline = None if options.timeout_seconds is None else started + options.timeout_seconds
        while not outcome.ready and outcome.applies:
            now = monotonic()
            if deadline is not None and now >= deadline:
                break
            left = None if deadline is None else deadline - now
            text = waiting_line(outcome, waited_seconds=now - started, left_seconds=left)
            if failure is not None:
                text += f"; the last check failed: {printable(str(failure))}"
            line.show(text)
            await asyncio.sleep(interval if left is None else min(interval, left))
            try:
                outcome, failure = await one(), None
            except OmsError as error:  # a blip while waiting: keep waiting, say so
                failure = error
        line.end()
    if options.json:
        answer = result_json(outcome, oms=target.name)
        if options.wait:
            answer["waited_seconds"] = round(monotonic() - started, 3)
        out.write(json.dumps(answer) + "\n")
    else:
        out.write(checklist(outcome, oms=target.name) + "\n")
    if failure is not None:
        err.write(f"{PROG}: the last check failed: {printable(str(failure))}\n")
        return EXIT_UNREACHABLE
    return EXIT_READY if outcome.ready else EXIT_NOT_READY


def _unreachable(
    options: Options,
    target: TargetConfig,
    error: OmsError,
    *,
    out: IO[str],
    err: IO[str],
    clock: Clock,
) -> int:
    message = printable(str(error))
    err.write(
        f"{PROG}: cannot check {printable(options.project_id)} on OMS {printable(target.name)}: "
        f"{error.reason.value}: {message}\n"
    )
    if options.json:
        answer = {
            "project_id": options.project_id,
            "oms": target.name,
            "ready": False,
            "error": {"reason": error.reason.value, "message": str(error)},
            "checked_at": _utc(clock()),
        }
        out.write(json.dumps(answer) + "\n")
    return EXIT_UNREACHABLE


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_CONFIG


def main(argv: list[str]) -> int:
    """Parse, load the configuration, choose the OMS, check; the exit code says the verdict."""
    args = vars(build_parser().parse_args(argv))
    own = {name: args.pop(name) for name in _OWN}
    for name in _NOT_HERE:
        if args.pop(name, False):
            return _fail(f"--{name.replace('_', '-')} does not apply to cutover")
    project_id = str(own["project_id"]).strip()
    if not project_id:
        return _fail("PROJECT_ID must not be empty")
    if own["timeout"] is not None and not own["wait"]:
        return _fail("--timeout needs --wait")
    options = Options(project_id, own["oms"], own["wait"], own["timeout"], own["json"])
    config_file = args.pop("config", None)
    try:
        # The ID asked about satisfies "project IDs are required" for a --discovery=false.
        config = load_config(args, config_file, defaults={"project_ids": [project_id]})
        target = choose_target(config, options.oms, project_id)
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}")
    setup_logging(level="debug" if config.log_level == "debug" else "warning",
                  fmt=config.log_format)  # fmt: skip
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # never a UnicodeEncodeError on a C locale
            stream.reconfigure(errors="replace")
    try:
        return asyncio.run(run(options, config, target, out=sys.stdout, err=sys.stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug must never read as exit 1, "not ready"
        print(f"{PROG}: cannot tell: internal error: {type(exc).__name__}", file=sys.stderr)
        return EXIT_UNREACHABLE
