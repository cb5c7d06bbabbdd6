"""The pure parts of observability: log formatting, call context, checks, status codes."""

from __future__ import annotations

import io
import json
import logging
import sys

import anyio
import pytest

import micro
from micro.errors import GrpcStatus
from micro.health import HealthChecks
from micro.observability import (
    CallInfo,
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    current_call,
    status_of,
)
from micro.observability.logs import _enter, _leave


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("app", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_writes_one_object_with_the_call_fields() -> None:
    info = CallInfo("billing", "billing-1", "Billing.Charge", request_id="r-1", trace_id="ab")
    token = _enter(info)
    try:
        record = _record("charging %s", amount=12)
        record.args = ("card",)
        ContextFilter().filter(record)
    finally:
        _leave(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "charging card"
    assert out["level"] == "WARNING"
    assert out["logger"] == "app"
    assert out["time"].endswith("Z")
    assert out["service"] == "billing"
    assert out["node"] == "billing-1"
    assert out["endpoint"] == "Billing.Charge"
    assert out["request_id"] == "r-1"
    assert out["trace_id"] == "ab"
    assert out["amount"] == 12


def test_outside_a_call_records_get_empty_fields_that_formatters_leave_out() -> None:
    assert current_call() is None
    record = _record("idle")
    ContextFilter(service="billing").filter(record)
    out = json.loads(JsonFormatter().format(record))
    assert out["service"] == "billing"
    assert "endpoint" not in out and "request_id" not in out
    assert TextFormatter().format(record).endswith("WARNING app idle service=billing")


def test_a_request_id_is_made_up_once_when_the_caller_sent_none() -> None:
    info = CallInfo("s", "n", "E.P")
    first = info.ensure_request_id()
    assert len(first) == 16
    assert info.ensure_request_id() == first


def test_exceptions_are_kept_in_one_json_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad" in out["exception"]


def test_configure_logging_installs_a_json_handler_on_the_root_logger() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("info", format="json", stream=stream, service="svc")
    try:
        logging.getLogger("app").info("hello")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out = json.loads(stream.getvalue())
    assert out["message"] == "hello"
    assert out["service"] == "svc"
    with pytest.raises(ValueError, match="'text' or 'json'"):
        configure_logging(format="xml")


@pytest.mark.anyio
async def test_status_of_an_outcome() -> None:
    assert status_of(None) == (GrpcStatus.OK, "")
    assert status_of(micro.NotFound("no user")) == (GrpcStatus.NOT_FOUND, "no user")
    assert status_of(RuntimeError("secret")) == (GrpcStatus.INTERNAL, "RuntimeError")
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            assert status_of(exc) == (GrpcStatus.CANCELLED, "cancelled")
            raise


@pytest.mark.anyio
async def test_checks_run_at_once_each_within_its_timeout() -> None:
    checks = HealthChecks()

    async def ok() -> None:
        return None

    async def false() -> bool:
        return False

    async def broken() -> None:
        raise OSError("disk gone")

    async def hangs() -> None:
        await anyio.sleep_forever()

    checks.add("ok", ok)
    checks.add("false", false)
    checks.add("broken", broken)
    checks.add("hangs", hangs, timeout=0.1)
    checks.add("hangs too", hangs, timeout=0.1)
    with anyio.fail_after(5):  # both hanging checks time out together, not one after another
        results = await checks.run()
    assert [r.name for r in results] == ["ok", "false", "broken", "hangs", "hangs too"]
    by_name = {r.name: r for r in results}
    assert by_name["ok"].ok and by_name["ok"].error == ""
    assert by_name["false"].error == "check returned False"
    assert by_name["broken"].error == "OSError: disk gone"
    assert by_name["hangs"].error == "timed out after 0.1s"
    checks.remove("hangs")
    checks.remove("hangs too")
    assert checks.names == ["ok", "false", "broken"]
    with pytest.raises(ValueError, match="positive"):
        checks.add("never", ok, timeout=0)
