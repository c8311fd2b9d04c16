"""The running configuration: frozen plain values built from Settings, complete or refused.

Everything that can fail is done here, once, before anything runs: password files and
CA files are read, SSL contexts built, the shard resolved, the web config loaded. Start,
``--check-config`` and reload all call ``load_config``, so they accept exactly the same
files, and a reload that gets an ``ExporterConfig`` can swap it in without a step that
can still fail.
"""

from __future__ import annotations

import hashlib
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oms_exporter.metricfilter import MetricFilter
from oms_exporter.oms.client import ApiChoice
from oms_exporter.oms.discovery import DiscoveryFilter
from oms_exporter.oms.transport import make_ssl_context
from oms_exporter.settings import ConfigError, OmsTarget, Settings, env_name, load_settings
from oms_exporter.sharding import Shard, resolve_shard
from oms_exporter.webconfig import WebConfig, load_web_config


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One OMS instance as the poller and its client need it: no pydantic, no file paths."""

    name: str
    url: str
    username: str | None
    password: str | None = field(repr=False)
    api: ApiChoice
    project_ids: tuple[str, ...]
    discovery: DiscoveryFilter | None  # None: discovery off
    discovery_interval_seconds: float
    step_details: bool
    cutover_max_lag_seconds: float = 30.0
    tls_insecure_skip_verify: bool = False
    # A digest of the CA bundle's bytes: a rotated bundle means a new session.
    tls_ca_digest: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    """Every setting in force, validated; swapped whole on reload."""

    targets: tuple[TargetConfig, ...]
    poll_interval_seconds: float
    request_timeout_seconds: float
    max_concurrency: int
    max_response_bytes: int
    stale_after_seconds: float
    steady_steps_every_rounds: int
    settled_poll_every_rounds: int
    shard: Shard
    metric_filter: MetricFilter
    log_level: str
    log_format: str
    listen_address: str
    web_config_file: Path | None
    web_config: WebConfig | None = field(compare=False, repr=False)

    def connection_key(self, target: TargetConfig) -> tuple[object, ...]:
        """What a session depends on: while none of it changes, keep the session and caches."""
        return (
            target.url,
            target.username,
            target.password,
            target.api,
            target.tls_insecure_skip_verify,
            target.tls_ca_digest,
            self.request_timeout_seconds,
            self.max_concurrency,
            self.max_response_bytes,
        )


def _read_password(target: OmsTarget, label: str) -> str | None:
    try:
        return target.read_password()
    except (OSError, UnicodeDecodeError) as exc:
        where = (
            env_name("oms_password_file") if label == "single" else f"{target.label}.password_file"
        )
        why = exc.strerror if isinstance(exc, OSError) else "is not UTF-8 text"
        raise ConfigError(f"password file ({where}): cannot be read: {why}") from None


def _tls(target: OmsTarget, where: str) -> tuple[ssl.SSLContext | None, str | None]:
    if not target.url.startswith("https:"):
        return None, None
    pem: str | None = None
    if target.tls_ca_file is not None:
        try:
            raw = target.tls_ca_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read {target.tls_ca_file}: {exc.strerror}"
            ) from None
        pem = raw.decode("ascii", errors="replace")
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ConfigError(f"{where}: {target.tls_ca_file} holds no PEM certificate")
    try:
        context = make_ssl_context(cadata=pem, insecure_skip_verify=target.tls_insecure_skip_verify)
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"{where}: {target.tls_ca_file} holds no PEM certificate") from None
    digest = hashlib.sha256(pem.encode()).hexdigest() if pem is not None else None
    return context, digest


def _target(settings: Settings, target: OmsTarget, index: int | None) -> TargetConfig:
    single = index is None
    where = (
        f"tls_ca_file ({env_name('tls_ca_file')}, --tls-ca-file)"
        if single
        else (f"targets[{index}].tls_ca_file")
    )
    context, digest = _tls(target, where)
    discovery = target.discovery
    return TargetConfig(
        name=target.label,
        url=target.url,
        username=target.username,
        password=_read_password(target, "single" if single else "target"),
        api=target.api,
        # Interned, as the IDs OMS answers with are: one string for each, not two.
        project_ids=tuple(sys.intern(project_id) for project_id in target.project_ids),
        discovery=(
            DiscoveryFilter(
                types=tuple(discovery.types),
                statuses=tuple(status.upper() for status in discovery.statuses),
                labels=tuple(discovery.labels),
                include=discovery.include,
                exclude=discovery.exclude,
            )
            if target.discovers
            else None
        ),
        discovery_interval_seconds=discovery.interval,
        step_details=target.step_details,
        cutover_max_lag_seconds=(
            target.cutover_max_lag
            if target.cutover_max_lag is not None
            else settings.cutover_max_lag
        ),
        tls_insecure_skip_verify=target.tls_insecure_skip_verify,
        tls_ca_digest=digest,
        ssl_context=context,
    )


def build_config(settings: Settings) -> ExporterConfig:
    """Turn validated Settings into the running configuration, or raise ConfigError."""
    try:
        shard = resolve_shard(index=settings.shard_index, count=settings.shard_count)
    except ValueError as exc:  # the shard, once POD_NAME/HOSTNAME are taken into account
        raise ConfigError(
            f"shard_index ({env_name('shard_index')}, --shard-index): {exc}"
        ) from None
    single = not settings.targets
    targets = tuple(
        _target(settings, target, None if single else index)
        for index, target in enumerate(settings.oms_targets())
    )
    web_config = load_web_config(settings.web_config_file) if settings.web_config_file else None
    return ExporterConfig(
        targets=targets,
        poll_interval_seconds=settings.poll_interval,
        request_timeout_seconds=settings.request_timeout,
        max_concurrency=settings.max_concurrency,
        max_response_bytes=settings.max_response_bytes,
        stale_after_seconds=settings.stale_after_seconds,
        steady_steps_every_rounds=settings.steady_steps_every_rounds,
        settled_poll_every_rounds=settings.settled_poll_every_rounds,
        shard=shard,
        metric_filter=MetricFilter(
            allow=tuple(settings.metric_allowlist), deny=tuple(settings.metric_denylist)
        ),
        log_level=settings.log_level,
        log_format=settings.log_format,
        listen_address=settings.listen_address,
        web_config_file=settings.web_config_file,
        web_config=web_config,
    )


def load_config(
    cli_values: dict[str, Any],
    config_file: Path | None = None,
    *,
    defaults: dict[str, Any] | None = None,
) -> ExporterConfig:
    """Read every source and build the configuration; ConfigError (one line) on any problem."""
    return build_config(load_settings(cli_values, config_file, defaults=defaults))
