"""micro.observability.tracing with the global tracer provider, in fresh processes.

OpenTelemetry lets a process set its global provider once, so each case runs
in a child interpreter of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

SET_LATER = textwrap.dedent(
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from micro.observability.tracing import Tracer

    tracer = Tracer("svc")
    assert tracer.client("other", "Other.Call", {}) is None  # no provider yet: no span
    trace.set_tracer_provider(TracerProvider())
    metadata = {}
    span = tracer.client("other", "Other.Call", metadata)
    assert span is not None and "traceparent" in metadata, metadata
    span.end(0)
    print("ok")
    """
)

FROM_ENVIRONMENT = textwrap.dedent(
    """
    from micro.observability.tracing import Tracer

    metadata = {}
    span = Tracer("svc").client("other", "Other.Call", metadata)
    assert span is not None and "traceparent" in metadata, metadata
    span.end(0)
    print("ok")
    """
)


def run(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_provider_set_after_the_tracer_is_used_from_then_on() -> None:
    assert run(SET_LATER) == "ok"


def test_a_provider_named_by_the_environment_is_used() -> None:
    assert run(FROM_ENVIRONMENT, OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider") == "ok"
