"""Leadership transfer through the node API, on both runtimes.

``transfer_leader(to)`` returns once the target leads; writes during the
hand-over are refused with ``TransferInProgress`` and nothing is lost; a
transfer to a learner or a non-member, or from a follower, is a typed error;
a target that cannot take over (cut off) makes it time out and the old
leader serves writes again.
"""

from __future__ import annotations

import attrs
import pytest
from runtime_kit import CONFIG, KITS, WAIT, Kit, cluster

from raftcore.errors import (
    ConfigError,
    InvalidTransfer,
    NotLeader,
    TransferInProgress,
    TransferTimeout,
)

RUNTIMES = pytest.mark.parametrize("kit", KITS, ids=lambda k: k.name)


@RUNTIMES
@pytest.mark.parametrize("tcp", [False, True], ids=["memory-net", "tcp"])
def test_transfer_to_a_named_voter_and_to_any(kit: Kit, tcp: bool) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, tcp=tcp) as c:
                old = await c.leader()
                for i in range(10):
                    await old.write(f"v{i}", timeout=WAIT)
                target = next(n for n in c.nodes if n != old.node_id)
                assert await old.transfer_leader(target, timeout=WAIT) == target
                new = c.nodes[target]
                assert new.metrics().leader_id == target
                # The old leader follows the new one and refuses writes.
                with pytest.raises(NotLeader) as info:
                    await old.write("refused", timeout=WAIT)
                assert info.value.leader_id == target
                last, _ = await new.write("after", timeout=WAIT)
                await c.wait_applied(last, list(c.nodes))
                for n in c.nodes:
                    assert c.sms[n].items == [f"v{i}" for i in range(10)] + ["after"]
                # No target named: the most up-to-date other voter.
                again = await new.transfer_leader(timeout=WAIT)
                assert again != target and c.nodes[again].metrics().leader_id == again

    kit.run(scenario)


@RUNTIMES
def test_refused_transfers_are_typed_errors(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3) as c:
                leader = await c.leader()
                follower = next(n for n in c.nodes if n != leader.node_id)
                with pytest.raises(InvalidTransfer, match="not a member"):
                    await leader.transfer_leader(9, timeout=WAIT)
                with pytest.raises(NotLeader):
                    await c.nodes[follower].transfer_leader(leader.node_id, timeout=WAIT)
                with pytest.raises(ConfigError):
                    await leader.transfer_leader(-1, timeout=WAIT)
                assert await leader.transfer_leader(leader.node_id, timeout=WAIT) == (
                    leader.node_id
                )
                # The node keeps leading and writing.
                await leader.write("still", timeout=WAIT)

    kit.run(scenario)


@RUNTIMES
def test_a_target_cut_off_times_the_transfer_out_and_writes_resume(kit: Kit) -> None:
    quick = attrs.evolve(CONFIG, transfer_timeout=0.5)

    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, config=quick) as c:
                leader = await c.leader()
                target = next(n for n in c.nodes if n != leader.node_id)
                c.net.isolate(target)

                async def transfer() -> object:
                    try:
                        return await leader.transfer_leader(target, timeout=WAIT)
                    except TransferTimeout as e:
                        return e

                async def write_during() -> object:
                    await leader.wait_for(lambda m: m.transfer_to == target, timeout=WAIT)
                    with pytest.raises(TransferInProgress):
                        await leader.write("during", timeout=WAIT)
                    return "refused"

                results = await kit.gather(transfer(), write_during())
                assert results == [TransferTimeout(target, 0.5), "refused"]
                assert leader.metrics().transfer_to is None
                await leader.write("after", timeout=WAIT)
                c.net.heal()

    kit.run(scenario)
