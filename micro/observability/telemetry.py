"""One observer of a service's calls and messages: metrics, traces, request logs, stats.

:class:`Telemetry` is what the server, the client and the service's broker
hooks report to. For each call it keeps the in-flight gauge and the latency
histogram, counts the outcome by status code, starts and ends the span, names
the call for the logs and, at ``request_log_level``, logs one line for it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from .. import context
from ..errors import GrpcStatus, MicroError
from .logs import REQUEST_ID_KEYS, CallInfo, _enter, _leave
from .metrics import CODE_NAMES, CallInstruments, Instruments, instruments
from .tracing import TracedSpan, Tracer

if TYPE_CHECKING:
    from ..broker.base import Message
    from ..registry.cache import RegistryCache
    from ..server.endpoint import Endpoint

__all__ = ["Telemetry", "TelemetryOptions", "status_of"]

#: topics whose published counter a Telemetry keeps at hand (beyond, it is looked up)
_TOPICS_REMEMBERED = 1024

access_log = logging.getLogger("micro.access")


@dataclass(frozen=True, slots=True)
class TelemetryOptions:
    #: Prometheus metrics, served at ``/metrics``
    metrics: bool = True
    #: OpenTelemetry spans (made once the program sets a tracer provider)
    tracing: bool = True
    #: level of the one-line log of each call (``micro.access``); None for none
    request_log_level: int | None = logging.DEBUG
    #: the OpenTelemetry tracer provider to use instead of the global one
    tracer_provider: Any = None


def status_of(error: BaseException | None) -> tuple[int, str]:
    """The gRPC status code and message a call ended with."""
    if error is None:
        return GrpcStatus.OK, ""
    if isinstance(error, MicroError):
        return error.grpc_status, error.detail
    if isinstance(error, anyio.get_cancelled_exc_class()):
        deadline = context.deadline()
        if deadline is not None and anyio.current_time() >= deadline:
            return GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded"
        return GrpcStatus.CANCELLED, "cancelled"
    return GrpcStatus.INTERNAL, type(error).__name__


class Telemetry:
    """Observes one service's calls (a :class:`~micro.server.server.CallObserver`)."""

    def __init__(
        self, service: str, node: str = "", options: TelemetryOptions | None = None
    ) -> None:
        self.service = service
        self.node = node
        self.options = options = options or TelemetryOptions()
        self.instruments: Instruments | None = instruments() if options.metrics else None
        self.tracer: Tracer | None = (
            Tracer(service, options.tracer_provider) if options.tracing else None
        )
        level = options.request_log_level
        self._log_level = level
        self.started = time.time()
        #: calls handled, and those that ended in an error, since the start
        self.requests = 0
        self.errors = 0
        self.published = 0
        self.delivered = 0
        #: the published counter of each topic published to (up to _TOPICS_REMEMBERED)
        self._published: dict[str, Any] = {}

    # -- server --------------------------------------------------------------

    def server_call(self, endpoint: Endpoint, metadata: Mapping[str, str]) -> _ServerCall:
        name = endpoint.name
        ins = self.instruments.server(self.service, name) if self.instruments else None
        span = self.tracer.server(name, metadata) if self.tracer else None
        request_id = ""
        for key in REQUEST_ID_KEYS:
            if key in metadata:
                request_id = metadata[key]
                break
        info = CallInfo(self.service, self.node, name, request_id, span.trace_id if span else "")
        return _ServerCall(self, name, ins, span, info)

    # -- client --------------------------------------------------------------

    def client_call(
        self, service: str, endpoint: str, metadata: MutableMapping[str, str]
    ) -> _ClientCall:
        ins = self.instruments.client(service, endpoint) if self.instruments else None
        span = self.tracer.client(service, endpoint, metadata) if self.tracer else None
        return _ClientCall(ins, span)

    def watch_cache(self, cache: RegistryCache) -> None:
        if self.instruments is not None:
            self.instruments.watch_cache(cache)

    # -- broker --------------------------------------------------------------

    async def publish(self, message: Message, send: Callable[[Message], Awaitable[None]]) -> None:
        """Publish through ``send``, counted and traced (context in the message's headers)."""
        span = None
        if self.tracer is not None:
            headers = dict(message.headers)
            span = self.tracer.publish(message.topic, headers)
            if span is not None:
                message = dataclasses.replace(message, headers=headers)
        try:
            await send(message)
        except BaseException as exc:
            if self.instruments is not None:
                self.instruments.publish_errors.labels(self.service, message.topic).inc()
            if span is not None:
                span.end(status_of(exc)[0], str(exc))
            raise
        self.published += 1
        if self.instruments is not None:
            counter = self._published.get(message.topic)
            if counter is None:
                counter = self.instruments.published.labels(self.service, message.topic)
                if len(self._published) < _TOPICS_REMEMBERED:
                    self._published[message.topic] = counter
            counter.inc()
        if span is not None:
            span.end(GrpcStatus.OK)

    def subscriber(
        self,
        topic: str,
        queue: str | None,
        handler: Callable[[Message], Awaitable[None]],
    ) -> Callable[[Message], Awaitable[None]]:
        """``handler`` with each delivery counted, traced and named in the logs."""
        counted: dict[str, Any] = {}  # outcome -> its counter, made on first use
        tracer = self.tracer

        def count(outcome: str) -> None:
            counter = counted.get(outcome)
            if counter is None:
                if self.instruments is None:
                    return
                counter = counted[outcome] = self.instruments.delivered.labels(
                    self.service, topic, queue or "", outcome
                )
            counter.inc()

        async def observed(message: Message) -> None:
            span = tracer.deliver(topic, queue, message.headers) if tracer else None
            info = CallInfo(self.service, self.node, f"subscriber {topic}")
            if span is not None:
                info.trace_id = span.trace_id
            token = _enter(info)
            outcome = "ok"
            try:
                await handler(message)
            except BaseException as exc:
                outcome = "error"
                if span is not None:
                    span.end(status_of(exc)[0], str(exc))
                    span = None
                raise
            finally:
                _leave(token)
                self.delivered += 1
                count(outcome)
                if span is not None:
                    span.end(GrpcStatus.OK)

        return observed


