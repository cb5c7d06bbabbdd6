"""Structured logs: every record carries the call it was logged in.

micro logs through the standard :mod:`logging` module and never prints. While a
call runs, the records logged in it (by micro or by the handler) carry the
fields ``service``, ``node``, ``endpoint``, ``request_id`` and ``trace_id``;
:class:`ContextFilter` puts them on each record and :class:`JsonFormatter`
writes one JSON object per line. :func:`configure_logging` sets both up for a
program that has no logging configuration of its own.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = [
    "CallInfo",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_call",
    "FIELDS",
]

#: The structured fields a record gets while a call runs.
FIELDS = ("service", "node", "endpoint", "request_id", "trace_id")

#: Metadata keys a caller may set to name its request.
REQUEST_ID_KEYS = ("x-request-id", "request-id")


@dataclass(slots=True)
class CallInfo:
    """The call being handled in this context, as logs name it."""

    service: str
    node: str
    endpoint: str
    request_id: str = ""
    trace_id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def ensure_request_id(self) -> str:
        """The caller's request id, or one made up the first time it is needed."""
        if not self.request_id:
            # An id to correlate log lines, not a secret: no need for os.urandom's syscall.
            self.request_id = f"{random.getrandbits(64):016x}"
        return self.request_id


_call: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar("micro_call", default=None)


def current_call() -> CallInfo | None:
    """The call being handled in this context, if any."""
    return _call.get()


def _enter(info: CallInfo) -> contextvars.Token[CallInfo | None]:
    return _call.set(info)


def _leave(token: contextvars.Token[CallInfo | None]) -> None:
    try:
        _call.reset(token)
    except ValueError:
        # Ended in another context than it began in (a generator finalised
        # elsewhere): that context is gone, so there is nothing to restore.
        pass


class ContextFilter(logging.Filter):
    """Adds the current call's fields to each record (empty outside a call)."""

    def __init__(self, *, service: str = "", node: str = "") -> None:
        super().__init__()
        self._service = service
        self._node = node

    def filter(self, record: logging.LogRecord) -> bool:
        info = _call.get()
        if info is None:
            record.service = getattr(record, "service", self._service)
            record.node = getattr(record, "node", self._node)
            record.endpoint = getattr(record, "endpoint", "")
            record.request_id = getattr(record, "request_id", "")
            record.trace_id = getattr(record, "trace_id", "")
        else:
            record.service = info.service
            record.node = info.node
            record.endpoint = info.endpoint
            record.request_id = info.ensure_request_id()
            record.trace_id = info.trace_id or _trace_id()
        return True


def _trace_id() -> str:
    """The id of the current OpenTelemetry trace, when one is being recorded."""
    try:
        from opentelemetry import trace
    except ImportError:
        return ""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, call fields, extras."""

    _second = -1
    _stamp = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per record
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or value in ("", None):
                continue
            out[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD and value not in ("", None)
        ]
        if not extras:
            return line
        head, sep, tail = line.partition("\n")
        return f"{head} {' '.join(extras)}{sep}{tail}"


def configure_logging(
    level: int | str = "INFO",
    *,
    format: str = "text",
    stream: IO[str] | None = None,
    service: str = "",
) -> logging.Handler:
    """Log to ``stream`` (stderr) in ``format`` ``"text"`` or ``"json"``, call fields included.

    Meant for programs (examples, the ``micro`` command, a service's ``main``);
    a library embedding micro keeps its own logging configuration instead.
    Returns the handler installed on the root logger.
    """
    if format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(service=service))
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
