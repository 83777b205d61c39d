"""The error boundary between the worker and the control plane, in strict hybrid mode.

Prefect writes a task's or flow's exception into its state message ("Task run encountered an
exception ..."), into the events of that state, and, with its traceback, into the run's logs on
the API. An exception's text can quote an input value (DuckDB's "Could not cast value ...", an
HTTP answer's content type or Retry-After, a validation detail), so in strict mode
(``BTC_ARTIFACTS`` other than ``full``) every exception leaving a task or flow of this project
passes :func:`guarded`, and every log record to the API whose arguments hold an exception
passes :class:`_RedactedArgs`. Prefect gets the error class, a reference code and the detail's
length; the full message and traceback go to the ``btc_worker.errors`` logger only (outside
the ``btc_core`` tree that Prefect sends to the API: the worker's console and its own log).

The class is kept for the core's errors (a copy with a safe message), so the retry condition
(:func:`btc_core.errors.is_retryable`) and the Retry-After wait see what they saw before; any
other exception, never retried, becomes a :class:`btc_core.errors.RedactedError` naming its class.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
import uuid
from collections.abc import Callable
from typing import Any, TypeGuard, TypeVar, cast

from prefect.exceptions import PrefectException
from prefect.logging.handlers import APILogHandler

from btc_core.errors import BtcError, ConfigError, RedactedError
from btc_core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

# Outside the btc_core tree (PREFECT_LOGGING_EXTRA_LOGGERS=btc_core) and Prefect's run loggers:
# it propagates to the root logger, the worker's console and log file, never to the API.
worker_log = logging.getLogger("btc_worker.errors")


def strict() -> bool:
    """True when the worker keeps data off the control plane (``BTC_ARTIFACTS`` not ``full``);
    also when the settings cannot be read (their error may quote a value)."""
    try:
        return Settings.from_env().artifacts != "full"
    except ConfigError:
        return True


def redacted(exc: Exception) -> Exception:
    """``exc`` as the control plane may see it: class, reference code, length of the detail.
    The full text goes to the worker's log under the same code."""
    detail = str(exc)
    ref = uuid.uuid4().hex[:8]
    worker_log.error("error %s: %s: %s", ref, type(exc).__name__, detail, exc_info=exc)
    text = f"{type(exc).__name__} (error {ref}: {len(detail)} characters on the worker's log)"
    if isinstance(exc, BtcError):
        # Same class and attributes (retryable, retry_after), in a dict of its own: copy.copy
        # shares the original's __dict__ once tblib (Dask's) registers its exception reducer,
        # and marking the copy redacted then let the original pass unredacted.
        safe = type(exc).__new__(type(exc), text)
        safe.__dict__.update(vars(exc))
        safe.args = (text,)
    else:
        safe = RedactedError(text)
    safe.redacted = True  # type: ignore[attr-defined]
    return safe


def _passes(exc: Exception) -> bool:
    """Exceptions that go to Prefect as they are: already redacted, or Prefect's own signals
    (its messages name runs and states, not data)."""
    return getattr(exc, "redacted", False) or isinstance(exc, PrefectException) or not strict()


def guarded(fn: F) -> F:
    """``fn`` (sync or async) with every exception passed through :func:`redacted` in strict
    mode; decorate the function under Prefect's ``@task`` or ``@flow``."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            install_log_filter()
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if _passes(exc):
                    raise
                raise redacted(exc) from None

        return _typed(run_async, fn)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        install_log_filter()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if _passes(exc):
                raise
            raise redacted(exc) from None

    return _typed(run, fn)


class _RedactedArgs(logging.Filter):
    """On Prefect's API log handler: a record whose arguments hold an exception (the core logs
    ``"%s gave up (%s)", name, exc``, and with ``PREFECT_LOGGING_EXTRA_LOGGERS=btc_core`` those
    lines go to the API) is sent with each such exception redacted, in strict mode."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(worker_log.name):  # the full details: never to the API
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        if not any(_raw(arg) for arg in args) or not strict():
            return True
        safe = logging.makeLogRecord(record.__dict__)
        safe.args = tuple(redacted(arg) if _raw(arg) else arg for arg in args)
        self.handler.handle(safe)
        return False


def _raw(arg: object) -> TypeGuard[Exception]:
    """An exception not redacted yet."""
    return isinstance(arg, Exception) and not getattr(arg, "redacted", False)


def install_log_filter() -> None:
    """Put :class:`_RedactedArgs` on every Prefect API log handler of any logger (the run
    loggers', the extra loggers', the root's if one was given one); idempotent. Called by each
    guarded run, as Prefect may configure its logging again after this module is imported."""
    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    handlers = {
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, APILogHandler)
    }
    for handler in handlers:
        if not any(isinstance(f, _RedactedArgs) for f in handler.filters):
            handler.addFilter(_RedactedArgs(handler))


def _typed(wrapper: Callable[..., Any], fn: F) -> F:
    """``wrapper`` with ``fn``'s signature, its annotations evaluated in ``fn``'s module: Prefect
    validates flow parameters against them, and the wrapper's module does not import the types."""
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    wrapper.__annotations__ = typing.get_type_hints(fn, include_extras=True)
    return cast(F, wrapper)
