"""What users may configure, validated once at the edge.

Sources, highest first: CLI flags (passed in as init values), environment
(``OMS_EXPORTER_*``), the YAML file named by ``--config``, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from oms_exporter.metricfilter import check_patterns
from oms_exporter.oms.client import ApiChoice
from oms_exporter.yamlfile import YamlRefused, load_yaml

ENV_PREFIX = "OMS_EXPORTER_"
DEFAULT_PORT = 18089
# Floors that keep a typo (1e-9) from turning the exporter into a load generator on OMS.
MIN_POLL_INTERVAL_SECONDS = 1.0
MIN_REQUEST_TIMEOUT_SECONDS = 0.1
MIN_DISCOVERY_INTERVAL_SECONDS = 1.0


class ConfigError(Exception):
    """Raised with one human line naming the setting that is wrong."""


def _unique(value: list[str]) -> list[str]:
    return list(dict.fromkeys(value))


def _split_ids(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        for part in value:
            # A number is an ID written without quotes; a list or a map is a mistake, and
            # its repr must never become a project ID.
            if not isinstance(part, str | int) or isinstance(part, bool):
                raise ValueError("entries must be project IDs (strings), not lists or maps")
        return [str(part).strip() for part in value if str(part).strip()]
    return value


def _encodable(value: list[str]) -> list[str]:
    for part in value:
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("entries must be valid UTF-8 text") from None
    return value


# Comma-separated in the environment and on the command line, a list in YAML; deduplicated.
ProjectIds = Annotated[
    list[str],
    NoDecode,
    BeforeValidator(_split_ids),
    AfterValidator(_encodable),
    AfterValidator(_unique),
]


def _split_patterns(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# Regular expressions on metric family names, comma-separated outside YAML.
Patterns = Annotated[
    list[str], NoDecode, BeforeValidator(_split_patterns), AfterValidator(check_patterns)
]


def check_url(value: str) -> str:
    """Accept an http(s) URL with a host and no credentials; return it without a trailing /."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use the username/password settings")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return value.strip().rstrip("/")


def default_label(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


class DiscoverySettings(BaseModel):
    """Which projects a 4.x OMS's ListProjects contributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None  # None: on for 4.x when the target lists no project IDs
    interval: float = Field(default=300.0, ge=MIN_DISCOVERY_INTERVAL_SECONDS, le=86400)
    types: list[Literal["MIGRATION", "SYNC"]] = []
    statuses: list[str] = []
    labels: list[str] = []
    include: str | None = None
    exclude: str | None = None

    @field_validator("include", "exclude")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            check_patterns([value])
        return value


class OmsTarget(BaseModel):
    """One OMS instance, as the YAML ``targets`` list describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    url: str
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    api: ApiChoice = "auto"
    tls_insecure_skip_verify: bool = False
    tls_ca_file: Path | None = None
    project_ids: ProjectIds = []
    discovery: DiscoverySettings = DiscoverySettings()
    step_details: bool = True
    cutover_max_lag: float | None = Field(default=None, ge=0, le=86400)  # None: the global

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("tls_ca_file", "password_file")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("is not a readable file")
        return value

    @model_validator(mode="after")
    def _check(self) -> OmsTarget:
        given = [x for x in (self.password, self.password_file, self.password_env) if x]
        if len(given) > 1:
            raise ValueError("set one of password, password_file, password_env")
        if self.password_env and self.password_env not in os.environ:
            raise ValueError(f"password_env names {self.password_env}, which is not set")
        if not self.project_ids and self.discovery.enabled is False:
            raise ValueError("project_ids are required when discovery is off")
        if not self.project_ids and self.api in ("v3-migration", "v3-sync"):
            raise ValueError("project_ids are required: discovery needs OMS 4.x")
        return self

    @property
    def label(self) -> str:
        """Name the OMS instance in the ``oms`` label."""
        return self.name or default_label(self.url)

    @property
    def discovers(self) -> bool:
        """Whether to try ListProjects (turned off later if the OMS turns out to be 3.3)."""
        enabled = self.discovery.enabled
        return enabled if enabled is not None else not self.project_ids

    def read_password(self) -> str | None:
        """Return the password, reading the file or variable now so reloads pick up changes."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        if self.password_env is not None:
            return os.environ.get(self.password_env)
        return None


class Settings(BaseSettings):
    """The exporter's configuration; frozen once validated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
        # An empty variable (a blank line in an env file) means "not set", not "empty value".
        env_ignore_empty=True,
    )

    oms_url: str | None = Field(default=None, description="OMS base URL, http or https")
    oms_name: str | None = Field(
        default=None, description="value of the `oms` label (default: the URL's host:port)"
    )
    oms_username: str | None = Field(default=None, description="Basic auth user")
    oms_password: SecretStr | None = Field(default=None, description="Basic auth password")
    oms_password_file: Path | None = Field(
        default=None, description="file holding the Basic auth password"
    )
    project_ids: ProjectIds = Field(default=[], description="comma-separated OMS project IDs")
    discovery: bool | None = Field(
        default=None,
        description="list projects with 4.x ListProjects (default: on when no IDs are given)",
    )
    discovery_interval: float = Field(
        default=300.0,
        ge=MIN_DISCOVERY_INTERVAL_SECONDS,
        le=86400,
        description="seconds between project discoveries",
    )
    step_details: bool = Field(
        default=True, description="poll 4.x DescribeProjectSteps for per-step metrics"
    )
    cutover_max_lag: float = Field(
        default=30.0,
        ge=0,
        le=86400,
        description=(
            "seconds of forward lag (as of the last poll) a migration may have and still be "
            "ready for cut-over"
        ),
    )
    steady_steps_every_rounds: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="in steady incremental sync, ask DescribeProjectSteps every N rounds",
    )
    settled_poll_every_rounds: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="poll FINISHED, RELEASED and DELETED projects every N rounds",
    )
    metric_allowlist: Patterns = Field(
        default=[],
        description="comma-separated regexes: publish only the metric families they match",
    )
    metric_denylist: Patterns = Field(
        default=[],
        description="comma-separated regexes: leave out the metric families they match",
    )
    shard_index: int | None = Field(
        default=None, ge=0, description="this replica's shard (default: StatefulSet ordinal)"
    )
    shard_count: int = Field(default=1, ge=1, le=1024, description="replicas sharing the projects")
    targets: list[OmsTarget] = Field(default=[], description="several OMS instances (YAML only)")
    api: ApiChoice = Field(default="auto", description="OMS API flavour")
    poll_interval: float = Field(
        default=30.0, ge=MIN_POLL_INTERVAL_SECONDS, le=86400, description="seconds between polls"
    )
    request_timeout: float = Field(
        default=10.0, ge=MIN_REQUEST_TIMEOUT_SECONDS, le=600, description="seconds per OMS request"
    )
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="OMS requests in flight")
    stale_after: float | None = Field(
        default=None,
        gt=0,
        description="seconds a failing project's values stay published (default 3 intervals)",
    )
    max_response_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="largest OMS answer read, in bytes"
    )
    listen_address: str = Field(
        default=f":{DEFAULT_PORT}", description="host:port of the HTTP server"
    )
    tls_insecure_skip_verify: bool = Field(default=False, description="skip OMS TLS verification")
    tls_ca_file: Path | None = Field(default=None, description="CA bundle for OMS TLS")
    web_config_file: Path | None = Field(
        default=None, description="exporter-toolkit web config: HTTPS and/or Basic auth"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="debug, info, warning or error"
    )
    log_format: Literal["text", "json"] = Field(default="text", description="text or json")

    @field_validator("oms_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("listen_address")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("tls_ca_file", "oms_password_file", "web_config_file")
    @classmethod
    def _check_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("is not a readable file")
        return value

    @model_validator(mode="after")
    def _check_sources(self) -> Settings:
        if self.oms_password is not None and self.oms_password_file is not None:
            raise ValueError("set oms_password or oms_password_file, not both")
        if self.targets and self.oms_url:
            raise ValueError("set oms_url or a targets list, not both")
        if not self.targets and not self.oms_url:
            raise ValueError(
                "oms_url (OMS_EXPORTER_OMS_URL, --oms-url) is required, "
                "or a targets list in the config file"
            )
        if not self.targets and not self.project_ids:
            ids = "project_ids (OMS_EXPORTER_PROJECT_IDS, --project-ids)"
            if self.discovery is False:
                raise ValueError(f"{ids} are required when discovery is off")
            if self.api in ("v3-migration", "v3-sync"):
                raise ValueError(f"{ids} are required: discovery needs OMS 4.x")
        labels = [target.label for target in self.oms_targets()]
        if len(set(labels)) != len(labels):
            raise ValueError("targets must have distinct names")
        if self.metric_allowlist and self.metric_denylist:
            raise ValueError(
                "set metric_allowlist (OMS_EXPORTER_METRIC_ALLOWLIST) or metric_denylist "
                "(OMS_EXPORTER_METRIC_DENYLIST), not both"
            )
        if self.shard_index is not None and self.shard_index >= self.shard_count:
            raise ValueError("shard_index must be below shard_count")
        return self

    def oms_targets(self) -> list[OmsTarget]:
        """Every OMS to poll; the single-OMS settings become one target."""
        if self.targets:
            return list(self.targets)
        assert self.oms_url is not None  # checked by _check_sources
        return [
            OmsTarget(
                name=self.oms_name,
                url=self.oms_url,
                username=self.oms_username,
                password=self.oms_password,
                password_file=self.oms_password_file,
                api=self.api,
                tls_insecure_skip_verify=self.tls_insecure_skip_verify,
                tls_ca_file=self.tls_ca_file,
                project_ids=self.project_ids,
                discovery=DiscoverySettings(
                    enabled=self.discovery, interval=self.discovery_interval
                ),
                step_details=self.step_details,
                cutover_max_lag=self.cutover_max_lag,
            )
        ]

    @property
    def oms_label(self) -> str:
        """Every target's ``oms`` label, for one-line summaries."""
        return ", ".join(target.label for target in self.oms_targets())

    @property
    def stale_after_seconds(self) -> float:
        return self.stale_after if self.stale_after is not None else 3 * self.poll_interval

    # Below flags and environment: the YAML file's values, then a caller's defaults
    # (--demo's). Set on the class load_settings builds for one load.
    lower_sources: ClassVar[tuple[dict[str, Any], ...]] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        lower_sources: tuple[dict[str, Any], ...] = getattr(settings_cls, "lower_sources", ())
        lower = [
            InitSettingsSource(settings_cls, init_kwargs=values)
            for values in lower_sources
            if values
        ]
        return (init_settings, env_settings, *lower)


def _settings_class(file_values: dict[str, Any], defaults: dict[str, Any]) -> type[Settings]:
    """Settings whose sources are flags, environment, the file's values, then ``defaults``."""
    return type("LoadedSettings", (Settings,), {"lower_sources": (file_values, defaults)})


def parse_listen_address(value: str) -> tuple[str | None, int]:
    """Split ``host:port``; an empty host means every interface."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("must be host:port with a port from 0 to 65535, e.g. :18089")
    host = host.strip("[]")
    return (host or None), int(port_text)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        return f"unknown setting {'.'.join(loc)!r} in the config file"
    if not loc:
        return message
    if len(loc) > 1:  # inside the YAML targets list: targets[0].url
        path = loc[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
        return f"{path}: {message}"
    return f"{loc[0]} ({env_name(loc[0])}, {flag_name(loc[0])}): {message}"


def _read_file(config_file: Path) -> dict[str, Any]:
    try:
        text = config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"--config: {config_file} is not a readable UTF-8 file") from None
    try:
        loaded = load_yaml(text)
    except YamlRefused as exc:
        raise ConfigError(f"--config: {config_file} {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config: {config_file} is not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config: {config_file} must hold a mapping of settings")
    return loaded


def load_settings(
    cli_values: dict[str, Any],
    config_file: Path | None = None,
    *,
    defaults: dict[str, Any] | None = None,
) -> Settings:
    """Build Settings from every source, or raise ConfigError with one line.

    ``defaults`` replace the built-in defaults only: every other source still wins.
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"--config: {config_file} is not a readable file")
        file_values = _read_file(config_file)
    try:
        return _settings_class(file_values, dict(defaults or {}))(**cli_values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
