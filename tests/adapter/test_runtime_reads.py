"""Linearizable reads through the node API, on both runtimes.

``read()`` returns once the local state machine (a leader's or a
follower's) has applied everything acknowledged before the call; a leader
cut off from the others never returns a read (known bug 10), it fails with
a typed error.
"""

from __future__ import annotations

import pytest
from runtime_kit import KITS, STAY_LEADER, WAIT, Kit, cluster

from raftcore.errors import LeadershipLost, ReadTimeout
from raftcore.events import ReadPolicy

RUNTIMES = pytest.mark.parametrize("kit", KITS, ids=lambda k: k.name)


@RUNTIMES
@pytest.mark.parametrize("policy", list(ReadPolicy), ids=lambda p: p.value)
def test_a_read_sees_every_acknowledged_write(kit: Kit, policy: ReadPolicy) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 3) as c:
                leader = await c.leader()
                last = 0
                for i in range(20):
                    last, _ = await leader.write(f"v{i}", timeout=WAIT)
                point = await leader.read(policy, timeout=WAIT)
                assert point.index >= last
                # The state machine has applied it: the read sees all 20.
                assert c.sms[leader.node_id].items[-1] == "v19"
                assert await leader.ensure_linearizable(timeout=WAIT) >= point
                # A follower read: the leader gives the point, the follower
                # waits until its own state machine applied it.
                f = next(n for n in c.nodes if n != leader.node_id)
                assert await c.nodes[f].read(policy, timeout=WAIT) >= point
                assert c.sms[f].items[-1] == "v19"

    kit.run(scenario)


@RUNTIMES
def test_a_leader_cut_off_from_the_others_never_answers_a_read(kit: Kit) -> None:
    """Known bug 10 on a real runtime: the old leader (check-quorum off, so it
    keeps leading) fails every read while the others elect and write."""

    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, config=STAY_LEADER) as c:
                old = await c.leader()
                c.net.isolate(old.node_id)
                others = [n for n in c.nodes if n != old.node_id]
                new = await c.leader(others)
                await new.write("fresh", timeout=WAIT)
                for policy in ReadPolicy:
                    with pytest.raises((ReadTimeout, LeadershipLost)):
                        await old.read(policy, timeout=WAIT)
                c.net.heal()

    kit.run(scenario)
