"""Exceptions named for what happened, each mapping to one `reason` label value."""

from __future__ import annotations

from oms_exporter.model import Reason, clean_text


class OmsError(Exception):
    """A poll failed; ``reason`` is what `oms_project_poll_errors_total` counts.

    ``code`` is OMS's own error code (``code``, ``errorCode`` or ``errorDetail.code``) when
    the answer was an OMS envelope, upper case and bounded; None otherwise.
    """

    reason: Reason = Reason.INVALID

    def __init__(self, message: str, *, code: str | None = None) -> None:
        # Error text reaches logs and the status page: bounded and encodable as UTF-8.
        super().__init__(clean_text(message[:300]))
        self.code = code


class OmsTimeout(OmsError):
    reason = Reason.TIMEOUT


class OmsConnectionError(OmsError):
    reason = Reason.CONNECTION


class OmsHttpError(OmsError):
    """A non-2xx answer: an error status, or a redirect (never followed)."""

    reason = Reason.HTTP

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class OmsAuthFailed(OmsError):
    reason = Reason.AUTH


class OmsProjectNotFound(OmsError):
    reason = Reason.NOT_FOUND


class OmsApiError(OmsError):
    """OMS answered ``success: false`` with a business error code (``code``)."""

    reason = Reason.API_ERROR


class OmsActionUnavailable(OmsApiError):
    """OMS said it does not know the Action asked (an older OMS): not about the project."""


class OmsDecodeError(OmsError):
    """The answer was not JSON (an HTML error page, a truncated body) or was too large."""

    reason = Reason.DECODE


class OmsAnswerTooLarge(OmsDecodeError):
    """The answer passed the size cap: a smaller page of ListProjects may still fit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than the {limit}-byte limit")
        self.limit = limit


class OmsInvalidAnswer(OmsError):
    """Well-formed JSON that is not the shape OMS documents."""

    reason = Reason.INVALID


# Transient failures worth retrying; everything else is an answer, just a bad one.
TRANSIENT_ERRORS = (OmsTimeout, OmsConnectionError)


def is_transient(error: OmsError) -> bool:
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, OmsHttpError) and (error.status == 429 or error.status >= 500)
