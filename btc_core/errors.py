"""Typed failures, so orchestrators retry only what is worth retrying.

Every message is one line meant for a person, and never contains a secret.
"""

from __future__ import annotations


class BtcError(Exception):
    """Base class of every failure the pipeline reports on purpose."""

    retryable = False


class ConfigError(BtcError):
    """Wrong settings or arguments: fix the configuration, do not retry."""


class InputError(BtcError):
    """A replay file or payload that cannot be used at all (unreadable, no valid row)."""


class SourceError(BtcError):
    """A price source failed."""


class BadPayload(SourceError):
    """The source answered, but not with what its API promises (drift, HTML, truncated JSON)."""


class ClientError(SourceError):
    """The source refused the request itself (4xx other than 429, e.g. a wrong API key)."""


class RateLimited(SourceError):
    """HTTP 429: try again after ``retry_after`` seconds (from the Retry-After header) if given."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(SourceError):
    """HTTP 5xx from the source."""

    retryable = True


class SourceTimeout(SourceError):
    """Connect or read timeout."""

    retryable = True


class SourceUnreachable(SourceError):
    """Connection refused, DNS failure, reset: the source is down or the URL is wrong."""

    retryable = True


class StoreBusy(BtcError):
    """Another writer held the DuckDB file longer than the configured wait."""

    retryable = True


class RedactedError(BtcError):
    """An unexpected failure, named by its class only: strict hybrid mode keeps its message,
    which may quote a value, on the worker (flows/boundary.py)."""


class NotifyError(BtcError):
    """A notification could not be delivered; the loaded data is kept."""


def is_retryable(exc: BaseException) -> bool:
    """True for failures a retry may cure (429, 5xx, timeouts, unreachable, busy store)."""
    return isinstance(exc, BtcError) and exc.retryable
