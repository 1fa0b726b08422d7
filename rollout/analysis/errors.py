"""Errors of the analysis package, under the project tree in rollout.core.errors.

    InvalidInput
    └── InvalidQuery          Prometheus could not parse a query (HTTP 400)
    InfrastructureError
    └── MetricQueryError      a query could not be answered (unreachable, 5xx, auth, 422)

"No data" is not an error: a provider returns an empty list and judges report NO_DATA.
"""

from __future__ import annotations

from rollout.core.errors import InfrastructureError, InvalidInput


class InvalidQuery(InvalidInput):
    def __init__(self, message: str, *, query: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.query = query


class MetricQueryError(InfrastructureError):
    def __init__(
        self, message: str, *, query: str, status: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.query = query
        self.status = status
