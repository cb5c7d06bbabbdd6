"""Authentication and mutual TLS: a service only accounts with a grant may call.

    python examples/auth/main.py                 # asyncio
    python examples/auth/main.py --backend trio  # the same on Trio

It makes a CA and a signing key in a temporary directory, starts a service
over mutual TLS with auth on, creates an account, and calls the service with
that account's token, without a token, and as an account without a grant.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio

import micro
from micro.auth import Access, CertificateAuthority, KeySet, Resource, Rule


@dataclass
class Request:
    name: str


@dataclass
class Response:
    message: str


class Greeter:
    async def hello(self, req: Request) -> Response:
        caller = micro.context.account()  # who called: set by the auth middleware
        return Response(message=f"Hello {req.name}, from a call made by {caller and caller.id}")


async def run(directory: Path) -> None:
    ca = CertificateAuthority.generate()
    server_tls = ca.issue_files(directory, "greeter")  # mutual TLS: client_auth=True
    client_tls = ca.issue_files(directory, "cli")
    auth = micro.Auth(
        KeySet.generate(),
        rules=[
            Rule("greeters", "greet", Resource("service", "greeter", "Greeter.*")),
            Rule("services", "service", Resource("service", "*", "*")),
            Rule("no-interns", "intern", Resource(), Access.DENY, priority=10),
        ],
    )
    service = micro.Service(
        "greeter",
        address="127.0.0.1:0",
        registry="memory",
        store="memory",  # accounts and granted rules live in the service's store
        auth=auth,
        tls=server_tls,
    )
    service.handle(Greeter())
    async with service.running(), micro.Client(registry="memory", tls=client_tls) as client:
        _, secret = await auth.generate("alice", scopes=["greet"])
        token = await auth.token("alice", secret)  # exchange the secret for tokens
        bearer = {"authorization": f"Bearer {token.access_token}"}
        reply = await client.call(
            "greeter", "Greeter.Hello", Request("alice"), Response, metadata=bearer
        )
        print(reply.message)
        try:
            await client.call("greeter", "Greeter.Hello", Request("nobody"), Response)
        except micro.Unauthorized as exc:
            print("without a token:", exc)
        _, other = await auth.generate("bob", scopes=["intern", "greet"])
        bob = await auth.token("bob", other)
        try:
            await client.call(
                "greeter",
                "Greeter.Hello",
                Request("bob"),
                Response,
                metadata={"authorization": f"Bearer {bob.access_token}"},
            )
        except micro.Forbidden as exc:
            print("denied:", exc)
        print("rules:", [rule.id for rule in auth.rules()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    # The service reads its own --micro-* flags (--micro-metrics=false, ...).
    args, rest = parser.parse_known_args()
    if unknown := [arg for arg in rest if not arg.startswith("--micro-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(run, Path(directory), backend=args.backend)


if __name__ == "__main__":
    main()
