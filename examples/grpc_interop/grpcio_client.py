"""A plain grpcio client (generated stubs) calling the RouteGuide service.

    python examples/grpc_interop/grpcio_client.py                    # 127.0.0.1:50051
    python examples/grpc_interop/grpcio_client.py --target 127.0.0.1:50052

It does not know or care whether micro (``server.py``) or grpcio
(``grpcio_server.py``) serves the other end.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import grpc
from common import FEATURES, routeguide_pb2, routeguide_pb2_grpc

Point = routeguide_pb2.Point
RouteNote = routeguide_pb2.RouteNote


def run(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = routeguide_pb2_grpc.RouteGuideStub(channel)
        metadata = [("x-client", "grpcio")]

        # Unary.
        first = FEATURES[0].location
        feature = stub.GetFeature(first, timeout=5, metadata=metadata)
        print(f"GetFeature: {feature.name!r}")
        empty = stub.GetFeature(Point(latitude=1, longitude=1), timeout=5)
        print(f"GetFeature at nothing: {empty.name!r}")

        # Errors arrive as gRPC status codes.
        try:
            stub.GetFeature(Point(latitude=10**9), timeout=5)
        except grpc.RpcError as exc:
            print(f"GetFeature off Earth: {exc.code().name} {exc.details()!r}")

        # Server streaming.
        rect = routeguide_pb2.Rectangle(
            lo=Point(latitude=400_000_000, longitude=-750_000_000),
            hi=Point(latitude=420_000_000, longitude=-730_000_000),
        )
        names = [f.name for f in stub.ListFeatures(rect, timeout=5)]
        print(f"ListFeatures: {len(names)} features")

        # Client streaming.
        route = iter(
            [f.location for f in FEATURES[:3]] + [Point(latitude=409146138, longitude=-746188906)]
        )
        summary = stub.RecordRoute(route, timeout=5)
        print(
            f"RecordRoute: {summary.point_count} points, {summary.feature_count} features, "
            f"{summary.distance} m"
        )

        # Bidirectional streaming.
        def notes() -> Iterator[RouteNote]:
            for i, text in enumerate(["first", "second", "third", "fourth"]):
                yield RouteNote(location=Point(latitude=i % 2, longitude=1), message=text)

        for note in stub.RouteChat(notes(), timeout=5):
            print(f"RouteChat: got {note.message!r} at {note.location.latitude}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    run(parser.parse_args().target)


if __name__ == "__main__":
    main()
