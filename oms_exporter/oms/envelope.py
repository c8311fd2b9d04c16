"""OMS's answer envelope, and every way an answer can fail, classified in one place."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from oms_exporter.model import clean_text
from oms_exporter.oms.errors import (
    OmsApiError,
    OmsAuthFailed,
    OmsDecodeError,
    OmsError,
    OmsHttpError,
    OmsInvalidAnswer,
    OmsProjectNotFound,
)

NOT_FOUND_CODES: Final = frozenset({"GHANA-PROJECT000001", "PROJECT_NOT_FOUND_ERROR"})
AUTH_CODES: Final = frozenset(
    {"AUTHENTICATION_ERROR", "USER_NAME_OR_PASSWORD_ERROR", "UNAUTHORIZED", "NO_PERMISSION"}
)
# OMS's answers nest a handful of levels; json's recursion fails near 1,000.
MAX_DEPTH: Final = 64
# Longer integer literals (beyond a Java long's 19 digits and a sign) are unknown, not
# parsed: int() of a 4,000-digit literal costs quadratic time and then overflows float().
_MAX_INT_CHARS: Final = 20
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPENERS: Final = frozenset(b"[{")


def camel_keys(value: dict[str, Any]) -> dict[str, Any]:
    """Accept PascalCase keys (OMS behind Alibaba Cloud / OCP proxies) as camelCase."""
    # OMS itself answers camelCase: no copy. A proxy renames every key, so the first tells.
    first = next(iter(value), None)
    if not (isinstance(first, str) and first[:1].isupper()):
        return value
    return {
        (key[:1].lower() + key[1:] if isinstance(key, str) else key): item
        for key, item in value.items()
    }


def _short(text: object, limit: int = 120) -> str:
    """A string or number as one clean line; objects and lists (endpoint info) never show."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        return ""
    return clean_text(" ".join(str(text)[: limit * 4].split())[:limit])


def _looks_like_html(body: bytes) -> bool:
    head = body[:256].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<"))


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Tell whether arrays and objects nest deeper than ``limit``, without parsing."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the usual answer: no scan at all
        return False
    # UTF-8 keeps every ASCII byte out of multi-byte sequences: brackets are brackets.
    depth = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _bounded_int(literal: str) -> int | None:
    """Parse an integer literal OMS could mean; a longer one becomes null (unknown)."""
    return int(literal) if len(literal) <= _MAX_INT_CHARS else None


def _no_constant(_literal: str) -> None:
    """NaN and Infinity are not JSON: unknown."""


# Built once: json.loads with hooks builds a decoder per call, a third of a small parse.
_DECODER: Final = json.JSONDecoder(parse_int=_bounded_int, parse_constant=_no_constant)


def _loads(body: bytes) -> Any:
    """Parse UTF-8 JSON already known to nest shallowly; ValueError on anything else."""
    return _DECODER.decode(body.decode("utf-8-sig"))


def decode_json(body: bytes) -> Any:
    """Parse an answer body, or raise OmsDecodeError saying why it is not JSON."""
    if not body.strip():
        raise OmsDecodeError("empty answer")
    if too_deep(body):
        raise OmsDecodeError(f"answer nests deeper than {MAX_DEPTH} levels")
    try:
        return _loads(body)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        if _looks_like_html(body):
            raise OmsDecodeError("answer is an HTML page, not JSON") from None
        raise OmsDecodeError("answer is not valid JSON") from None


def classify_http_status(status: int, body: bytes) -> OmsError:
    """Turn a non-2xx answer into the error it means, keeping OMS's code if it sent one."""
    detail = ""
    try:
        parsed = None if too_deep(body) else _loads(body)
    except ValueError:
        parsed = None
        if _looks_like_html(body):
            detail = " (HTML page)"
    if isinstance(parsed, dict):
        code = _short(camel_keys(parsed).get("code"), 60)
        if code:
            detail = f" (code {code})"
    if status in (401, 403):
        return OmsAuthFailed(f"OMS refused the credentials: HTTP {status}{detail}")
    return OmsHttpError(f"HTTP {status}{detail}", status=status)


def _failure(envelope: dict[str, Any]) -> OmsError:
    code = envelope.get("code")
    message = envelope.get("message")
    detail = envelope.get("errorDetail")
    if isinstance(detail, dict):
        detail = camel_keys(detail)
        code = code if code not in (None, "") else detail.get("code")
        message = message if message not in (None, "") else detail.get("message")
    code_text = _short(code, 60) or "no code"
    message_text = _short(message)
    text = f"OMS error {code_text}" + (f": {message_text}" if message_text else "")
    upper = code_text.upper()
    if upper in NOT_FOUND_CODES or "NOT_FOUND" in upper or "NOT_EXIST" in upper:
        return OmsProjectNotFound(text)
    if upper in AUTH_CODES or "AUTH" in upper or "PASSWORD" in upper:
        return OmsAuthFailed(text)
    return OmsApiError(text)


def unwrap_envelope(body: bytes) -> dict[str, Any]:
    """Return a successful answer's envelope (camelCase keys), or raise the classified error.

    Failure is decided by ``success`` alone: successful answers carry ``errorDetail`` and
    codes such as ``"success"``, ``null`` or ``200``.
    """
    parsed = decode_json(body)
    if not isinstance(parsed, dict):
        raise OmsInvalidAnswer(f"answer is a JSON {type(parsed).__name__}, not an envelope")
    envelope = camel_keys(parsed)
    success = envelope.get("success")
    if isinstance(success, str):
        success = success.strip().lower() == "true"
    if success is not True:
        if "success" not in envelope and "data" not in envelope:
            raise OmsInvalidAnswer("answer has no success field: not an OMS envelope")
        raise _failure(envelope)
    envelope.setdefault("data", None)
    return envelope


def unwrap_object(body: bytes) -> dict[str, Any]:
    """The ``data`` of a successful answer, for the Actions where it is one object."""
    data = unwrap_envelope(body)["data"]
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise OmsInvalidAnswer(f"answer data is {kind}, not an object")
    return camel_keys(data)
