"""Hello world: the smallest micro service.

    python examples/helloworld/main.py                 # asyncio, port 8080
    python examples/helloworld/main.py --backend trio  # the same on Trio
    python examples/helloworld/main.py --micro-address=127.0.0.1:9090 --micro-registry=memory

    curl -XPOST -H 'Content-Type: application/json' \
         -H 'Micro-Endpoint: Helloworld.Greeting' \
         -d '{"name": "alice"}' http://localhost:8080
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass

import anyio

import micro


@dataclass
class Request:
    name: str


@dataclass
class Response:
    message: str


class Helloworld:
    async def greeting(self, req: Request) -> Response:
        return Response(message=f"Hello {req.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--address", help="host:port to listen on (default :8080)")
    # The service reads its own --micro-* flags (--micro-registry=memory, ...).
    args, rest = parser.parse_known_args()
    if unknown := [arg for arg in rest if not arg.startswith("--micro-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    # Port 8080 unless --address, --micro-address or MICRO_ADDRESS says otherwise.
    os.environ.setdefault("MICRO_ADDRESS", ":8080")
    service = micro.Service("helloworld", address=args.address)
    service.handle(Helloworld())
    anyio.run(service.serve, backend=args.backend)


if __name__ == "__main__":
    main()
