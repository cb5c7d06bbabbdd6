"""micro's client calling the RouteGuide service over plain gRPC.

    python examples/grpc_interop/micro_client.py                    # 127.0.0.1:50052
    python examples/grpc_interop/micro_client.py --address 127.0.0.1:50051 --backend trio

The other end can be grpcio (``grpcio_server.py``) or micro (``server.py``).
Protobuf requests make micro speak ``application/grpc``; ``address=`` skips
discovery; the endpoint ``routeguide.RouteGuide.GetFeature`` is the gRPC path
``/routeguide.RouteGuide/GetFeature``.
"""

from __future__ import annotations

import argparse

import anyio
from common import FEATURES, routeguide_pb2

import micro

Point = routeguide_pb2.Point
Feature = routeguide_pb2.Feature
RouteNote = routeguide_pb2.RouteNote
RouteSummary = routeguide_pb2.RouteSummary

SERVICE = "routeguide.RouteGuide"


async def run(address: str) -> None:
    async with micro.Client(timeout=5) as client:
        metadata = {"x-client": "micro"}

        # Unary.
        feature = await client.call(
            "routeguide",
            f"{SERVICE}.GetFeature",
            FEATURES[0].location,
            Feature,
            address=address,
            metadata=metadata,
        )
        print(f"GetFeature: {feature.name!r}")

        # The server's gRPC status arrives as the matching micro error.
        try:
            await client.call(
                "routeguide",
                f"{SERVICE}.GetFeature",
                Point(latitude=10**9),
                Feature,
                address=address,
            )
        except micro.BadRequest as exc:
            print(
                f"GetFeature off Earth: {type(exc).__name__} grpc_status={exc.grpc_status} "
                f"{exc.detail!r}"
            )

        # Server streaming.
        rect = routeguide_pb2.Rectangle(
            lo=Point(latitude=400_000_000, longitude=-750_000_000),
            hi=Point(latitude=420_000_000, longitude=-730_000_000),
        )
        async with client.stream(
            "routeguide", f"{SERVICE}.ListFeatures", rect, Feature, address=address, timeout=5
        ) as features:
            names = [f.name async for f in features]
        print(f"ListFeatures: {len(names)} features")

        # Client streaming.
        async with client.stream(
            "routeguide",
            f"{SERVICE}.RecordRoute",
            response_type=RouteSummary,
            address=address,
            timeout=5,
        ) as route:
            for f in FEATURES[:3]:
                await route.send(f.location)
            await route.send(Point(latitude=409146138, longitude=-746188906))
            await route.close_send()
            summary = await route.receive()
        print(
            f"RecordRoute: {summary.point_count} points, {summary.feature_count} features, "
            f"{summary.distance} m"
        )

        # Bidirectional streaming: send a note, read the notes left there before.
        async with client.stream(
            "routeguide",
            f"{SERVICE}.RouteChat",
            response_type=RouteNote,
            address=address,
            timeout=5,
        ) as chat:
            for i, text in enumerate(["first", "second", "third", "fourth"]):
                await chat.send(
                    RouteNote(location=Point(latitude=i % 2, longitude=1), message=text)
                )
            await chat.close_send()
            async for note in chat:
                print(f"RouteChat: got {note.message!r} at {note.location.latitude}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--address", default="127.0.0.1:50052")
    args = parser.parse_args()
    anyio.run(run, args.address, backend=args.backend)


if __name__ == "__main__":
    main()
