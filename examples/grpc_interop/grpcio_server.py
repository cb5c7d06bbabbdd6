"""The RouteGuide service served by grpcio (generated servicer, thread pool).

    python examples/grpc_interop/grpcio_server.py                   # 127.0.0.1:50052
    python examples/grpc_interop/grpcio_server.py --address 127.0.0.1:0

``micro_client.py`` calls it: micro's client speaks plain gRPC to any server.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from common import (
    FEATURES,
    distance,
    feature_at,
    in_rectangle,
    routeguide_pb2,
    routeguide_pb2_grpc,
    valid,
)

Point = routeguide_pb2.Point
Feature = routeguide_pb2.Feature
RouteNote = routeguide_pb2.RouteNote
RouteSummary = routeguide_pb2.RouteSummary


class RouteGuideServicer(routeguide_pb2_grpc.RouteGuideServicer):
    def __init__(self, features: list[Feature]) -> None:
        self.features = features
        self.notes: dict[tuple[int, int], list[RouteNote]] = {}

    def GetFeature(self, request: Point, context: grpc.ServicerContext) -> Feature:
        caller = dict(context.invocation_metadata()).get("x-client", "?")
        print(f"GetFeature from {caller}", flush=True)
        if not valid(request):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"({request.latitude}, {request.longitude}) is not on Earth",
            )
        return Feature(name=feature_at(request, self.features), location=request)

    def ListFeatures(
        self, request: routeguide_pb2.Rectangle, context: grpc.ServicerContext
    ) -> Iterator[Feature]:
        for feature in self.features:
            if in_rectangle(feature.location, request):
                yield feature

    def RecordRoute(
        self, request_iterator: Iterator[Point], context: grpc.ServicerContext
    ) -> RouteSummary:
        summary = RouteSummary()
        started = time.monotonic()
        previous = None
        for point in request_iterator:
            summary.point_count += 1
            if feature_at(point, self.features):
                summary.feature_count += 1
            if previous is not None:
                summary.distance += distance(previous, point)
            previous = point
        summary.elapsed_time = int(time.monotonic() - started)
        return summary

    def RouteChat(
        self, request_iterator: Iterator[RouteNote], context: grpc.ServicerContext
    ) -> Iterator[RouteNote]:
        for note in request_iterator:
            here = self.notes.setdefault((note.location.latitude, note.location.longitude), [])
            yield from list(here)
            here.append(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50052")
    args = parser.parse_args()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    routeguide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(FEATURES), server)
    port = server.add_insecure_port(args.address)
    server.start()
    host = args.address.rpartition(":")[0]
    print(f"routeguide (grpcio) listening on {host}:{port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
