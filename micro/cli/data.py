"""``micro store get|put|list|delete`` and ``micro config get``."""

from __future__ import annotations

import sys
from typing import Any

import typer

from ..config import Config, MissingKey
from ..config.etcd_source import etcd as etcd_source
from ..config.file_source import file as file_source
from ..config.sources import env as env_source
from ..store import Record, resolve_store
from ..store.base import Store
from ._app import app, print_json, run, state

__all__ = ["config_app", "store_app"]

store_app = typer.Typer(
    help="Read and write the store (--store or MICRO_STORE).", no_args_is_help=True
)
config_app = typer.Typer(help="Read config from files, environment and etcd.", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(config_app, name="config")

_ABSENT: Any = object()

DATABASE_HELP = "database (default: the store's)"
TABLE_HELP = "table (default: the store's)"


def _store() -> Store:
    return resolve_store(state.store)


@store_app.command("get")
def store_get(
    key: str = typer.Argument(..., help="key"),
    database: str | None = typer.Option(None, "--database", help=DATABASE_HELP),
    table: str | None = typer.Option(None, "--table", help=TABLE_HELP),
) -> None:
    """Print the value of a key (exit 1 when there is none)."""

    async def main() -> bytes:
        async with _store() as store:
            records = await store.read(key, database=database, table=table)
            return records[0].value

    value = run(main)
    sys.stdout.buffer.write(value if value.endswith(b"\n") else value + b"\n")
    sys.stdout.flush()


@store_app.command("put")
def store_put(
    key: str = typer.Argument(..., help="key"),
    value: str = typer.Argument(..., help="value ('-' reads stdin)"),
    ttl: float | None = typer.Option(None, "--ttl", help="seconds until the record expires"),
    database: str | None = typer.Option(None, "--database", help=DATABASE_HELP),
    table: str | None = typer.Option(None, "--table", help=TABLE_HELP),
) -> None:
    """Create or replace a record."""
    data = sys.stdin.buffer.read() if value == "-" else value.encode()

    async def main() -> None:
        async with _store() as store:
            await store.write(Record(key, data), ttl=ttl, database=database, table=table)

    run(main)


@store_app.command("list")
def store_list(
    prefix: str = typer.Option("", "--prefix", help="only keys starting with this"),
    limit: int | None = typer.Option(None, "--limit", help="at most this many keys"),
    database: str | None = typer.Option(None, "--database", help=DATABASE_HELP),
    table: str | None = typer.Option(None, "--table", help=TABLE_HELP),
) -> None:
    """Print the keys, one a line."""

    async def main() -> list[str]:
        async with _store() as store:
            return await store.list(prefix=prefix, limit=limit, database=database, table=table)

    for key in run(main):
        print(key)


@store_app.command("delete")
def store_delete(
    key: str = typer.Argument(..., help="key"),
    database: str | None = typer.Option(None, "--database", help=DATABASE_HELP),
    table: str | None = typer.Option(None, "--table", help=TABLE_HELP),
) -> None:
    """Delete a record (deleting a missing key is no error)."""

    async def main() -> None:
        async with _store() as store:
            await store.delete(key, database=database, table=table)

    run(main)


@config_app.command("get")
def config_get(
    key: str = typer.Argument("", help="dotted key (database.host); empty for everything"),
    files: list[str] = typer.Option([], "--file", help="JSON, YAML or TOML file (repeatable)"),
    env_prefix: str | None = typer.Option(None, "--env", help="variables with this prefix (APP_)"),
    etcd_prefix: str | None = typer.Option(None, "--etcd-prefix", help="etcd key prefix"),
    etcd_endpoint: str = typer.Option(
        "http://127.0.0.1:2379", "--etcd-endpoint", help="etcd URL for --etcd-prefix"
    ),
) -> None:
    """Print a config value as JSON, merged from the sources given (later ones win)."""
    sources: list[Any] = [file_source(path) for path in files]
    if env_prefix:
        sources.append(env_source(env_prefix))
    if etcd_prefix:
        sources.append(etcd_source(etcd_prefix, endpoint=etcd_endpoint))

    async def main() -> Any:
        async with Config(sources=sources) as config:
            value = config.get(key, _ABSENT)
            if value is _ABSENT:
                raise MissingKey(f"no config value at {key}")
            return value

    print_json(run(main))
