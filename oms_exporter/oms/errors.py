"""Exceptions named for what happened, each mapping to one `reason` label value."""

from __future__ import annotations

from oms_exporter.model import Reason, clean_text


class OmsError(Exception):
    """A poll failed; ``reason`` is what `oms_project_poll_errors_total` counts."""

    reason: Reason = Reason.INVALID

    def __init__(self, message: str) -> None:
        # Error text reaches logs and the status page: bounded and encodable as UTF-8.
        super().__init__(clean_text(message[:300]))


class OmsTimeout(OmsError):
    reason = Reason.TIMEOUT


class OmsConnectionError(OmsError):
    reason = Reason.CONNECTION


class OmsHttpError(OmsError):
    """A non-2xx answer: an error status, or a redirect (never followed)."""

    reason = Reason.HTTP

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class OmsAuthFailed(OmsError):
    reason = Reason.AUTH


class OmsProjectNotFound(OmsError):
    reason = Reason.NOT_FOUND


class OmsApiError(OmsError):
    """OMS answered ``success: false`` with a business error code."""

    reason = Reason.API_ERROR


class OmsDecodeError(OmsError):
    """The answer was not JSON (an HTML error page, a truncated body) or was too large."""

    reason = Reason.DECODE


class OmsInvalidAnswer(OmsError):
    """Well-formed JSON that is not the shape OMS documents."""

    reason = Reason.INVALID


# Transient failures worth retrying; everything else is an answer, just a bad one.
TRANSIENT_ERRORS = (OmsTimeout, OmsConnectionError)


def is_transient(error: OmsError) -> bool:
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, OmsHttpError) and (error.status == 429 or error.status >= 500)
