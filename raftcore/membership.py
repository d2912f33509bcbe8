"""Cluster membership: voter configs (one, or two while joint) plus node info."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from raftcore.errors import ConfigError
from raftcore.ids import NodeId
from raftcore.quorum import Joint, Majority, QuorumSet


def _freeze_configs(configs: Iterable[Iterable[NodeId]]) -> tuple[frozenset[NodeId], ...]:
    return tuple(frozenset(c) for c in configs)


def _freeze_nodes(nodes: Mapping[NodeId, Any]) -> tuple[tuple[NodeId, Any], ...]:
    return tuple(sorted(dict(nodes).items()))


@attrs.frozen
class Membership:
    """Voter configs plus every member's node info (address or any value).

    One config is a uniform membership; two or more are a joint membership in
    which each config must form a quorum. Members listed in ``nodes`` but in
    no config are learners: they receive the log and never vote.
    """

    configs: tuple[frozenset[NodeId], ...] = attrs.field(converter=_freeze_configs)
    nodes_items: tuple[tuple[NodeId, Any], ...] = attrs.field(converter=_freeze_nodes)

    def __attrs_post_init__(self) -> None:
        if not self.configs:
            raise ConfigError("membership", "needs at least one voter config")
        ids = set(dict(self.nodes_items))
        for c in self.configs:
            if not c:
                raise ConfigError("membership", "a voter config may not be empty")
            for n in c:
                if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
                    raise ConfigError("membership", f"node id {n!r} is not a positive int")
                if n not in ids:
                    raise ConfigError("membership", f"voter {n} has no node info")

    @classmethod
    def of(cls, nodes: Mapping[NodeId, Any] | Iterable[NodeId]) -> Membership:
        """A uniform membership whose voters are ``nodes`` (a mapping to info, or ids)."""
        if not isinstance(nodes, Mapping):
            nodes = {n: None for n in nodes}
        return cls((frozenset(nodes),), nodes)

    @property
    def nodes(self) -> dict[NodeId, Any]:
        return dict(self.nodes_items)

    @property
    def is_joint(self) -> bool:
        return len(self.configs) > 1

    def voter_ids(self) -> frozenset[NodeId]:
        out: frozenset[NodeId] = frozenset()
        for c in self.configs:
            out |= c
        return out

    def learner_ids(self) -> frozenset[NodeId]:
        return frozenset(n for n, _ in self.nodes_items) - self.voter_ids()

    def node_ids(self) -> frozenset[NodeId]:
        return frozenset(n for n, _ in self.nodes_items)

    def is_voter(self, node_id: NodeId) -> bool:
        return any(node_id in c for c in self.configs)

    def quorum_set(self) -> QuorumSet:
        if len(self.configs) == 1:
            return Majority(self.configs[0])
        return Joint(Majority(c) for c in self.configs)

    def node_info(self, node_id: NodeId) -> Any:
        return dict(self.nodes_items).get(node_id)
