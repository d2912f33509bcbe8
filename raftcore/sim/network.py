"""Simulated network: per-message delay, loss, duplication and partitions.

Every message gets its own random delay, so messages between two nodes are
reordered whenever the delay jitter exceeds their spacing; a rare straggler
arrives seconds late. Loss and
duplication are independent per message. Partitions are sets of cut
*directed* links, so one model covers all three kinds:

- symmetric: ``split_links([{1, 2}, {3, 4, 5}])`` cuts both directions
  between the groups;
- one-way: ``one_way_links({1}, {2, 3})`` cuts 1->2 and 1->3 only (1 still
  hears 2 and 3);
- partial: ``partial_links(nodes, 1, {2})`` leaves node 1 able to reach only
  node 2 (while 2 still reaches everyone), the classic cause of leader churn.

Several partitions may be active at once (a link is cut while any active
partition cuts it); each is healed on its own or all at once with ``heal()``.
A link is checked both when a message is sent and when it would arrive, so a
partition also drops messages already in flight.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import attrs

from raftcore.ids import NodeId
from raftcore.sim.rng import Rng

__all__ = [
    "Link",
    "NetParams",
    "SimNetwork",
    "bridge_links",
    "one_way_links",
    "partial_links",
    "split_links",
]

Link = tuple[NodeId, NodeId]


@attrs.frozen
class NetParams:
    """Per-message fault rates and the delay range (virtual seconds)."""

    loss: float = 0.0
    dup: float = 0.0
    delay_min: float = 0.0005
    delay_max: float = 0.005
    #: Probability that a message straggles: it arrives after up to
    #: ``straggle_max`` seconds, long after newer ones (stale terms, old acks).
    straggle: float = 0.0
    straggle_max: float = 2.0


def split_links(groups: Iterable[Collection[NodeId]]) -> frozenset[Link]:
    """Cut every link (both directions) between different groups."""
    gs = [frozenset(g) for g in groups]
    out: set[Link] = set()
    for i, a in enumerate(gs):
        for j, b in enumerate(gs):
            if i != j:
                out.update((x, y) for x in a for y in b)
    return frozenset(out)


def one_way_links(sources: Collection[NodeId], targets: Collection[NodeId]) -> frozenset[Link]:
    """Cut ``source -> target`` for every pair; the reverse direction stays up."""
    return frozenset((s, t) for s in sources for t in targets if s != t)


def partial_links(
    nodes: Collection[NodeId], node: NodeId, reach: Collection[NodeId]
) -> frozenset[Link]:
    """``node`` can exchange messages only with ``reach``; the rest stay connected."""
    out: set[Link] = set()
    for other in nodes:
        if other != node and other not in reach:
            out.add((node, other))
            out.add((other, node))
    return frozenset(out)


def bridge_links(
    left: Collection[NodeId], bridge: NodeId, right: Collection[NodeId]
) -> frozenset[Link]:
    """Two groups that only the ``bridge`` node connects."""
    return (
        split_links([left, right])
        - {(bridge, n) for n in (*left, *right)}
        - {(n, bridge) for n in (*left, *right)}
    )


class SimNetwork:
    """Decides, for each message, whether and when it arrives."""

    def __init__(self, nodes: Iterable[NodeId], rng: Rng, base: NetParams | None = None) -> None:
        self.nodes = tuple(sorted(nodes))
        self.rng = rng
        self.base = base or NetParams()
        self.params = self.base
        self._burst_token = 0
        self._partitions: dict[int, frozenset[Link]] = {}
        self._cut: dict[Link, int] = {}
        self._next_partition = 1
        self.sent = 0
        self.delivered = 0
        self.lost = 0
        self.cut_drops = 0
        self.duplicated = 0
        self.straggled = 0

    # -- rates ---------------------------------------------------------------

    def set_burst(self, params: NetParams) -> int:
        """Override the base rates until ``end_burst`` with the returned token."""
        self._burst_token += 1
        self.params = params
        return self._burst_token

    def end_burst(self, token: int) -> None:
        """End the burst ``token`` unless a newer burst replaced it."""
        if token == self._burst_token:
            self.params = self.base

    def set_base(self, params: NetParams) -> None:
        self.base = params
        self._burst_token += 1
        self.params = params

    # -- partitions -----------------------------------------------------------

    def partition(self, links: Iterable[Link]) -> int:
        """Cut ``links``; returns an id for ``heal_partition``."""
        pid = self._next_partition
        self._next_partition += 1
        cut = frozenset(links)
        self._partitions[pid] = cut
        for link in cut:
            self._cut[link] = self._cut.get(link, 0) + 1
        return pid

    def heal_partition(self, pid: int) -> None:
        cut = self._partitions.pop(pid, None)
        if cut is None:
            return
        for link in cut:
            n = self._cut[link] - 1
            if n:
                self._cut[link] = n
            else:
                del self._cut[link]

    def heal(self) -> None:
        """Remove every partition and end any burst."""
        self._partitions.clear()
        self._cut.clear()
        self._burst_token += 1
        self.params = self.base

    @property
    def active_partitions(self) -> int:
        return len(self._partitions)

    def cut_links(self) -> frozenset[Link]:
        return frozenset(self._cut)

    def connected(self, src: NodeId, dst: NodeId) -> bool:
        return (src, dst) not in self._cut

    # -- delivery -------------------------------------------------------------

    def plan(self, src: NodeId, dst: NodeId) -> list[float]:
        """Delays of the copies of one message from ``src`` to ``dst`` that
        will arrive (empty: lost or cut). Callers must re-check ``connected``
        at arrival time."""
        self.sent += 1
        if (src, dst) in self._cut:
            self.cut_drops += 1
            return []
        p = self.params
        rng = self.rng
        if rng.chance(p.loss):
            self.lost += 1
            return []
        delays = [rng.uniform(p.delay_min, p.delay_max)]
        if rng.chance(p.dup):
            self.duplicated += 1
            delays.append(rng.uniform(p.delay_min, p.delay_max * 2))
        if rng.chance(p.straggle):
            self.straggled += 1
            delays[0] = rng.uniform(p.delay_max, p.straggle_max)
        return delays
