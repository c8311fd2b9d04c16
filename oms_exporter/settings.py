"""What users may configure, validated once at the edge.

Sources, highest first: CLI flags (passed in as init values), environment
(``OMS_EXPORTER_*``), the YAML file named by ``--config``, defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "OMS_EXPORTER_"
DEFAULT_PORT = 18089

ApiChoice = Literal["auto", "v4", "v3-migration", "v3-sync"]


class ConfigError(Exception):
    """Raised with one human line naming the setting that is wrong."""


def _split_ids(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [str(part).strip() for part in value if str(part).strip()]
    return value


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

    oms_url: str = Field(description="OMS base URL, http or https")
    oms_name: str | None = Field(
        default=None, description="value of the `oms` label (default: the URL's host:port)"
    )
    oms_username: str | None = Field(default=None, description="Basic auth user")
    oms_password: SecretStr | None = Field(default=None, description="Basic auth password")
    oms_password_file: Path | None = Field(
        default=None, description="file holding the Basic auth password"
    )
    project_ids: Annotated[list[str], NoDecode] = Field(
        description="comma-separated OMS project IDs"
    )
    api: ApiChoice = Field(default="auto", description="OMS API flavour")
    poll_interval: float = Field(default=30.0, gt=0, le=86400, description="seconds between polls")
    request_timeout: float = Field(
        default=10.0, gt=0, le=600, description="seconds per OMS request"
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
    def _check_url(cls, value: str) -> str:
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

    @field_validator("project_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: Any) -> Any:
        return _split_ids(value)

    @field_validator("project_ids")
    @classmethod
    def _check_ids(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one project")
        return list(dict.fromkeys(value))

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
    def _check_password_sources(self) -> Settings:
        if self.oms_password is not None and self.oms_password_file is not None:
            raise ValueError("set oms_password or oms_password_file, not both")
        return self

    @property
    def oms_label(self) -> str:
        """Name the OMS instance in the ``oms`` label."""
        if self.oms_name:
            return self.oms_name
        parts = urlsplit(self.oms_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"

    @property
    def stale_after_seconds(self) -> float:
        return self.stale_after if self.stale_after is not None else 3 * self.poll_interval

    def password(self) -> str | None:
        """Return the OMS password, reading the file each call so rotated secrets apply."""
        if self.oms_password is not None:
            return self.oms_password.get_secret_value()
        if self.oms_password_file is not None:
            return self.oms_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        return None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)


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
    field = str(first["loc"][0]) if first["loc"] else ""
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        return f"unknown setting {field!r} in the config file"
    if not field:
        return message
    return f"{field} ({env_name(field)}, {flag_name(field)}): {message}"


def load_settings(cli_values: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Build Settings from every source, or raise ConfigError with one line."""
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"--config: {config_file} is not a readable file")
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"--config: {config_file} is not valid YAML{where}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"--config: {config_file} must hold a mapping of settings")

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=config_file)

    try:
        settings = _FileSettings(**cli_values)
        # Read the password file once now so a broken file fails start-up, not the first poll.
        settings.password()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except OSError as exc:
        raise ConfigError(
            f"oms_password_file ({env_name('oms_password_file')}): cannot be read: {exc.strerror}"
        ) from None
    return settings
