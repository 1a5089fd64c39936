"""Logging for billsync: readable lines for people, JSON lines for the daemon, secrets never shown.

Everything - our structlog loggers and the stdlib loggers of requests, urllib3, zeep,
simple_salesforce, intuit-oauth - goes through one handler on the root logger whose
``ProcessorFormatter`` runs the same redaction just before rendering. Redaction works two ways:
values of keys that look secret (``password``, ``refresh_token``, ``Authorization``...) are masked,
and every *known* secret value (from billsync.yaml, or learned at runtime through ``add_secret``,
e.g. a rotated QBO refresh token or a Salesforce session id) is replaced wherever it appears, also
inside URLs, SOAP envelopes, dict reprs and exception texts, in its plain, URL-encoded and
XML-escaped spellings.
"""

from __future__ import annotations

import html
import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO
from urllib.parse import quote, quote_plus

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["MASK", "add_secret", "configure_logging", "get_logger", "redact_event", "redact_text"]

MASK = "***"
_HANDLER_MARK = "_billsync_handler"

# keys whose value is masked whatever it is; matched on the key's last word(s), snake_cased
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|pwd|secret|token|authorization|proxy_authorization|session_?id|sid"
    r"|api_?key|cookie|set_cookie|credentials?|private_key)$"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class _Secrets:
    """The known secret values and one compiled pattern matching any spelling of any of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            before = len(self._values)
            for value in values:
                if not isinstance(value, str) or not value:
                    continue
                self._values.add(value)
                for spelling in (quote(value), quote(value, safe=""), quote_plus(value), html.escape(value)):
                    self._values.add(spelling)
            if len(self._values) != before:
                # longest first, so a secret that contains another is masked whole
                ordered = sorted(self._values, key=len, reverse=True)
                self.pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.pattern = None


_SECRETS = _Secrets()


def add_secret(value: str) -> None:
    """Never show ``value`` in any log line from now on (e.g. a rotated refresh token)."""
    _SECRETS.add([value])


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    return bool(_SECRET_KEY.search(_CAMEL.sub("_", key).lower().replace("-", "_")))


def redact_text(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    pattern = _SECRETS.pattern
    return pattern.sub(MASK, text) if pattern is not None and text else text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth > 20:
        return MASK  # absurdly deep nesting: safer to drop than to walk forever
    if isinstance(value, MutableMapping | dict):
        return {
            k: (MASK if _is_secret_key(k) and v is not None else _redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    # anything else is rendered with repr() later: check that text, keep the object if it is clean
    text = repr(value)
    cleaned = redact_text(text)
    return value if cleaned == text else cleaned


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-looking keys and known secret values anywhere in the event."""
    return {
        key: (MASK if _is_secret_key(key) and value is not None else _redact(value))
        for key, value in event_dict.items()
    }


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # exceptions become text here, so redaction sees them
    ]


def configure_logging(
    *,
    format: Literal["console", "json"],
    level: str,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Send all logging (structlog and stdlib) to ``stream`` (default stderr), redacted.

    Calling it again replaces billsync's handler (secrets registered before are kept).
    """
    _SECRETS.add(secrets)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    target = stream if stream is not None else sys.stderr
    renderer: Processor
    if format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = bool(getattr(target, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_event, renderer],
    )
    handler = logging.StreamHandler(target)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Libraries that narrate routine work at INFO (every migration check, every connection) would
    # bury billsync's own lines; they still speak at DEBUG and above WARNING.
    for chatty in NOISY_LIBRARIES:
        logging.getLogger(chatty).setLevel(
            numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # reconfiguring (tests, `--log-level`) must reach old loggers
    )


NOISY_LIBRARIES = ("alembic", "urllib3", "zeep", "simple_salesforce", "intuitlib", "apscheduler.scheduler")


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (usually ``__name__``)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def _stderr_print_logger(*args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


# Until configure_logging() runs (a library user, an early import-time message), structlog's own
# default would print unredacted events to stdout; this keeps the redaction and uses stderr.
structlog.configure(
    processors=[
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_event,
        structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
    ],
    logger_factory=_stderr_print_logger,
    cache_logger_on_first_use=False,
)
