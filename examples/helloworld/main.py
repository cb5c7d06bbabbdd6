"""Hello world: the smallest micro service.

    python examples/helloworld/main.py                 # asyncio, port 8080
    python examples/helloworld/main.py --backend trio  # the same on Trio

    curl -XPOST -H 'Content-Type: application/json' \
         -H 'Micro-Endpoint: Helloworld.Greeting' \
         -d '{"name": "alice"}' http://localhost:8080
"""

from __future__ import annotations

import argparse
import logging
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
    parser.add_argument("--address", default=":8080")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    service = micro.Service("helloworld", address=args.address)
    service.handle(Helloworld())
    anyio.run(service.serve, backend=args.backend)


if __name__ == "__main__":
    main()
