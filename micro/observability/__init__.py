"""Observability: structured logs, OpenTelemetry traces, Prometheus metrics, debug stats.

Every service reports to its :class:`Telemetry`: the listener serves the
metrics at ``GET /metrics`` and the debug stats at ``GET /debug/stats`` (and
the ``micro.Debug.Stats`` endpoint); spans are made once the program sets an
OpenTelemetry tracer provider; each call's records carry its fields.
"""

from .logs import (
    CallInfo,
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    current_call,
)
from .metrics import exposition, instruments
from .stats import DEBUG_NAME, DebugService, memory_rss, runtime_stats
from .telemetry import Telemetry, TelemetryOptions, status_of
from .tracing import Tracer

__all__ = [
    "DEBUG_NAME",
    "CallInfo",
    "DebugService",
    "ContextFilter",
    "JsonFormatter",
    "Telemetry",
    "TelemetryOptions",
    "TextFormatter",
    "Tracer",
    "configure_logging",
    "current_call",
    "exposition",
    "instruments",
    "memory_rss",
    "runtime_stats",
    "status_of",
]
