"""Dynamic config: a greeter whose greeting comes from config and changes while it runs.

    python examples/config/main.py                        # asyncio, port 8080
    python examples/config/main.py --backend trio         # the same on Trio
    APP_GREETING__PUNCTUATION='?' python examples/config/main.py
    python examples/config/main.py --greeting.template='Hi {name}'

    curl -XPOST -H 'Content-Type: application/json' \\
         -H 'Micro-Endpoint: Greeter.Hello' -d '{"name": "alice"}' http://localhost:8080

Edit examples/config/config.yaml while it runs and call again. With an etcd on
127.0.0.1:2379, ``etcdctl put /config/greeter/greeting/template 'Hey {name}'``
overrides the file; without one, the example starts anyway and says so.
Sources override in the order listed: defaults, file, environment, flags, etcd.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import anyio

import micro
from micro.config import Config, cli, env, etcd, file


@dataclass
class Greeting:
    template: str = "Hello {name}"
    punctuation: str = "."


@dataclass
class Request:
    name: str


@dataclass
class Response:
    message: str


class Greeter:
    def __init__(self, config: Config) -> None:
        self.config = config

    async def hello(self, req: Request) -> Response:
        greeting = self.config.bind("greeting", Greeting)  # the current values, typed
        return Response(message=greeting.template.format(name=req.name) + greeting.punctuation)


async def run(address: str | None, argv: list[str]) -> None:
    config = Config(
        sources=[
            {"greeting": {"template": "Hello {name}"}},
            file(Path(__file__).with_name("config.yaml"), optional=True),
            env("APP_"),
            cli(argv),
            etcd("/config/greeter", optional=True),
        ]
    )
    service = micro.Service("greeter", address=address)
    service.handle(Greeter(config))
    async with config, anyio.create_task_group() as tg:

        async def log_changes() -> None:
            async for greeting in config.watch("greeting", into=Greeting):
                logging.info("greeting is now %r", greeting)

        tg.start_soon(log_changes)
        await service.serve()
        tg.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--address", help="host:port to listen on (default :8080)")
    # Other flags are the config's (--greeting.template=...) and the service's own
    # (--micro-registry=memory, ...).
    args, rest = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Port 8080 unless --address, --micro-address or MICRO_ADDRESS says otherwise.
    os.environ.setdefault("MICRO_ADDRESS", ":8080")
    anyio.run(run, args.address, rest, backend=args.backend)


if __name__ == "__main__":
    main()
