"""OMS's answer envelope, and every way an answer can fail, classified in one place."""

from __future__ import annotations

import json
from typing import Any, Final

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
    return " ".join(str(text).split())[:limit]


def _looks_like_html(body: bytes) -> bool:
    head = body[:256].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<"))


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise OmsDecodeError("empty answer")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        if _looks_like_html(body):
            raise OmsDecodeError("answer is an HTML page, not JSON") from None
        raise OmsDecodeError("answer is not valid JSON") from None


def classify_http_status(status: int, body: bytes) -> OmsError:
    """Turn a non-2xx answer into the error it means, keeping OMS's code if it sent one."""
    detail = ""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            envelope = camel_keys(parsed)
            if envelope.get("code") is not None:
                detail = f" (code {_short(envelope['code'], 60)})"
    except (ValueError, UnicodeDecodeError):
        if _looks_like_html(body):
            detail = " (HTML page)"
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
    code_text = _short(code, 60) if code not in (None, "") else "no code"
    text = f"OMS error {code_text}" + (f": {_short(message)}" if message else "")
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
