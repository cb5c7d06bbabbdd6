"""micro and grpcio interoperate, both ways, with code generated from a real .proto.

grpcio clients (``grpc.aio`` under asyncio; under Trio the sync API, each blocking
call in a worker thread) call a micro server, and micro's client calls grpcio
servers (``grpc.aio.server`` under asyncio, ``grpc.server`` with a thread pool
under Trio): all four call kinds, metadata, deadlines and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import grpc
import grpc.aio
import pytest

import micro
from micro.registry import MemoryRegistry

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "grpc_interop"
PROTO = EXAMPLE / "routeguide.proto"

# The modules generated from routeguide.proto, imported by the `generated` fixture.
# Handler annotations name them as strings, resolved when a handler is registered.
pb: Any = None
pb_grpc: Any = None

# Latitudes that make the test servers misbehave.
MISSING, INVALID, CRASH, SLOW = 404, 400, 500, 408
FAIL_AFTER_SOME = -1  # a rectangle's lo.longitude: end ListFeatures with an error
FAIL = "fail: "  # a RouteNote message's prefix: end the chat with the rest as the error
WAIT = "wait"  # a RouteNote message: the handler waits until the call is cancelled

CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


@pytest.fixture(scope="session", autouse=True)
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Generate routeguide_pb2 and routeguide_pb2_grpc into a temporary folder."""
    global pb, pb_grpc
    out = tmp_path_factory.mktemp("routeguide_gen")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO.parent}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO),
        ],
        check=True,
    )
    sys.path.insert(0, str(out))
    try:
        pb = importlib.import_module("routeguide_pb2")
        pb_grpc = importlib.import_module("routeguide_pb2_grpc")
        yield out
    finally:
        sys.path.remove(str(out))


# -- micro serving, grpcio calling ---------------------------------------------


