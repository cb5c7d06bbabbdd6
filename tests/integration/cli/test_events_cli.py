"""``micro events publish|tail`` as a subprocess, on a file event stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MICRO = [sys.executable, "-m", "micro.cli"]
#: seconds one command may take on a busy machine
TIMEOUT = 60


def micro_cmd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MICRO, *args],
        env={k: v for k, v in os.environ.items() if k != "MICRO_EVENTS"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_publish_then_tail(tmp_path: Path, backend: str) -> None:
    url = f"file://{tmp_path / 'events.db'}"
    loop = ["--backend", backend]
    first = micro_cmd(
        "events", "publish", "orders", '{"id": 1}', "-H", "source=cli", "--events", url
    )
    assert first.returncode == 0, first.stderr
    stored = json.loads(first.stdout)
    assert stored["topic"] == "orders" and stored["id"] and stored["timestamp"] > 0
    second = micro_cmd(*loop, "events", "publish", "orders", "-", "--events", url, stdin='"two"')
    assert second.returncode == 0, second.stderr
    tail = micro_cmd(
        "events", "tail", "orders", "--offset", "start", "--count", "2", "--events", url
    )
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["payload"] for line in lines] == [{"id": 1}, "two"]
    assert lines[0]["id"] == stored["id"] and lines[0]["metadata"]["source"] == "cli"
    assert lines[0]["metadata"]["content-type"] == "application/json"
    # A group takes what it has not acknowledged yet, from where it was.
    group = ["--group", "audit", "--offset", "start", "--count", "1", "--events", url]
    taken = [micro_cmd(*loop, "events", "tail", "orders", *group).stdout for _ in range(2)]
    assert [json.loads(out)["payload"] for out in taken] == [{"id": 1}, "two"]


def test_bad_input_is_one_line_and_an_exit_code(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'events.db'}"
    bad_json = micro_cmd("events", "publish", "orders", "{nope", "--events", url)
    assert bad_json.returncode == 2 and bad_json.stderr.startswith("error: ")
    assert len(bad_json.stderr.splitlines()) == 1
    bad_topic = micro_cmd("events", "publish", "bad topic", "1", "--events", url)
    assert bad_topic.returncode == 1 and "bad topic" in bad_topic.stderr
    bad_offset = micro_cmd("events", "tail", "orders", "--offset", "soon", "--events", url)
    assert bad_offset.returncode == 2 and "--offset" in bad_offset.stderr
    unknown = micro_cmd("events", "tail", "orders", "--events", "kafka://x")
    assert unknown.returncode == 2 and "unknown events" in unknown.stderr
