"""Metrics, health and readiness, debug stats, traces and structured logs of real services."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

import micro
from micro.health import ServingStatus
from micro.observability import ContextFilter, JsonFormatter, Telemetry, TelemetryOptions
from micro.registry import MemoryRegistry, ServiceRecord

from ..conftest import Greeter, Req, Resp

pytestmark = pytest.mark.anyio


def _name(prefix: str) -> str:
    # Metrics live in one process-wide registry: each test counts its own service.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def _value(text: str, name: str, **labels: str) -> float:
    found = _samples(text, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0]


async def _get(url: str, *, http2: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(http1=not http2, http2=http2) as http:
        return await http.get(url, timeout=10)


@pytest.fixture
async def greeter(registry: MemoryRegistry) -> AsyncIterator[micro.Service]:
    service = micro.Service(_name("observed"), address="127.0.0.1:0", registry=registry)
    service.handle(Greeter())
    async with service.running():
        yield service


# -- metrics ----------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_metrics_count_calls_by_endpoint_and_code(
    greeter: micro.Service, client: micro.Client, http2: bool
) -> None:
    name = greeter.name
    for who in ("a", "b", "c"):
        await client.call(name, "Greeter.Hello", Req(who), Resp)
    with pytest.raises(micro.InternalServerError):
        await client.call(name, "Greeter.Fail", Req("x"), Resp)
    with pytest.raises(micro.NotFound):
        await client.call(name, "Greeter.Missing", Req("x"), Resp)

    response = await _get(f"http://{greeter.address}/metrics", http2=http2)
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    served = "micro_server_requests_total"
    assert _value(text, served, service=name, endpoint="Greeter.Hello", code="OK") == 3
    assert _value(text, served, service=name, endpoint="Greeter.Fail", code="INTERNAL") == 1
    assert _value(text, served, service=name, endpoint="Greeter.Missing", code="NOT_FOUND") == 1
    durations = "micro_server_request_duration_seconds_count"
    assert _value(text, durations, service=name, endpoint="Greeter.Hello") == 3
    assert (
        _value(text, "micro_server_requests_in_flight", service=name, endpoint="Greeter.Hello") == 0
    )
    # The client's side of the same calls, by the service it called.
    called = "micro_client_requests_total"
    assert _value(text, called, service=name, endpoint="Greeter.Hello", code="OK") == 3
    assert _value(text, called, service=name, endpoint="Greeter.Missing", code="NOT_FOUND") == 1
    # The client's registry cache holds at least the service it called.
    assert max(_samples(text, "micro_registry_cache_services")) >= 1
    assert max(_samples(text, "micro_registry_cache_nodes")) >= 1


async def test_metrics_count_timeouts_and_published_and_delivered_messages(
    registry: MemoryRegistry,
) -> None:
    name = _name("events")
    service = micro.Service(name, address="127.0.0.1:0", registry=registry, broker="memory")
    service.handle(Greeter())
    got: list[Req] = []
    arrived = anyio.Event()

    @service.subscriber(f"{name}.created", queue="workers")
    async def on_created(event: Req) -> None:
        got.append(event)
        if event.name == "boom":
            raise RuntimeError("handler failed")
        if len(got) == 3:
            arrived.set()

    async with service.running():
        await service.publish(f"{name}.created", Req("one"))
        with pytest.raises(micro.broker.PublishError, match="RuntimeError"):
            await service.publish(f"{name}.created", Req("boom"))  # told: its handler failed
        await service.publish(f"{name}.created", Req("two"))
        with anyio.fail_after(10):
            await arrived.wait()
        with pytest.raises(micro.Timeout):
            await service.client.call(name, "Greeter.Slow", {"seconds": 5}, Resp, timeout=0.2)
        text = (await _get(f"http://{service.address}/metrics")).text
    topic = f"{name}.created"
    assert _value(text, "micro_broker_published_total", service=name, topic=topic) == 2
    assert _value(text, "micro_broker_publish_errors_total", service=name, topic=topic) == 1
    delivered = "micro_broker_delivered_total"
    ok = _value(text, delivered, service=name, topic=topic, queue="workers", outcome="ok")
    assert ok == 2
    assert _value(text, delivered, service=name, topic=topic, outcome="error") == 1
    code = "DEADLINE_EXCEEDED"
    assert _value(text, "micro_client_requests_total", service=name, code=code) == 1


class Counter:
    async def count(self, req: Req) -> AsyncIterator[Resp]:
        for i in range(3):
            yield Resp(f"{req.name} {i}")


async def test_streams_are_counted_and_traced(registry: MemoryRegistry) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    name = _name("streaming")
    service = micro.Service(name, address="127.0.0.1:0", registry=registry, tracing=provider)
    service.handle(Counter())
    async with service.running():
        async with service.client.stream(name, "Counter.Count", Req("n"), Resp) as stream:
            assert [r.message async for r in stream] == ["n 0", "n 1", "n 2"]
        text = (await _get(f"http://{service.address}/metrics")).text
    labels = {"service": name, "endpoint": "Counter.Count", "code": "OK"}
    assert _value(text, "micro_server_requests_total", **labels) == 1
    assert _value(text, "micro_client_requests_total", **labels) == 1
    kinds = {s.kind for s in exporter.get_finished_spans() if s.name == "Counter.Count"}
    assert kinds == {SpanKind.CLIENT, SpanKind.SERVER}


async def test_metrics_can_be_turned_off(registry: MemoryRegistry) -> None:
    service = micro.Service(_name("quiet"), address="127.0.0.1:0", registry=registry, metrics=False)
    async with service.running():
        response = await _get(f"http://{service.address}/metrics")
    assert response.status_code == 405  # a GET of a path that is not a route


# -- health and readiness -----------------------------------------------------


async def test_liveness_and_readiness_with_default_checks(greeter: micro.Service) -> None:
    live = await _get(f"http://{greeter.address}/health")
    assert live.status_code == 200
    assert live.json() == {"status": "ok", "service": greeter.name, "node": greeter.id}
    for http2 in (False, True):
        ready = await _get(f"http://{greeter.address}/health/ready", http2=http2)
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready"
        assert {name: check["status"] for name, check in body["checks"].items()} == {
            "registry": "ok",
            "store": "ok",
        }


async def test_failing_and_hanging_checks_make_the_service_unready(
    registry: MemoryRegistry, client: micro.Client
) -> None:
    service = micro.Service(_name("checked"), address="127.0.0.1:0", registry=registry)
    service.handle(Greeter())
    database_up = True

    @service.health_check("database")
    async def database() -> None:
        if not database_up:
            raise ConnectionError("database unreachable")

    @service.health_check("slow", timeout=0.2)
    async def slow() -> None:
        if not database_up:
            await anyio.sleep_forever()

    async with service.running():
        url = f"http://{service.address}/health/ready"
        assert (await _get(url)).status_code == 200
        database_up = False
        unready = await _get(url)
        assert unready.status_code == 503
        body = unready.json()
        assert body["status"] == "not ready"
        assert body["reason"] == "failing: database, slow"
        checks = body["checks"]
        assert checks["database"]["status"] == "failing"
        assert checks["database"]["error"] == "ConnectionError: database unreachable"
        assert checks["slow"] == {
            "status": "failing",
            "error": "timed out after 0.2s",
            "duration_ms": checks["slow"]["duration_ms"],
        }
        assert checks["registry"]["status"] == "ok"
        # gRPC health agrees with the HTTP probe, for the whole server and the service.
        assert service.health.get("") == ServingStatus.NOT_SERVING
        status = await client.call(
            service.name, "grpc.health.v1.Health.Check", b"", bytes, content_type="application/grpc"
        )
        assert status == b"\x08\x02"  # NOT_SERVING
        # Liveness is not readiness: the process is still alive.
        assert (await _get(f"http://{service.address}/health")).status_code == 200
        database_up = True
        assert (await _get(url)).status_code == 200
        status = await client.call(
            service.name, "grpc.health.v1.Health.Check", b"", bytes, content_type="application/grpc"
        )
        assert status == b"\x08\x01"  # SERVING


class FlakyRegistry(MemoryRegistry):
    """The memory registry, refusing registrations while ``down``."""

    down = False

    async def register(self, service: ServiceRecord, *, ttl: float | None = None) -> None:
        if self.down:
            raise ConnectionError("registry unreachable")
        await super().register(service, ttl=ttl)


async def test_a_failing_heartbeat_makes_the_service_unready() -> None:
    registry = FlakyRegistry()
    service = micro.Service(
        _name("heartbeat"), address="127.0.0.1:0", registry=registry, register_interval=0.05
    )
    async with service.running():
        assert (await service.readiness()).ready
        registry.down = True
        with anyio.fail_after(10):
            while (result := await service.readiness()).ready:
                await anyio.sleep(0.02)
        registry_check = next(c for c in result.checks if c.name == "registry")
        assert "registry unreachable" in registry_check.error
        registry.down = False
        with anyio.fail_after(10):
            while not (await service.readiness()).ready:
                await anyio.sleep(0.02)


async def test_readiness_drops_while_draining(registry: MemoryRegistry) -> None:
    service = micro.Service(
        _name("draining"), address="127.0.0.1:0", registry=registry, grace_period=10
    )
    greeter = Greeter()
    service.handle(greeter)
    seen: list[micro.health.Readiness] = []

    async def probe() -> None:
        while True:
            result = await service.readiness()
            seen.append(result)
            if not result.ready:
                return
            await anyio.sleep(0.01)

    assert (await service.readiness()).reason == "stopped"
    client = micro.Client(registry=registry)
    async with client, anyio.create_task_group() as tg, service.running():
        address = service.address

        async def slow_call() -> None:
            await client.call(service.name, "Greeter.Slow", {"seconds": 1.0}, Resp, address=address)

        tg.start_soon(slow_call)
        with anyio.fail_after(10):
            while greeter.started == 0:
                await anyio.sleep(0.01)
        tg.start_soon(probe)
        with anyio.fail_after(10):
            while not seen:
                await anyio.sleep(0.01)
        assert seen[0].ready
    # Leaving the block drained the slow call; the probe saw the drain begin.
    assert seen[-1].reason == "draining"
    assert greeter.finished_slow == ["done"]
    assert service.health.get("") == ServingStatus.NOT_SERVING
    assert (await service.readiness()).reason == "stopped"


# -- debug stats ----------------------------------------------------------------


async def test_debug_stats_over_http_and_rpc(greeter: micro.Service, client: micro.Client) -> None:
    await client.call(greeter.name, "Greeter.Hello", Req("a"), Resp)
    with pytest.raises(micro.InternalServerError):
        await client.call(greeter.name, "Greeter.Fail", Req("a"), Resp)
    stats = (await _get(f"http://{greeter.address}/debug/stats")).json()
    assert stats["service"] == greeter.name
    assert stats["requests"] == 2
    assert stats["errors"] == 1
    assert stats["uptime_s"] >= 0
    assert stats["memory_rss_bytes"] > 0
    assert stats["tasks"] >= 1
    assert stats["backend"] in ("asyncio", "trio")
    by_rpc = await client.call(greeter.name, "micro.Debug.Stats", {}, dict)
    assert by_rpc["node"] == greeter.id
    # Calls count when they end: the two above, not this one, which is in flight.
    assert by_rpc["requests"] == 2
    assert by_rpc["inflight"] == 1
    # The debug handler serves operators; it is not advertised as an endpoint.
    record = (await greeter.registry.get_service(greeter.name))[0]
    assert all(not ep.name.startswith("micro.Debug") for ep in record.endpoints)


# -- traces ----------------------------------------------------------------------


@dataclass
class Order:
    item: str


class Front:
    def __init__(self, service: micro.Service, back: str, topic: str) -> None:
        self.service = service
        self.back = back
        self.topic = topic

    async def order(self, req: Order) -> Resp:
        reply = await self.service.client.call(self.back, "Greeter.Hello", Req(req.item), Resp)
        await self.service.publish(self.topic, req)
        return reply


async def test_one_trace_across_two_services_and_a_message(registry: MemoryRegistry) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    back_name, front_name = _name("back"), _name("front")
    topic = f"{front_name}.ordered"
    back = micro.Service(
        back_name, address="127.0.0.1:0", registry=registry, tracing=provider, broker="memory"
    )
    back.handle(Greeter())
    delivered = anyio.Event()

    @back.subscriber(topic)
    async def on_order(order: Order) -> None:
        delivered.set()

    front = micro.Service(
        front_name, address="127.0.0.1:0", registry=registry, tracing=provider, broker="memory"
    )
    front.handle(Front(front, back_name, topic))
    options = TelemetryOptions(tracer_provider=provider)
    async with back.running(), front.running():
        async with micro.Client(registry=registry, telemetry=Telemetry("", options=options)) as c:
            assert await c.call(front_name, "Front.Order", Order("tea"), Resp) == Resp("Hello tea")
        with anyio.fail_after(10):
            await delivered.wait()
            while len(exporter.get_finished_spans()) < 6:
                await anyio.sleep(0.01)
    spans = {(s.name, s.kind): s for s in exporter.get_finished_spans()}
    root = spans[("Front.Order", SpanKind.CLIENT)]
    front_server = spans[("Front.Order", SpanKind.SERVER)]
    back_client = spans[("Greeter.Hello", SpanKind.CLIENT)]
    back_server = spans[("Greeter.Hello", SpanKind.SERVER)]
    produced = spans[(f"{topic} publish", SpanKind.PRODUCER)]
    consumed = spans[(f"{topic} process", SpanKind.CONSUMER)]
    assert root.parent is None
    trace_ids = {s.context.trace_id for s in spans.values()}
    assert trace_ids == {root.context.trace_id}
    assert front_server.parent is not None and front_server.parent.span_id == root.context.span_id
    assert back_client.parent is not None
    assert back_client.parent.span_id == front_server.context.span_id
    assert back_server.parent is not None
    assert back_server.parent.span_id == back_client.context.span_id
    assert produced.parent is not None and produced.parent.span_id == front_server.context.span_id
    assert consumed.parent is not None and consumed.parent.span_id == produced.context.span_id
    assert back_server.attributes is not None
    assert back_server.attributes["rpc.method"] == "Hello"
    assert back_server.attributes["rpc.grpc.status_code"] == 0


async def test_failed_call_marks_its_spans_as_errors(registry: MemoryRegistry) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    service = micro.Service(
        _name("failing"), address="127.0.0.1:0", registry=registry, tracing=provider
    )
    service.handle(Greeter())
    async with service.running():
        with pytest.raises(micro.NotFound):
            await service.client.call(service.name, "Greeter.Missing", Req("bob"), Resp)
    spans = [s for s in exporter.get_finished_spans() if s.name == "Greeter.Missing"]
    assert {s.kind for s in spans} == {SpanKind.CLIENT, SpanKind.SERVER}
    for span in spans:
        assert not span.status.is_ok
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == 5


# -- logs ------------------------------------------------------------------------


class Logging:
    async def work(self, req: Req) -> Resp:
        logging.getLogger("app.orders").info("working for %s", req.name, extra={"items": 3})
        return Resp("done")


async def test_json_logs_name_the_call_they_were_written_in(registry: MemoryRegistry) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("app.orders")
    access = logging.getLogger("micro.access")
    logger.addHandler(handler)
    access.addHandler(handler)
    logger.setLevel(logging.INFO)
    access.setLevel(logging.INFO)
    service = micro.Service(
        _name("logged"),
        address="127.0.0.1:0",
        registry=registry,
        tracing=provider,
        request_log="info",
    )
    service.handle(Logging())
    try:
        async with service.running():
            await service.client.call(
                service.name, "Logging.Work", Req("ann"), Resp, metadata={"X-Request-Id": "req-42"}
            )
            logger.info("outside any call")
    finally:
        logger.removeHandler(handler)
        access.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        access.setLevel(logging.NOTSET)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    work = next(r for r in records if r["message"] == "working for ann")
    server_span = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert work["level"] == "INFO"
    assert work["logger"] == "app.orders"
    assert work["service"] == service.name
    assert work["node"] == service.id
    assert work["endpoint"] == "Logging.Work"
    assert work["request_id"] == "req-42"
    assert work["trace_id"] == format(server_span.context.trace_id, "032x")
    assert work["items"] == 3
    line = next(r for r in records if r["logger"] == "micro.access")
    assert line["endpoint"] == "Logging.Work"
    assert line["code"] == "OK"
    assert line["request_id"] == "req-42"
    assert line["duration_ms"] >= 0
    outside = next(r for r in records if r["message"] == "outside any call")
    assert "endpoint" not in outside and "request_id" not in outside


@pytest.mark.parametrize("protocol", ["http1", "http2", "grpc"])
async def test_traceparent_of_a_plain_caller_is_continued(
    registry: MemoryRegistry, protocol: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    service = micro.Service(
        _name("curlable"), address="127.0.0.1:0", registry=registry, tracing=provider
    )
    service.handle(Greeter())
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = f"00-{trace_id}-{parent_id}-01"
    async with service.running():
        if protocol == "grpc":

            def call() -> bytes:
                with grpc.insecure_channel(service.address) as channel:
                    echo = channel.unary_unary("/Greeter/EchoBytes")
                    reply: bytes = echo(b"hi", metadata=[("traceparent", traceparent)], timeout=10)
                    return reply

            assert await anyio.to_thread.run_sync(call) == b"hi"
        else:
            http2 = protocol == "http2"
            async with httpx.AsyncClient(http1=not http2, http2=http2) as http:
                response = await http.post(
                    f"http://{service.address}/Greeter/Hello",
                    json={"name": "curl"},
                    headers={"traceparent": traceparent},
                )
            assert response.json() == {"message": "Hello curl"}
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id