class Guide:
    """A micro RouteGuide that records what its handlers saw."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.remaining: list[float | None] = []
        self.outcomes: list[str] = []

    def _saw(self) -> None:
        self.metadata.append(dict(micro.context.metadata()))
        self.remaining.append(micro.context.remaining())

    async def _wait_for_cancel(self) -> None:
        self.outcomes.append("waiting")
        try:
            await anyio.sleep(3600)
        except BaseException:
            self.outcomes.append("cancelled")
            raise

    async def get_feature(self, point: pb.Point) -> pb.Feature:
        self._saw()
        if point.latitude == MISSING:
            raise micro.NotFound(f"no feature at {point.latitude},{point.longitude}")
        if point.latitude == INVALID:
            raise micro.BadRequest("latitude out of range")
        if point.latitude == CRASH:
            raise RuntimeError("secret internals")
        if point.latitude == SLOW:
            await self._wait_for_cancel()
        return pb.Feature(name=f"feature {point.latitude},{point.longitude}", location=point)

    async def list_features(self, rect: pb.Rectangle) -> AsyncIterator[pb.Feature]:
        self._saw()
        for lat in range(rect.lo.latitude, rect.hi.latitude):
            yield pb.Feature(name=f"f{lat}", location=pb.Point(latitude=lat))
        if rect.lo.longitude == FAIL_AFTER_SOME:
            raise micro.Unavailable("the map ran out")

    async def record_route(self, points: AsyncIterator[pb.Point]) -> pb.RouteSummary:
        self._saw()
        summary = pb.RouteSummary()
        async for point in points:
            summary.point_count += 1
            summary.distance += point.latitude
        return summary

    async def route_chat(self, notes: AsyncIterator[pb.RouteNote]) -> AsyncIterator[pb.RouteNote]:
        self._saw()
        async for note in notes:
            if note.message.startswith(FAIL):
                raise micro.MicroError(note.message.removeprefix(FAIL), code=412)
            if note.message == WAIT:
                await self._wait_for_cancel()
            yield pb.RouteNote(location=note.location, message=note.message.upper())


class Explicit:
    """A bidirectional handler on micro.Stream that speaks first."""

    async def route_chat(self, stream: micro.Stream[pb.RouteNote, pb.RouteNote]) -> None:
        await stream.send(pb.RouteNote(message="hello"))
        async for note in stream:
            await stream.send(pb.RouteNote(message=f"{stream.received}: {note.message}"))


@pytest.fixture
async def guide(registry: MemoryRegistry) -> AsyncIterator[tuple[str, Guide]]:
    service = micro.Service("routeguide", address="127.0.0.1:0", registry=registry, grace_period=2)
    handler = Guide()
    service.handle(handler, name="routeguide.RouteGuide")
    service.handle(Explicit(), name="routeguide.Explicit")
    async with service.running():
        yield service.address, handler


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]


class Chat:
    """Both directions of a grpcio bidirectional call."""

    def __init__(self, call: Any, requests: queue.Queue[Any] | None) -> None:
        self._call = call
        self._requests = requests  # the sync API's request iterator reads this queue

    async def write(self, message: Any) -> None:
        if self._requests is None:
            await self._call.write(message)
        else:
            self._requests.put(message)

    async def done_writing(self) -> None:
        if self._requests is None:
            await self._call.done_writing()
        else:
            self._requests.put(None)

    async def read(self) -> Any:
        """The next response, or None at the end; raises grpc.RpcError on an error status."""
        if self._requests is None:
            message = await self._call.read()
            return None if message is grpc.aio.EOF else message
        return await anyio.to_thread.run_sync(next, self._call, None)


class GrpcioClient:
    """A grpcio channel and RouteGuide stub, driven from async tests on either backend.

    Under asyncio it is ``grpc.aio``; under Trio it is grpcio's sync API with
    each blocking call in a worker thread (every call has a grpc timeout, so
    no thread outlives a test).
    """

    def __init__(self, channel: Any, aio: bool) -> None:
        self.channel = channel
        self.aio = aio
        self.stub = pb_grpc.RouteGuideStub(channel)

    def method(self, kind: str, path: str, response_type: Any) -> Any:
        """A multicallable for any path: ``kind`` is ``unary_unary``, ``stream_stream``..."""
        factory = getattr(self.channel, kind)
        return factory(
            path, request_serializer=_serialize, response_deserializer=response_type.FromString
        )

    async def _blocking(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def unary(self, fn: Any, request: Any, *, timeout: float = 5, metadata: Any = ()) -> Any:
        if self.aio:
            return await fn(request, timeout=timeout, metadata=metadata)
        return await self._blocking(fn, request, timeout=timeout, metadata=metadata)

    async def client_stream(
        self, fn: Any, requests: list[Any], *, timeout: float = 5, metadata: Any = ()
    ) -> Any:
        if self.aio:
            return await fn(iter(requests), timeout=timeout, metadata=metadata)
        return await self._blocking(fn, iter(requests), timeout=timeout, metadata=metadata)

    async def server_stream(
        self, fn: Any, request: Any, *, timeout: float = 5, metadata: Any = ()
    ) -> tuple[list[Any], grpc.RpcError | None]:
        """The messages received and the error that ended the call, if any."""
        got: list[Any] = []
        if self.aio:
            try:
                async for message in fn(request, timeout=timeout, metadata=metadata):
                    got.append(message)
            except grpc.RpcError as exc:
                return got, exc
            return got, None

        def collect() -> tuple[list[Any], grpc.RpcError | None]:
            try:
                for message in fn(request, timeout=timeout, metadata=metadata):
                    got.append(message)
            except grpc.RpcError as exc:
                return got, exc
            return got, None

        return await anyio.to_thread.run_sync(collect)

    @contextlib.asynccontextmanager
    async def chat(self, fn: Any, *, timeout: float = 5, metadata: Any = ()) -> AsyncIterator[Chat]:
        if self.aio:
            call = fn(timeout=timeout, metadata=metadata)
            try:
                yield Chat(call, None)
            finally:
                call.cancel()  # a no-op once the call has ended
            return
        requests: queue.Queue[Any] = queue.Queue()
        responses = fn(iter(requests.get, None), timeout=timeout, metadata=metadata)
        try:
            yield Chat(responses, requests)
        finally:
            requests.put(None)
            responses.cancel()


@contextlib.asynccontextmanager
async def open_grpcio(
    address: str, backend: str, compression: grpc.Compression | None = None
) -> AsyncIterator[GrpcioClient]:
    """A grpcio client of ``address`` suited to the test's backend."""
    if backend == "asyncio":
        aio_channel = grpc.aio.insecure_channel(
            address, options=CHANNEL_OPTIONS, compression=compression
        )
        try:
            yield GrpcioClient(aio_channel, aio=True)
        finally:
            await aio_channel.close()
    else:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS, compression=compression)
        try:
            yield GrpcioClient(channel, aio=False)
        finally:
            channel.close()


