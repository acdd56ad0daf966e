"""What one Prometheus query yielded: a number, or a typed error in Prometheus's own words."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MetricError", "MetricErrorKind", "MetricOutcome", "MetricSample"]


class MetricErrorKind(StrEnum):
    """Every way a metric query can fail; the value doubles as a CamelCase condition reason."""

    EMPTY_RESULT = "EmptyResult"
    """The query matched no series (a typo, or no traffic yet: append `or vector(0)`)."""
    NOT_A_NUMBER = "NotANumber"
    """The value is NaN, e.g. a quantile or ratio over zero requests."""
    INFINITE = "Infinite"
    """The value is +Inf or -Inf, e.g. a division by zero."""
    SEVERAL_SERIES = "SeveralSeries"
    """The query returned more than one series; aggregate it with sum() or max()."""
    UNEXPECTED_RESULT_TYPE = "UnexpectedResultType"
    """A matrix or string result, where a scalar or an instant vector was expected."""
    QUERY_ERROR = "QueryError"
    """Prometheus rejected or failed the query (bad_data, execution, ...)."""
    TIMEOUT = "Timeout"
    """The query took longer than timeoutSeconds, client-side or in Prometheus."""
    HTTP_ERROR = "HttpError"
    """An HTTP error status without a Prometheus error body (a proxy, a 5xx)."""
    UNAUTHORIZED = "Unauthorized"
    """HTTP 401 or 403: the credentials are missing or wrong."""
    TLS_ERROR = "TlsError"
    """The TLS handshake failed, e.g. the certificate is not signed by the given CA."""
    CONNECTION_ERROR = "ConnectionError"
    """Prometheus could not be reached at all."""
    INVALID_RESPONSE = "InvalidResponse"
    """The body was not the JSON the Prometheus API documents."""
    NOT_QUERIED = "NotQueried"
    """No outcome was supplied for this metric."""


@dataclass(frozen=True, slots=True)
class MetricSample:
    """A query answered with one number."""

    value: float


@dataclass(frozen=True, slots=True)
class MetricError:
    """A query that yielded no usable number, and why."""

    kind: MetricErrorKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


MetricOutcome = MetricSample | MetricError
