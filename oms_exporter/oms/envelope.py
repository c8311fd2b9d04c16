"""OMS's answer envelope, and every way an answer can fail, classified in one place."""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

from oms_exporter.model import clean_text, scalar_text
from oms_exporter.oms.errors import (
    OmsActionUnavailable,
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
# OMS's answers nest a handful of levels. orjson refuses beyond 1,024 levels on its own;
# json, which reads what orjson refuses, recurses and fails near 1,000: before it, this bound.
MAX_DEPTH: Final = 64
# Longer integer literals (beyond a Java long's 19 digits and a sign) are unknown, not
# parsed: int() of a 4,000-digit literal costs quadratic time and then overflows float().
_MAX_INT_CHARS: Final = 20
# Everything but quotes and brackets, deleted by bytes.translate (at C speed).
_NOT_STRUCTURE: Final = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_QUOTED: Final = re.compile(rb'"[^"]*"')
_OPENERS: Final = frozenset(b"[{")
_PAIR: Final = re.compile(rb"\{\}|\[\]")
# Below this size, counting brackets first spares most answers the scan; above, it rarely does.
_SMALL: Final = 64 * 1024
# What a project (ListProjects item, DescribeProject) carries beyond what the exporter
# reads: every table of the mapping, the transfer configs, the steps, and the connection
# infos of the source and sink (hosts, ports, database user names). Dropped as they are
# parsed: a page holds one project's mapping at a time, and no other system's address or
# user name ever reaches the model.
_BULKY: Final = frozenset(
    spelling
    for key in (
        "transferMapping",
        "sourceConnectInfo",
        "sinkConnectInfo",
        "commonTransferConfig",
        "structTransferConfig",
        "fullTransferConfig",
        "incrTransferConfig",
        "reverseIncrTransferConfig",
        "extraInfo",
    )
    for spelling in (key, key[:1].upper() + key[1:])
)
# Keys whose values identify another system (the connection infos): never in error text.
_SECRET_KEYS: Final = frozenset(
    {
        "host",
        "port",
        "username",
        "user",
        "password",
        "ip",
        "drcuser",
        "drcpassword",
        "configurl",
        "logproxyip",
        "logproxyport",
        "jdbcurl",
        "url",
        "address",
    }
)
_SECRET_SCAN_NODES: Final = 10_000
_REDACTED: Final = "[redacted]"
# An OMS that does not know an Action answers an error naming it, not the project: a code
# such as ACTION_NOT_FOUND or InvalidAction.NotFound (not TRANSACTION_...), or a message
# such as "Unsupported Action: 'X'" or "Action X is not supported".
_ACTION_CODE: Final = re.compile(r"(?:^|[^A-Z]|INVALID|UNKNOWN|UNSUPPORTED)ACTION")
_UNKNOWN_ACTION: Final = re.compile(
    r"\b(?:unsupported|unknown|invalid|no such|not supported|not support)\s+action\b"
    r"|\baction\s*[:=]?\s*['\"]?[\w.-]*['\"]?\s+(?:is\s+)?"
    r"(?:not supported|unsupported|not found|not exist|does not exist|unknown|invalid)\b",
    re.IGNORECASE,
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
    """A string or number as one clean line; objects and lists (endpoint info) never show."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        return ""
    return clean_text(" ".join(str(text)[: limit * 4].split())[:limit])


def _looks_like_html(body: bytes) -> bool:
    head = body[:256].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<"))


def _brackets(body: bytes) -> bytes:
    """The brackets outside strings, in order; each step a C-speed pass, no list of parts.

    Escaped backslashes go first, then escaped quotes, then every byte but quotes and
    brackets (UTF-8 keeps ASCII bytes out of multi-byte sequences). Two adjacent quotes
    have nothing between them outside a string: removing them drops an empty string or
    joins two strings. What quotes remain enclose strings holding brackets.
    """
    if b"\\" in body:  # most answers escape nothing: two copies of a page saved
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = body.translate(None, _NOT_STRUCTURE)
    text = text.replace(b'""', b"")
    return _QUOTED.sub(b"", text) if b'"' in text else text


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Tell whether arrays and objects nest deeper than ``limit``, without parsing.

    In about one copy of the body: a ListProjects page is megabytes of table names, and
    removing its strings with one regex substitution cost ten times the page. Each pass
    then removes every innermost pair at C speed, so the deepest nesting loses a level a
    pass: a page of 30,000 objects nested 5 deep takes 5 passes, not 60,000 steps of a
    Python loop. What is left once no pair is (brackets that do not pair, or the levels
    beyond ``limit``) is counted the slow way: nothing, for an answer that is JSON.
    """
    if len(body) < _SMALL and body.count(b"[") + body.count(b"{") <= limit:
        return False  # the usual answer: no scan at all
    text = _brackets(body)
    passes = 0
    while passes < limit:
        inner = _PAIR.sub(b"", text)  # one scan: only pairs innermost before it began
        if len(inner) == len(text):
            break
        text, passes = inner, passes + 1
    depth = passes
    for byte in text:
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return True
    return False


def _bounded_int(literal: str) -> int | None:
    """Parse an integer literal OMS could mean; a longer one becomes null (unknown)."""
    return int(literal) if len(literal) <= _MAX_INT_CHARS else None


def _no_constant(_literal: str) -> None:
    """NaN and Infinity are not JSON: unknown."""


def _slim(parsed: Any) -> Any:
    """Drop the bulky keys of the project objects in ``data``, once the body is parsed.

    A hook building every object instead cost three times the parse on a ListProjects
    page (a Python call per table of the mapping); the parsed page lives only this long.
    """
    data = parsed.get("data", parsed.get("Data")) if isinstance(parsed, dict) else None
    for item in data if isinstance(data, list) else (data,):
        if isinstance(item, dict) and not _BULKY.isdisjoint(item):
            for key in _BULKY.intersection(item):
                del item[key]
    return parsed


# Built once: json.loads with hooks builds a decoder per call, a third of a small parse.
_DECODER: Final = json.JSONDecoder(parse_int=_bounded_int, parse_constant=_no_constant)


class _TooDeep(ValueError):
    """Nesting json's recursion cannot be trusted with."""


def _loads(body: bytes) -> Any:
    """Parse UTF-8 JSON; ValueError on anything else (_TooDeep for deep nesting).

    orjson first, at a third of json's cost (a 1 MB ListProjects page: 4 against 13 ms),
    with its own depth limit, so the usual answer is never scanned for nesting (the scan
    cost half the parse of a ListProjects page). What orjson refuses json reads as before,
    once the nesting is known to be shallow: NaN and Infinity (unknown), a BOM, escaped lone
    surrogates, numbers beyond a double, so both read the same answers. An integer beyond
    64 bits becomes a float in orjson, an int in json: beyond 2**63, either is unknown.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if too_deep(body):
            raise _TooDeep from None
        return _DECODER.decode(body.decode("utf-8-sig"))


def decode_json(body: bytes, *, slim: bool = False) -> Any:
    """Parse an answer body, or raise OmsDecodeError saying why it is not JSON.

    ``slim`` drops the bulky parts of the project objects in ``data`` (mapping, configs,
    connection infos), for ListProjects and DescribeProject.
    """
    if not body or body.isspace():  # no copy of the body to tell
        raise OmsDecodeError("empty answer")
    try:
        parsed = _loads(body)
    except _TooDeep:
        raise OmsDecodeError(f"answer nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        if _looks_like_html(body):
            raise OmsDecodeError("answer is an HTML page, not JSON") from None
        raise OmsDecodeError("answer is not valid JSON") from None
    return _slim(parsed) if slim else parsed


def classify_http_status(status: int, body: bytes) -> OmsError:
    """Turn a non-2xx answer into the error it means, keeping OMS's code if it sent one."""
    detail = ""
    code = ""
    try:
        parsed = _loads(body)
    except ValueError:
        parsed = None
        if _looks_like_html(body):
            detail = " (HTML page)"
    if isinstance(parsed, dict):
        envelope = camel_keys(parsed)
        code = _short(envelope.get("code"), 60) or _short(envelope.get("errorCode"), 60)
        if code:
            detail = f" (code {code})"
    if status in (401, 403):
        text = f"OMS refused the credentials: HTTP {status}{detail}"
        return OmsAuthFailed(text, code=code.upper() or None)
    return OmsHttpError(f"HTTP {status}{detail}", status=status, code=code.upper() or None)


def _secrets(value: object) -> set[str]:
    """The values of connection-info keys anywhere in an answer (bounded walk)."""
    found: set[str] = set()
    pending = [value]
    visited = 0
    while pending and visited < _SECRET_SCAN_NODES:
        item = pending.pop()
        visited += 1
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and key.lower() in _SECRET_KEYS:
                    text = scalar_text(child, 256)
                    if len(text) >= 2:
                        found.add(text)
                if isinstance(child, dict | list):
                    pending.append(child)
        elif isinstance(item, list):
            pending.extend(child for child in item if isinstance(child, dict | list))
    return found


def _redact(text: str, secrets: set[str]) -> str:
    """Replace each secret standing as a word of its own (a host, a port, a user name)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            pattern = rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])"
            text = re.sub(pattern, _REDACTED, text)
    return text


def _failure(envelope: dict[str, Any]) -> OmsError:
    """Classify a ``success: false`` answer; its text is what operators read.

    The code is OMS's ``code``, else ``errorCode`` (OCP proxies), else ``errorDetail.code``;
    the message ``errorDetail.message`` first: for GHANA-OPERIE000000 the top-level one is
    a generic "internal error" while the detail says to retry in 5 to 10 minutes.
    """
    detail = envelope.get("errorDetail")
    detail = camel_keys(detail) if isinstance(detail, dict) else {}
    code_text = ""
    for code in (envelope.get("code"), envelope.get("errorCode"), detail.get("code")):
        code_text = _short(code, 240)
        if code_text:
            break
    message_text = _short(detail.get("message"), 480) or _short(envelope.get("message"), 480)
    secrets = _secrets(envelope)
    if secrets:  # redacted before shortening: a cut secret would no longer match
        code_text = _redact(code_text, secrets)
        message_text = _redact(message_text, secrets)
    code_text, message_text = _short(code_text, 60), _short(message_text)
    shown = code_text or "no code"
    text = f"OMS error {shown}" + (f": {message_text}" if message_text else "")
    upper = code_text.upper()
    code = upper or None
    if upper in NOT_FOUND_CODES:
        return OmsProjectNotFound(text, code=code)
    if upper in AUTH_CODES or "AUTH" in upper or "PASSWORD" in upper:
        return OmsAuthFailed(text, code=code)
    if _ACTION_CODE.search(upper):
        return OmsActionUnavailable(text, code=code)
    if "NOT_FOUND" in upper or "NOT_EXIST" in upper:
        return OmsProjectNotFound(text, code=code)
    if _UNKNOWN_ACTION.search(message_text):
        return OmsActionUnavailable(text, code=code)
    return OmsApiError(text, code=code)


def unwrap_envelope(body: bytes, *, slim: bool = False) -> dict[str, Any]:
    """Return a successful answer's envelope (camelCase keys), or raise the classified error.

    Failure is decided by ``success`` alone: successful answers carry ``errorDetail`` and
    codes such as ``"success"``, ``null`` or ``200``. ``slim`` as for decode_json.
    """
    parsed = decode_json(body, slim=slim)
    if not isinstance(parsed, dict):
        raise OmsInvalidAnswer(f"answer is a JSON {type(parsed).__name__}, not an envelope")
    envelope = camel_keys(parsed)
    success = envelope.get("success")
    if isinstance(success, str):
        success = success.strip().lower() == "true"
    if success is not True:
        if "success" not in envelope and "data" not in envelope:
            raise OmsInvalidAnswer("answer has no success field: not an OMS envelope")
        if slim:  # the whole answer: what it says about other systems is redacted
            envelope = camel_keys(decode_json(body))
        raise _failure(envelope)
    envelope.setdefault("data", None)
    return envelope


def unwrap_object(body: bytes, *, slim: bool = False) -> dict[str, Any]:
    """The ``data`` of a successful answer, for the Actions where it is one object."""
    data = unwrap_envelope(body, slim=slim)["data"]
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise OmsInvalidAnswer(f"answer data is {kind}, not an object")
    return camel_keys(data)
