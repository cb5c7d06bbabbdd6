"""The RouteGuide service served by micro, callable by any gRPC client.

    python examples/grpc_interop/server.py                          # 127.0.0.1:50051
    python examples/grpc_interop/server.py --backend trio --address 127.0.0.1:0

The handler class uses the message classes generated from ``routeguide.proto``
and is registered as ``routeguide.RouteGuide``, so its endpoints answer the
paths gRPC clients use: ``/routeguide.RouteGuide/GetFeature`` and so on.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import AsyncIterator

import anyio
from common import FEATURES, distance, feature_at, in_rectangle, routeguide_pb2, valid

import micro

Point = routeguide_pb2.Point
Feature = routeguide_pb2.Feature
Rectangle = routeguide_pb2.Rectangle
RouteNote = routeguide_pb2.RouteNote
RouteSummary = routeguide_pb2.RouteSummary


class RouteGuide:
    """One endpoint of each kind: unary, server, client and bidirectional streaming."""

    def __init__(self, features: list[Feature]) -> None:
        self.features = features
        self.notes: dict[tuple[int, int], list[RouteNote]] = {}

    async def get_feature(self, point: Point) -> Feature:
        if not valid(point):
            raise micro.BadRequest(f"({point.latitude}, {point.longitude}) is not on Earth")
        return Feature(name=feature_at(point, self.features), location=point)

    async def list_features(self, rect: Rectangle) -> AsyncIterator[Feature]:
        for feature in self.features:
            if in_rectangle(feature.location, rect):
                yield feature

    async def record_route(self, points: AsyncIterator[Point]) -> RouteSummary:
        summary = RouteSummary()
        started = time.monotonic()
        previous = None
        async for point in points:
            summary.point_count += 1
            if feature_at(point, self.features):
                summary.feature_count += 1
            if previous is not None:
                summary.distance += distance(previous, point)
            previous = point
        summary.elapsed_time = int(time.monotonic() - started)
        return summary

    async def route_chat(self, notes: AsyncIterator[RouteNote]) -> AsyncIterator[RouteNote]:
        async for note in notes:
            here = self.notes.setdefault((note.location.latitude, note.location.longitude), [])
            for earlier in list(here):
                yield earlier
            here.append(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--address", help="host:port to listen on (default 127.0.0.1:50051)")
    # The service reads its own --micro-* flags (--micro-registry=memory, ...).
    args, rest = parser.parse_known_args()
    if unknown := [arg for arg in rest if not arg.startswith("--micro-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    # 127.0.0.1:50051 unless --address, --micro-address or MICRO_ADDRESS says otherwise.
    os.environ.setdefault("MICRO_ADDRESS", "127.0.0.1:50051")
    service = micro.Service("routeguide", address=args.address)
    service.handle(RouteGuide(FEATURES), name="routeguide.RouteGuide")

    @service.after_start
    async def announce() -> None:
        print(f"routeguide listening on {service.address}", flush=True)

    anyio.run(service.serve, backend=args.backend)


if __name__ == "__main__":
    main()
