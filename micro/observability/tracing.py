"""OpenTelemetry spans and W3C trace context for calls and messages.

micro speaks only the OpenTelemetry API: the program chooses the SDK and the
exporter (``opentelemetry-sdk``, OTLP, ...) and sets the tracer provider. Until
it does, no span is made, and the caller's ``traceparent`` still reaches the
services this one calls, because incoming metadata is passed on with each call.

Spans: one per server call (kind SERVER), client call (CLIENT), publish
(PRODUCER) and delivery (CONSUMER), named by endpoint or topic, with the RPC
and messaging attributes of the OpenTelemetry semantic conventions. Context
travels in ``traceparent``/``tracestate`` headers of calls and messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["Tracer", "TracedSpan"]

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # tracing is an extra: micro-runtime[otel]
    trace = None  # type: ignore[assignment]


class TracedSpan:
    """A started span, current in the context that started it until :meth:`end`."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Any, token: object) -> None:
        self.span = span
        self._token = token

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    def end(self, code: int, message: str = "") -> None:
        """End the span; a non-zero gRPC status code marks it as an error."""
        span = self.span
        span.set_attribute("rpc.grpc.status_code", code)
        if code:
            span.set_status(Status(StatusCode.ERROR, message or None))
        span.end()
        if self._token is not None:
            try:
                otel_context.detach(self._token)  # type: ignore[arg-type]
            except ValueError:
                pass  # ended in another context (a generator closed elsewhere)


class Tracer:
    """Makes micro's spans with ``provider``, or the global tracer provider once one is set."""

    def __init__(self, service: str, provider: Any = None) -> None:
        self.service = service
        self._provider: Any = None
        self._tracer: Any = None
        if provider is not None and trace is not None:
            self._provider = provider
            self._tracer = provider.get_tracer("micro")
        self._fixed = provider is not None
        # Whether the environment names a provider, read once: asking
        # get_tracer_provider() before one is set reads the environment on
        # every call (a few per cent of the CPU a call costs).
        self._env_names_provider = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ

    def _current(self) -> Any:
        """The tracer of the provider in use, or None while none is set."""
        if trace is None or self._fixed:
            return self._tracer
        provider = getattr(trace, "_TRACER_PROVIDER", None)
        if provider is None:
            if not self._env_names_provider:
                return None  # none set yet
            provider = trace.get_tracer_provider()
        if provider is not self._provider:
            self._provider = provider
            self._tracer = (
                None
                if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
                else provider.get_tracer("micro")
            )
        return self._tracer

    def server(self, endpoint: str, metadata: Mapping[str, str]) -> TracedSpan | None:
        tracer = self._current()
        if tracer is None:
            return None
        parent = propagate.extract(metadata) if "traceparent" in metadata else None
        return self._start(tracer, endpoint, SpanKind.SERVER, parent, _rpc(self.service, endpoint))

    def client(
        self, service: str, endpoint: str, metadata: MutableMapping[str, str]
    ) -> TracedSpan | None:
        tracer = self._current()
        if tracer is None:
            return None
        started = self._start(tracer, endpoint, SpanKind.CLIENT, None, _rpc(service, endpoint))
        propagate.inject(metadata)
        return started

    def publish(self, topic: str, headers: MutableMapping[str, str]) -> TracedSpan | None:
        tracer = self._current()
        if tracer is None:
            return None
        attrs = {"messaging.system": "micro", "messaging.destination.name": topic}
        started = self._start(tracer, f"{topic} publish", SpanKind.PRODUCER, None, attrs)
        propagate.inject(headers)
        return started

    def deliver(
        self, topic: str, queue: str | None, headers: Mapping[str, str]
    ) -> TracedSpan | None:
        tracer = self._current()
        if tracer is None:
            return None
        parent = propagate.extract(headers) if "traceparent" in headers else None
        attrs = {
            "messaging.system": "micro",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": queue or "",
            "messaging.operation.type": "process",
        }
        return self._start(tracer, f"{topic} process", SpanKind.CONSUMER, parent, attrs)

    @staticmethod
    def _start(
        tracer: Any, name: str, kind: Any, parent: Any, attributes: dict[str, str]
    ) -> TracedSpan:
        span = tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return TracedSpan(span, token)


def _rpc(service: str, endpoint: str) -> dict[str, str]:
    handler, _, method = endpoint.rpartition(".")
    return {
        "rpc.system": "micro",
        "rpc.service": f"{service}.{handler}" if handler else service,
        "rpc.method": method or endpoint,
    }