def _access(level: int, endpoint: str, code: str, duration_ms: float) -> None:
    """Log a call's line on ``micro.access``.

    The record is made here rather than by ``Logger.log``, which would walk the
    stack to find the caller on every call; the line names the endpoint instead.
    """
    record = access_log.makeRecord(
        access_log.name,
        level,
        __file__,
        0,
        "%s %s %.2fms",
        (endpoint, code, duration_ms),
        None,
        extra={"code": code, "duration_ms": round(duration_ms, 3)},
    )
    access_log.handle(record)


class _ServerCall:
    __slots__ = ("_ins", "_name", "_span", "_start", "_telemetry", "_token")

    def __init__(
        self,
        telemetry: Telemetry,
        name: str,
        ins: CallInstruments | None,
        span: TracedSpan | None,
        info: CallInfo,
    ) -> None:
        self._telemetry = telemetry
        self._name = name
        self._ins = ins
        self._span = span
        self._token = _enter(info)
        self._start = time.perf_counter()
        if ins is not None:
            ins.inflight.inc()

    def end(self, error: BaseException | None) -> None:
        elapsed = time.perf_counter() - self._start
        telemetry = self._telemetry
        telemetry.requests += 1
        code, message = status_of(error) if error is not None else (0, "")
        if code:
            telemetry.errors += 1
        ins = self._ins
        if ins is not None:
            ins.inflight.dec()
            ins.latency.observe(elapsed)
            ins.count(code)
        level = telemetry._log_level
        if level is not None and access_log.isEnabledFor(level):
            _access(level, self._name, CODE_NAMES.get(code, str(code)), elapsed * 1000)
        if self._span is not None:
            self._span.end(code, message)
        _leave(self._token)


class _ClientCall:
    __slots__ = ("_ins", "_span", "_start")

    def __init__(self, ins: CallInstruments | None, span: TracedSpan | None) -> None:
        self._ins = ins
        self._span = span
        self._start = time.perf_counter()
        if ins is not None:
            ins.inflight.inc()

    def end(self, error: BaseException | None) -> None:
        code, message = status_of(error) if error is not None else (0, "")
        ins = self._ins
        if ins is not None:
            ins.inflight.dec()
            ins.latency.observe(time.perf_counter() - self._start)
            ins.count(code)
        if self._span is not None:
            self._span.end(code, message)
