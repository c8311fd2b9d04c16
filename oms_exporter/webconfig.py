"""``--web-config-file``: HTTPS and Basic auth in the Prometheus exporter-toolkit format.

Only the keys this exporter implements are accepted; anything else is refused at start-up
rather than silently ignored, so nobody believes an endpoint is protected when it is not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import bcrypt
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from oms_exporter.settings import ConfigError
from oms_exporter.yamlfile import YamlRefused, load_yaml

UNPROTECTED_PATHS: Final = frozenset({"/healthz"})
_TLS_KEYS: Final = frozenset({"cert_file", "key_file", "min_version"})
_TOP_KEYS: Final = frozenset({"tls_server_config", "basic_auth_users"})
_TLS_VERSIONS: Final = {
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CACHE_SIZE: Final = 64


@functools.cache
def _dummy_hash() -> bytes:
    """Compared against when the user is unknown, so a miss costs what a hit costs.

    Made on first use: a bcrypt hash costs 0.1 s, at every start of every exporter.
    """
    return bcrypt.hashpw(b"unknown-user", bcrypt.gensalt(rounds=10))


def _check(password: bytes, expected: bytes | None) -> bool:
    """bcrypt's check, against the dummy hash for an unknown user (in a thread)."""
    return bcrypt.checkpw(password, expected if expected is not None else _dummy_hash())


@dataclass
class WebConfig:
    ssl_context: ssl.SSLContext | None
    users: dict[str, bytes]
    _verified: dict[bytes, bool] = field(default_factory=dict, repr=False)

    async def allows(self, header: str | None) -> bool:
        """Check a Basic Authorization header; bcrypt's comparison is constant-time."""
        if header is None or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        # bcrypt takes ~50 ms on purpose: remember verified pairs by digest, off the loop.
        key = hashlib.sha256(decoded.encode()).digest()
        if self._verified.get(key):
            return True
        expected = self.users.get(user)
        ok = await asyncio.to_thread(_check, password.encode(), expected)
        ok = ok and expected is not None
        if ok:
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
            self._verified[key] = True
        return ok


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"--web-config-file: {where} must be a mapping")
    return value


def _tls_context(section: dict[str, Any], base: Path) -> ssl.SSLContext:
    unknown = set(section) - _TLS_KEYS
    if unknown:
        raise ConfigError(
            f"--web-config-file: unsupported tls_server_config key {sorted(unknown)[0]!r}"
        )
    cert, key = section.get("cert_file"), section.get("key_file")
    if not cert or not key:
        raise ConfigError("--web-config-file: tls_server_config needs cert_file and key_file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _TLS_VERSIONS.get(
        str(section.get("min_version", "TLS12")), ssl.TLSVersion.TLSv1_2
    )
    try:
        context.load_cert_chain(base / str(cert), base / str(key))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"--web-config-file: cannot load cert_file/key_file: {reason}") from None
    return context


def load_web_config(path: Path) -> WebConfig:
    """Read and check the file; raise ConfigError with one line on any problem."""
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--web-config-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--web-config-file: {path} is not UTF-8 text") from None
    except YamlRefused as exc:
        raise ConfigError(f"--web-config-file: {path} {exc}") from None
    except yaml.YAMLError:
        raise ConfigError(f"--web-config-file: {path} is not valid YAML") from None
    config = _mapping(raw, "the file")
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"--web-config-file: unsupported key {sorted(unknown)[0]!r}")
    tls = _mapping(config.get("tls_server_config"), "tls_server_config")
    users: dict[str, bytes] = {}
    for user, hashed in _mapping(config.get("basic_auth_users"), "basic_auth_users").items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"--web-config-file: basic_auth_users.{user} must be a bcrypt hash")
        users[str(user)] = hashed.encode()
    context = _tls_context(tls, path.parent) if tls else None
    return WebConfig(ssl_context=context, users=users)


def auth_middleware(config: WebConfig) -> Middleware:
    @web.middleware
    async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        protected = config.users and request.path not in UNPROTECTED_PATHS
        if protected and not await config.allows(request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="oms-exporter"'},
            )
        return await handler(request)

    return require_auth
