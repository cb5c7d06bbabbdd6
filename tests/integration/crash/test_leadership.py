"""Leadership under a pause: a leader stopped past its TTL never leads again once resumed.

Three processes campaign in etcd; the leader gets SIGSTOP, another is elected,
and the old leader gets SIGCONT (see ``lease_pause``). Exclusive means: no
body iteration of the old leader believes it leads (``held``) after the new
leader's term started, and the old leader's body is cancelled with
LeadershipLost rather than left running.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.crash.lease_pause import Pause, pause_the_holder
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio


def assert_exclusive(pause: Pause) -> None:
    assert pause.new_token > pause.old_token, (pause.old_token, pause.new_token)
    term = pause.new_term_started()
    assert pause.stopped < term < pause.resumed
    stale = [x for x in pause.old_iterations() if x.held and x.at >= term]
    assert not stale, (
        f"the old holder (token {pause.old_token}) believed it held the name "
        f"{[round(x.at - term, 3) for x in stale]} s into the new holder's term "
        f"(token {pause.new_token})"
    )
    loss = pause.old_loss()
    assert loss is not None and loss.at > pause.resumed and loss.reason, loss
    # The body was cancelled in the wait it was stopped in: no more of it ran.
    resumed = [x for x in pause.old_iterations() if x.at > pause.resumed]
    assert not resumed, f"the old holder's body ran {len(resumed)} times after SIGCONT"


async def test_a_leader_paused_past_its_ttl_never_leads_after_the_next_is_elected(
    etcd_server: ServerProcess, anyio_backend: str, tmp_path: Path
) -> None:
    pause = await pause_the_holder(etcd_server.url, anyio_backend, "lead", tmp_path, ttl=2.0)
    assert_exclusive(pause)
