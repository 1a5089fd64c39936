"""One error taxonomy for every connector.

Each connector translates its vendor's exceptions and error bodies into these classes, so the sync
engine decides what to do from the class alone::

    ConnectorError
    ├── RetryableError       retry the call, then the job      429, 5xx, timeouts, SOAP server faults
    │   └── RateLimitedError carries retry_after (seconds)
    ├── AuthError            refresh the token / log in again once, then fatal
    ├── FatalError           stop this stream, alert            config, permissions
    └── RecordError          dead-letter this record, go on     validation, duplicate, not found
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error a connector raises; ``code`` is the vendor's own error code."""

    def __init__(self, message: str, *, code: str | None = None, system: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.system = system

    def __str__(self) -> str:
        prefix = f"[{self.system}" + (f" {self.code}" if self.code else "") + "] " if self.system else ""
        return prefix + self.message


class RetryableError(ConnectorError):
    """A transient failure: the same call may succeed later."""


class RateLimitedError(RetryableError):
    """The vendor throttled us; ``retry_after`` is how long it asked us to wait, in seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        system: str | None = None,
    ) -> None:
        super().__init__(message, code=code, system=system)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """Credentials were rejected or expired; refresh or log in again once, then give up."""


class FatalError(ConnectorError):
    """Configuration or permission problem: stop the stream and alert a person."""


class RecordError(ConnectorError):
    """This one record was refused (validation, duplicate, not found); dead-letter it and go on."""


class OutcomeUnknownError(RetryableError):
    """A write may or may not have happened (timeout after sending): look it up before retrying."""
