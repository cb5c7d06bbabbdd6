"""Locks under a pause: a holder stopped past its TTL never holds again once resumed.

Three processes contend for one lock in etcd; the holder gets SIGSTOP,
another takes the lock, and the old holder gets SIGCONT (see
``lease_pause``). Mutual exclusion means: no body iteration of the old holder
believes it holds the lock after the new holder's first, and the old
holder's body is cancelled with LockLost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.crash.lease_pause import pause_the_holder
from tests.integration.crash.test_leadership import assert_exclusive
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio


async def test_a_lock_holder_paused_past_its_ttl_never_holds_after_the_next_takes_it(
    etcd_server: ServerProcess, anyio_backend: str, tmp_path: Path
) -> None:
    pause = await pause_the_holder(etcd_server.url, anyio_backend, "lock", tmp_path, ttl=2.0)
    assert_exclusive(pause)