@pytest.fixture
async def grpcio_client(
    guide: tuple[str, Guide], anyio_backend: str
) -> AsyncIterator[GrpcioClient]:
    async with open_grpcio(guide[0], anyio_backend) as client:
        yield client


async def test_grpcio_unary(grpcio_client: GrpcioClient) -> None:
    point = pb.Point(latitude=409146138, longitude=-746188906)
    feature = await grpcio_client.unary(grpcio_client.stub.GetFeature, point)
    assert feature == pb.Feature(name="feature 409146138,-746188906", location=point)


async def test_grpcio_server_stream(grpcio_client: GrpcioClient) -> None:
    stub = grpcio_client.stub
    rect = pb.Rectangle(lo=pb.Point(latitude=3), hi=pb.Point(latitude=8))
    got, error = await grpcio_client.server_stream(stub.ListFeatures, rect)
    assert error is None
    assert [f.name for f in got] == ["f3", "f4", "f5", "f6", "f7"]
    empty = pb.Rectangle(lo=pb.Point(latitude=3), hi=pb.Point(latitude=3))
    assert await grpcio_client.server_stream(stub.ListFeatures, empty) == ([], None)


async def test_grpcio_client_stream(grpcio_client: GrpcioClient) -> None:
    points = [pb.Point(latitude=i, longitude=-i) for i in range(100)]
    summary = await grpcio_client.client_stream(grpcio_client.stub.RecordRoute, points)
    assert summary == pb.RouteSummary(point_count=100, distance=sum(range(100)))


async def test_grpcio_bidi_stream_interleaves(grpcio_client: GrpcioClient) -> None:
    async with grpcio_client.chat(grpcio_client.stub.RouteChat) as chat:
        for i in range(10):
            note = pb.RouteNote(location=pb.Point(latitude=i), message=f"note {i}")
            await chat.write(note)
            assert await chat.read() == pb.RouteNote(location=note.location, message=f"NOTE {i}")
        await chat.done_writing()
        assert await chat.read() is None


async def test_grpcio_bidi_with_explicit_stream_handler(grpcio_client: GrpcioClient) -> None:
    route_chat = grpcio_client.method(
        "stream_stream", "/routeguide.Explicit/RouteChat", pb.RouteNote
    )
    async with grpcio_client.chat(route_chat) as chat:
        assert (await chat.read()).message == "hello"  # the handler speaks first
        await chat.write(pb.RouteNote(message="a"))
        assert (await chat.read()).message == "1: a"
        await chat.write(pb.RouteNote(message="b"))
        assert (await chat.read()).message == "2: b"
        await chat.done_writing()
        assert await chat.read() is None


async def test_grpcio_large_messages(grpcio_client: GrpcioClient) -> None:
    text = "abcdefgh" * 256 * 1024  # 2 MiB: several flow-control windows' worth of frames
    async with grpcio_client.chat(grpcio_client.stub.RouteChat) as chat:
        for _ in range(2):
            await chat.write(pb.RouteNote(message=text))
            assert (await chat.read()).message == text.upper()
        await chat.done_writing()
        assert await chat.read() is None


async def test_grpcio_concurrent_calls_on_one_channel(grpcio_client: GrpcioClient) -> None:
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        feature = await grpcio_client.unary(
            grpcio_client.stub.GetFeature, pb.Point(latitude=i, longitude=i)
        )
        results[i] = feature.name

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(one, i)
    assert results == {i: f"feature {i},{i}" for i in range(60)}


async def test_grpcio_metadata_reaches_handlers(
    grpcio_client: GrpcioClient, guide: tuple[str, Guide]
) -> None:
    handler = guide[1]
    metadata = (("x-request-id", "42"), ("x-tenant", "acme"))
    stub = grpcio_client.stub
    await grpcio_client.unary(stub.GetFeature, pb.Point(latitude=1), metadata=metadata)
    async with grpcio_client.chat(stub.RouteChat, metadata=metadata) as chat:
        await chat.write(pb.RouteNote(message="m"))
        assert (await chat.read()).message == "M"
        await chat.done_writing()
        assert await chat.read() is None
    assert len(handler.metadata) == 2
    for seen in handler.metadata:
        assert seen["x-request-id"] == "42"
        assert seen["x-tenant"] == "acme"
        # Transport headers grpcio sends are not user metadata.
        assert not {"user-agent", "te", "content-type"} & seen.keys()
        assert not any(k.startswith(("grpc-", ":")) for k in seen)


async def test_grpcio_deadline_cancels_the_handler(
    grpcio_client: GrpcioClient, guide: tuple[str, Guide]
) -> None:
    handler = guide[1]
    with pytest.raises(grpc.RpcError) as info:
        await grpcio_client.unary(
            grpcio_client.stub.GetFeature, pb.Point(latitude=SLOW), timeout=0.5
        )
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with anyio.fail_after(5):
        while handler.outcomes != ["waiting", "cancelled"]:
            await anyio.sleep(0.01)
    # The handler saw the caller's deadline as its own.
    remaining = handler.remaining[-1]
    assert remaining is not None and 0 < remaining <= 0.5
    # The connection carries on.
    feature = await grpcio_client.unary(grpcio_client.stub.GetFeature, pb.Point(latitude=2))
    assert feature.name == "feature 2,0"


@pytest.mark.parametrize(
    ("latitude", "code", "http", "details"),
    [
        (MISSING, grpc.StatusCode.NOT_FOUND, 404, "no feature at 404,7"),
        (INVALID, grpc.StatusCode.INVALID_ARGUMENT, 400, "latitude out of range"),
        (CRASH, grpc.StatusCode.INTERNAL, 500, None),
    ],
    ids=["not-found", "bad-request", "crash"],
)
async def test_grpcio_sees_micro_errors_as_status_codes(
    grpcio_client: GrpcioClient,
    latitude: int,
    code: grpc.StatusCode,
    http: int,
    details: str | None,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        await grpcio_client.unary(
            grpcio_client.stub.GetFeature, pb.Point(latitude=latitude, longitude=7)
        )
    error = info.value
    assert error.code() == code
    if details is not None:
        assert error.details() == details
    else:  # an unexpected exception: a safe message naming the endpoint, not the exception
        assert "secret" not in error.details()
        assert "GetFeature" in error.details()
    # micro's own error travels beside the gRPC status, for micro clients.
    trailers = dict(error.trailing_metadata() or ())
    micro_error = json.loads(trailers["micro-error"])
    assert micro_error["code"] == http
    assert micro_error["id"] == "routeguide"
    # The connection carries on.
    feature = await grpcio_client.unary(grpcio_client.stub.GetFeature, pb.Point(latitude=3))
    assert feature.name == "feature 3,0"


@pytest.mark.parametrize(
    "path",
    ["/routeguide.RouteGuide/NoSuchMethod", "/routeguide.Nowhere/GetFeature", "/Nope/Nope"],
)
async def test_grpcio_unknown_method_is_unimplemented(
    grpcio_client: GrpcioClient, path: str
) -> None:
    fn = grpcio_client.method("unary_unary", path, pb.Feature)
    with pytest.raises(grpc.RpcError) as info:
        await grpcio_client.unary(fn, pb.Point(latitude=1))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == f"unknown endpoint {path[1:].replace('/', '.')}"
    # The same for a streaming call. (Not a bidirectional one that writes at once:
    # grpc.aio may then report INTERNAL instead of the status it received, grpc/grpc#36066.)
    fn = grpcio_client.method("unary_stream", path, pb.Feature)
    got, error = await grpcio_client.server_stream(fn, pb.Point(latitude=1))
    assert got == []
    assert error is not None and error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_grpcio_server_stream_error_after_messages(grpcio_client: GrpcioClient) -> None:
    rect = pb.Rectangle(lo=pb.Point(latitude=0, longitude=FAIL_AFTER_SOME), hi=pb.Point(latitude=3))
    got, error = await grpcio_client.server_stream(grpcio_client.stub.ListFeatures, rect)
    assert [f.name for f in got] == ["f0", "f1", "f2"]
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "the map ran out"


async def test_grpcio_empty_messages(grpcio_client: GrpcioClient) -> None:
    # A request and a response that serialize to zero bytes.
    feature = await grpcio_client.unary(grpcio_client.stub.GetFeature, pb.Point())
    assert feature.name == "feature 0,0"
    summary = await grpcio_client.client_stream(grpcio_client.stub.RecordRoute, [pb.Point()] * 3)
    assert summary == pb.RouteSummary(point_count=3)
    assert (await grpcio_client.client_stream(grpcio_client.stub.RecordRoute, [])).ByteSize() == 0


async def test_grpcio_non_ascii_error_details(grpcio_client: GrpcioClient) -> None:
    # grpc-message is percent-encoded UTF-8; grpcio decodes what micro encoded.
    async with grpcio_client.chat(grpcio_client.stub.RouteChat) as chat:
        await chat.write(pb.RouteNote(message=FAIL + "café ✓ 100%\nnext line"))
        with pytest.raises(grpc.RpcError) as info:
            await chat.read()
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "café ✓ 100%\nnext line"


async def test_grpcio_cancel_cancels_the_handler(
    grpcio_client: GrpcioClient, guide: tuple[str, Guide]
) -> None:
    handler = guide[1]
    async with grpcio_client.chat(grpcio_client.stub.RouteChat) as chat:
        await chat.write(pb.RouteNote(message="a"))
        assert (await chat.read()).message == "A"
        await chat.write(pb.RouteNote(message=WAIT))
        with anyio.fail_after(5):
            while handler.outcomes != ["waiting"]:
                await anyio.sleep(0.01)
    # Leaving the block cancelled the call (RST_STREAM): micro cancelled the handler.
    with anyio.fail_after(5):
        while handler.outcomes != ["waiting", "cancelled"]:
            await anyio.sleep(0.01)
    feature = await grpcio_client.unary(grpcio_client.stub.GetFeature, pb.Point(latitude=5))
    assert feature.name == "feature 5,0"


async def test_grpcio_stream_in_flight_finishes_during_graceful_stop(
    registry: MemoryRegistry, anyio_backend: str
) -> None:
    service = micro.Service("routeguide", address="127.0.0.1:0", registry=registry, grace_period=10)
    service.handle(Guide(), name="routeguide.RouteGuide")
    stop = anyio.Event()
    stopped = anyio.Event()

    async def run_service(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with service.running():
            task_status.started()
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as tg:
        await tg.start(run_service)
        host, port = service.address.rsplit(":", 1)
        async with open_grpcio(service.address, anyio_backend) as grpcio_client:
            stub = grpcio_client.stub
            async with grpcio_client.chat(stub.RouteChat) as chat:
                await chat.write(pb.RouteNote(message="before"))
                assert (await chat.read()).message == "BEFORE"
                stop.set()
                with anyio.fail_after(5):  # draining has begun once the port is closed
                    while True:
                        try:
                            await (await anyio.connect_tcp(host, int(port))).aclose()
                        except OSError:
                            break
                        await anyio.sleep(0.01)
                # New calls are refused, the call in flight goes on to its end.
                with pytest.raises(grpc.RpcError) as info:
                    await grpcio_client.unary(stub.GetFeature, pb.Point(), timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                await chat.write(pb.RouteNote(message="during"))
                assert (await chat.read()).message == "DURING"
                await chat.done_writing()
                assert await chat.read() is None
            # With nothing left in flight the service stops without waiting out its grace.
            with anyio.fail_after(5):
                await stopped.wait()


async def test_grpcio_gzip_compressed_requests(
    guide: tuple[str, Guide], anyio_backend: str
) -> None:
    text = "compressible " * 1000  # large and repetitive enough that grpcio does compress
    async with (
        open_grpcio(guide[0], anyio_backend, grpc.Compression.Gzip) as grpcio_client,
        grpcio_client.chat(grpcio_client.stub.RouteChat) as chat,
    ):
        await chat.write(pb.RouteNote(message=text))
        try:
            reply = await chat.read()
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNIMPLEMENTED, (exc.code(), exc.details())
        else:
            assert reply.message == text.upper()


# -- grpcio serving, micro calling ---------------------------------------------


class Seen:
    """What a grpcio servicer saw (appended to from grpcio's threads or loop)."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.remaining: list[float | None] = []
        self.outcomes: list[str] = []

    def saw(self, context: Any) -> None:
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        self.remaining.append(context.time_remaining())


def _features(rect: Any) -> Iterator[Any]:
    for lat in range(rect.lo.latitude, rect.hi.latitude):
        yield pb.Feature(name=f"f{lat}", location=pb.Point(latitude=lat))


def _summary(points: list[Any]) -> Any:
    return pb.RouteSummary(point_count=len(points), distance=sum(p.latitude for p in points))


class AioServicer:
    """The RouteGuide servicer for ``grpc.aio.server`` (asyncio)."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def _wait_for_cancel(self) -> None:
        """Wait until grpc.aio cancels this handler's task (the call was reset or timed out)."""
        self.seen.outcomes.append("waiting")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.seen.outcomes.append("cancelled")
            raise

    async def GetFeature(self, request: Any, context: Any) -> Any:
        self.seen.saw(context)
        if request.latitude == MISSING:
            await context.abort(grpc.StatusCode.NOT_FOUND, "x")
        if request.latitude == CRASH:
            raise RuntimeError("boom")
        if request.latitude == SLOW:
            await self._wait_for_cancel()
        return pb.Feature(name=f"grpcio {request.latitude}", location=request)

    async def ListFeatures(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.seen.saw(context)
        for feature in _features(request):
            yield feature
        if request.lo.longitude == FAIL_AFTER_SOME:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the map ran out")

    async def RecordRoute(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        self.seen.saw(context)
        return _summary([p async for p in request_iterator])

    async def RouteChat(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        self.seen.saw(context)
        async for note in request_iterator:
            if note.message == WAIT:
                # Waiting shows the cancellation: a request iterator that is cancelled
                # just ends in grpc.aio, as if the caller had half-closed.
                await self._wait_for_cancel()
            yield pb.RouteNote(location=note.location, message=note.message.upper())


class SyncServicer:
    """The same servicer for ``grpc.server`` (a thread per call)."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def _wait_for_cancel(self, context: Any) -> None:
        """Wait until the call ends (it was reset or timed out)."""
        self.seen.outcomes.append("waiting")
        ended = threading.Event()
        context.add_callback(ended.set)
        ended.wait(10)
        self.seen.outcomes.append("timed out" if context.is_active() else "cancelled")

    def GetFeature(self, request: Any, context: Any) -> Any:
        self.seen.saw(context)
        if request.latitude == MISSING:
            context.abort(grpc.StatusCode.NOT_FOUND, "x")
        if request.latitude == CRASH:
            raise RuntimeError("boom")
        if request.latitude == SLOW:
            self._wait_for_cancel(context)
        return pb.Feature(name=f"grpcio {request.latitude}", location=request)

    def ListFeatures(self, request: Any, context: Any) -> Iterator[Any]:
        self.seen.saw(context)
        yield from _features(request)
        if request.lo.longitude == FAIL_AFTER_SOME:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the map ran out")

    def RecordRoute(self, request_iterator: Iterator[Any], context: Any) -> Any:
        self.seen.saw(context)
        return _summary(list(request_iterator))

    def RouteChat(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        self.seen.saw(context)
        for note in request_iterator:
            if note.message == WAIT:
                self._wait_for_cancel(context)
                return
            yield pb.RouteNote(location=note.location, message=note.message.upper())


def _add_servicer(servicer: Any, server: Any) -> None:
    # The servicer classes above duck-type the generated base class.
    pb_grpc.add_RouteGuideServicer_to_server(servicer, server)


@contextlib.asynccontextmanager
async def serve_grpcio(
    backend: str, compression: grpc.Compression | None = None
) -> AsyncIterator[tuple[str, Seen]]:
    """A grpcio RouteGuide server on 127.0.0.1 suited to the test's backend."""
    seen = Seen()
    if backend == "asyncio":
        aio_server = grpc.aio.server(compression=compression)
        _add_servicer(AioServicer(seen), aio_server)
        port = aio_server.add_insecure_port("127.0.0.1:0")
        await aio_server.start()
        try:
            yield f"127.0.0.1:{port}", seen
        finally:
            await aio_server.stop(None)
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), compression=compression)
        _add_servicer(SyncServicer(seen), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}", seen
        finally:
            await anyio.to_thread.run_sync(lambda: server.stop(None).wait())


@pytest.fixture
async def grpcio_server(anyio_backend: str) -> AsyncIterator[tuple[str, Seen]]:
    async with serve_grpcio(anyio_backend) as server:
        yield server


ENDPOINT = "routeguide.RouteGuide"


async def test_micro_unary_to_grpcio(client: micro.Client, grpcio_server: tuple[str, Seen]) -> None:
    address, _ = grpcio_server
    point = pb.Point(latitude=7, longitude=8)
    feature = await client.call(
        "routeguide", f"{ENDPOINT}.GetFeature", point, pb.Feature, address=address
    )
    assert feature == pb.Feature(name="grpcio 7", location=point)


async def test_micro_metadata_reaches_grpcio(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, seen = grpcio_server
    with micro.context.with_metadata({"x-tenant": "acme"}):
        await client.call(
            "routeguide",
            f"{ENDPOINT}.GetFeature",
            pb.Point(latitude=1),
            pb.Feature,
            address=address,
            metadata={"X-Request-Id": "42"},
        )
        async with client.stream(
            "routeguide",
            f"{ENDPOINT}.RouteChat",
            response_type=pb.RouteNote,
            address=address,
            metadata={"x-request-id": "43"},
        ) as chat:
            await chat.send(pb.RouteNote(message="m"))
            await chat.close_send()
            assert [n.message async for n in chat] == ["M"]
    assert [md["x-request-id"] for md in seen.metadata] == ["42", "43"]
    assert all(md["x-tenant"] == "acme" for md in seen.metadata)


async def test_micro_server_stream_from_grpcio(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, _ = grpcio_server
    rect = pb.Rectangle(lo=pb.Point(latitude=2), hi=pb.Point(latitude=6))
    async with client.stream(
        "routeguide", f"{ENDPOINT}.ListFeatures", rect, pb.Feature, address=address
    ) as features:
        assert [f.name async for f in features] == ["f2", "f3", "f4", "f5"]
        assert features.trailers["grpc-status"] == "0"


async def test_micro_client_stream_to_grpcio(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, _ = grpcio_server
    async with client.stream(
        "routeguide", f"{ENDPOINT}.RecordRoute", response_type=pb.RouteSummary, address=address
    ) as route:
        for i in range(50):
            await route.send(pb.Point(latitude=i))
        await route.close_send()
        assert await route.receive() == pb.RouteSummary(point_count=50, distance=sum(range(50)))
        with pytest.raises(anyio.EndOfStream):
            await route.receive()


async def test_micro_bidi_stream_with_grpcio_interleaves(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, _ = grpcio_server
    async with client.stream(
        "routeguide", f"{ENDPOINT}.RouteChat", response_type=pb.RouteNote, address=address
    ) as chat:
        for i in range(10):
            await chat.send(pb.RouteNote(location=pb.Point(latitude=i), message=f"n{i}"))
            reply = await chat.receive()
            assert (reply.location.latitude, reply.message) == (i, f"N{i}")
        await chat.close_send()
        assert [n async for n in chat] == []


async def test_micro_sees_grpcio_abort_as_micro_error(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, _ = grpcio_server
    with pytest.raises(micro.NotFound) as info:
        await client.call(
            "routeguide",
            f"{ENDPOINT}.GetFeature",
            pb.Point(latitude=MISSING),
            pb.Feature,
            address=address,
        )
    assert info.value.grpc_status == 5
    assert info.value.detail == "x"
    assert info.value.code == 404


async def test_micro_sees_grpcio_exception_as_unknown(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, _ = grpcio_server
    with pytest.raises(micro.MicroError) as info:
        await client.call(
            "routeguide",
            f"{ENDPOINT}.GetFeature",
            pb.Point(latitude=CRASH),
            pb.Feature,
            address=address,
        )
    assert info.value.grpc_status == 2  # grpcio answers UNKNOWN
    assert info.value.code == 500


async def test_micro_sees_grpcio_unimplemented(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, _ = grpcio_server
    with pytest.raises(micro.MicroError) as info:
        await client.call(
            "routeguide", f"{ENDPOINT}.NoSuchMethod", pb.Point(), pb.Feature, address=address
        )
    assert info.value.grpc_status == 12
    assert info.value.code == 501


async def test_micro_server_stream_error_after_messages_from_grpcio(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, _ = grpcio_server
    rect = pb.Rectangle(lo=pb.Point(latitude=0, longitude=FAIL_AFTER_SOME), hi=pb.Point(latitude=3))
    got: list[str] = []
    with pytest.raises(micro.Unavailable) as info:
        async with client.stream(
            "routeguide", f"{ENDPOINT}.ListFeatures", rect, pb.Feature, address=address
        ) as features:
            async for feature in features:
                got.append(feature.name)
    assert got == ["f0", "f1", "f2"]
    assert info.value.grpc_status == 14
    assert info.value.detail == "the map ran out"


async def test_micro_deadline_to_grpcio(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, seen = grpcio_server
    with anyio.fail_after(5), pytest.raises(micro.Timeout) as info:
        await client.call(
            "routeguide",
            f"{ENDPOINT}.GetFeature",
            pb.Point(latitude=SLOW),
            pb.Feature,
            address=address,
            timeout=0.3,
        )
    assert info.value.grpc_status == 4
    # grpcio read micro's grpc-timeout and ended the call on its side too.
    remaining = seen.remaining[-1]
    assert remaining is not None and 0 < remaining <= 0.3
    with anyio.fail_after(5):
        while seen.outcomes != ["waiting", "cancelled"]:
            await anyio.sleep(0.01)
    # The pooled connection carries on.
    feature = await client.call(
        "routeguide", f"{ENDPOINT}.GetFeature", pb.Point(latitude=4), pb.Feature, address=address
    )
    assert feature.name == "grpcio 4"


async def test_micro_stream_deadline_to_grpcio(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, seen = grpcio_server
    with anyio.fail_after(5), pytest.raises(micro.Timeout):
        async with client.stream(
            "routeguide",
            f"{ENDPOINT}.RouteChat",
            response_type=pb.RouteNote,
            address=address,
            timeout=0.3,
        ) as chat:
            await chat.send(pb.RouteNote(message=WAIT))
            await chat.receive()
    with anyio.fail_after(5):
        while seen.outcomes != ["waiting", "cancelled"]:
            await anyio.sleep(0.01)


async def test_micro_leaving_stream_early_cancels_grpcio(
    client: micro.Client, grpcio_server: tuple[str, Seen]
) -> None:
    address, seen = grpcio_server
    async with client.stream(
        "routeguide", f"{ENDPOINT}.RouteChat", response_type=pb.RouteNote, address=address
    ) as chat:
        await chat.send(pb.RouteNote(message="a"))
        assert (await chat.receive()).message == "A"
        await chat.send(pb.RouteNote(message=WAIT))
        with anyio.fail_after(5):
            while seen.outcomes != ["waiting"]:
                await anyio.sleep(0.01)
    # Leaving the block reset the stream: grpcio cancelled its handler.
    with anyio.fail_after(5):
        while seen.outcomes != ["waiting", "cancelled"]:
            await anyio.sleep(0.01)


async def test_micro_calls_grpcio_server_that_compresses(
    client: micro.Client, anyio_backend: str
) -> None:
    text = "compressible " * 1000  # large and repetitive enough that grpcio does compress
    async with (
        serve_grpcio(anyio_backend, grpc.Compression.Gzip) as (address, _),
        client.stream(
            "routeguide", f"{ENDPOINT}.RouteChat", response_type=pb.RouteNote, address=address
        ) as chat,
    ):
        await chat.send(pb.RouteNote(message=text))
        assert (await chat.receive()).message == text.upper()
        await chat.close_send()


# -- the example scripts ---------------------------------------------------------


@contextlib.contextmanager
def _example(script: str, *args: str, env: dict[str, str]) -> Iterator[str]:
    """Run an example server; yield the address it announces on its first stdout line."""
    with subprocess.Popen(
        [sys.executable, str(EXAMPLE / script), *args], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        killer = threading.Timer(20, proc.kill)  # bounds the wait for the announcement
        killer.start()
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert " listening on " in line, line
            yield line.rsplit(" ", 1)[1].strip()
        finally:
            killer.cancel()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_examples_run(generated: Path) -> None:
    env = {**os.environ, "ROUTEGUIDE_GENERATED": str(generated)}
    run = functools.partial(
        subprocess.run, capture_output=True, text=True, env=env, timeout=20, check=True
    )
    with (
        _example("server.py", "--address", "127.0.0.1:0", env=env) as micro_address,
        _example("grpcio_server.py", "--address", "127.0.0.1:0", env=env) as grpcio_address,
    ):
        grpcio_to_micro = run(
            [sys.executable, str(EXAMPLE / "grpcio_client.py"), "--target", micro_address]
        ).stdout
        micro_to_grpcio = run(
            [sys.executable, str(EXAMPLE / "micro_client.py"), "--address", grpcio_address]
        ).stdout
    for out in (grpcio_to_micro, micro_to_grpcio):
        assert "GetFeature: 'Patriots Path, Mendham, NJ 07945, USA'" in out
        assert "ListFeatures: 5 features" in out
        assert "RecordRoute: 4 points, 3 features" in out
        assert "RouteChat: got 'first' at 0" in out
    assert "GetFeature off Earth: INVALID_ARGUMENT" in grpcio_to_micro
    assert "GetFeature off Earth: BadRequest grpc_status=3" in micro_to_grpcio
