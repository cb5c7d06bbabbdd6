"""The transport's integration tests on the other HTTP/2 implementation.

The suite runs on one implementation (``MICRO_HTTP2``, micro's own by default);
this runs the transport, streaming, interop, abuse and bad-input tests again in
a child pytest on the other one, so both stay working: h2 as the fallback, or
ours when the suite itself runs on h2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from micro.transport.h2conn import implementation

ROOT = Path(__file__).resolve().parents[3]
SUITES = [
    "tests/integration/transport/test_unary.py",
    "tests/integration/transport/test_streaming.py",
    "tests/integration/transport/test_grpc_interop.py",
    "tests/integration/transport/test_abuse.py",
    "tests/integration/transport/test_bad_input.py",
    "tests/integration/transport/test_plain_streams.py",
]


#: left out of the rerun: the one-minute stream soak, which the suite itself runs, and
#: which measures the stream's lifetime rather than how HTTP/2 frames are handled
SKIP = "not a_stream_lives_through_quiet_spells"


def test_the_transport_tests_pass_on_the_other_http2_implementation() -> None:
    soak = SKIP.removeprefix("not ")
    assert f"def test_{soak}" in (ROOT / SUITES[1]).read_text(), "the soak was renamed"
    other = "h2" if implementation() == "micro" else "micro"
    env = dict(os.environ, MICRO_HTTP2=other)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", SKIP, *SUITES],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, f"MICRO_HTTP2={other}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout
