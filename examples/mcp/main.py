"""A to-do list service whose docstrings are the tools' descriptions an AI agent reads.

    python examples/mcp/main.py --registry mdns                  # asyncio
    python examples/mcp/main.py --registry mdns --backend trio   # the same on Trio
    micro --registry mdns mcp                                    # its endpoints as MCP tools

Every endpoint becomes a tool named ``todo.Todo.<Method>``: the method's
docstring is the tool's description and the request dataclass its input
schema, so say what the endpoint does, when to use it, and what each field
means, as you would to a new colleague. ``Todo.Export`` streams; an agent gets
the messages collected.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

import micro


@dataclass
class AddRequest:
    title: str
    due: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class Task:
    id: int
    title: str
    done: bool = False
    due: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class ListRequest:
    tag: str | None = None
    include_done: bool = False


@dataclass
class TaskList:
    tasks: list[Task]


@dataclass
class CompleteRequest:
    id: int


class Todo:
    """A to-do list kept in memory."""

    def __init__(self) -> None:
        self._tasks: dict[int, Task] = {}

    async def add(self, req: AddRequest) -> Task:
        """Add a task to the to-do list and return it with its id.

        Parameters:
            title: what to do, in a few words ("renew the passport").
            due: the date it is due, as YYYY-MM-DD; leave it out when there is none.
            tags: labels to find the task by later ("home", "work").
        """
        if not req.title.strip():
            raise micro.BadRequest("title: a task needs a title", id="todo")
        task = Task(len(self._tasks) + 1, req.title.strip(), due=req.due, tags=list(req.tags))
        self._tasks[task.id] = task
        return task

    async def list(self, req: ListRequest) -> TaskList:
        """List the tasks still to do, oldest first.

        Parameters:
            tag: only the tasks with this label.
            include_done: also list the tasks already completed.
        """
        return TaskList(
            [
                t
                for t in self._tasks.values()
                if (req.include_done or not t.done) and (req.tag is None or req.tag in t.tags)
            ]
        )

    @micro.endpoint(idempotent=True)
    async def complete(self, req: CompleteRequest) -> Task:
        """Mark a task as done. Completing a task twice is harmless.

        Parameters:
            id: the task's id, as Add or List returned it.
        """
        task = self._tasks.get(req.id)
        if task is None:
            raise micro.NotFound(f"id: no task {req.id}", id="todo")
        task.done = True
        return task

    async def export(self, req: ListRequest) -> AsyncIterator[Task]:
        """Send every task, one message each, for a backup or a report.

        Parameters:
            tag: only the tasks with this label.
            include_done: also send the tasks already completed.
        """
        for task in list(self._tasks.values()):
            if (req.include_done or not task.done) and (req.tag is None or req.tag in task.tags):
                yield task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--address", default=":0")
    parser.add_argument("--registry", default=None, help="mdns, etcd://host:port, ...")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    service = micro.Service("todo", address=args.address, registry=args.registry)
    service.handle(Todo())
    anyio.run(service.serve, backend=args.backend)


if __name__ == "__main__":
    main()
