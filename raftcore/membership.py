"""Cluster membership: voter configs (one, or two while joint) plus node info,
and the changes a leader can make to it (extended joint consensus)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from raftcore.errors import ConfigError, InvalidMembershipChange
from raftcore.ids import NodeId, check_node_id
from raftcore.quorum import (
    Joint,
    Majority,
    QuorumSet,
    QuorumSpec,
    quorum_from_spec,
    quorum_to_spec,
)


def _freeze_quorums(quorums: Iterable[QuorumSpec | None]) -> tuple[QuorumSpec | None, ...]:
    """Canonical specs (sorted ids, tuples); ``None`` for a majority; ``()`` if all are."""
    out: list[QuorumSpec | None] = []
    for spec in quorums:
        if spec is None:
            out.append(None)
            continue
        q = quorum_from_spec(spec)
        out.append(None if isinstance(q, Majority) else quorum_to_spec(q))
    return () if all(s is None for s in out) else tuple(out)


def _freeze_configs(configs: Iterable[Iterable[NodeId]]) -> tuple[frozenset[NodeId], ...]:
    return tuple(frozenset(check_node_id(n, "membership") for n in c) for c in configs)


def _freeze_nodes(nodes: Mapping[NodeId, Any]) -> tuple[tuple[NodeId, Any], ...]:
    items = dict(nodes).items()
    for n, _ in items:
        check_node_id(n, "membership")
    return tuple(sorted(items))


@attrs.frozen
class Membership:
    """Voter configs plus every member's node info (address or any value).

    One config is a uniform membership; two or more are a joint membership in
    which each config must form a quorum. Members listed in ``nodes`` but in
    no config are learners: they receive the log and never vote.

    Each config's voters form a majority quorum unless ``quorums`` gives a
    spec for it (``raftcore.quorum``: flexible or hierarchical), one entry per
    config, ``None`` for a majority; ``()`` means all are majorities.
    """

    configs: tuple[frozenset[NodeId], ...] = attrs.field(converter=_freeze_configs)
    nodes_items: tuple[tuple[NodeId, Any], ...] = attrs.field(converter=_freeze_nodes)
    quorums: tuple[QuorumSpec | None, ...] = attrs.field(default=(), converter=_freeze_quorums)

    def __attrs_post_init__(self) -> None:
        if not self.configs:
            raise ConfigError("membership", "needs at least one voter config")
        ids = set(dict(self.nodes_items))
        for c in self.configs:
            if not c:
                raise ConfigError("membership", "a voter config may not be empty")
            for n in c:
                if n not in ids:
                    raise ConfigError("membership", f"voter {n} has no node info")
        if self.quorums:
            if len(self.quorums) != len(self.configs):
                raise ConfigError("membership", "quorums needs one entry per config")
            for c, spec in zip(self.configs, self.quorums, strict=True):
                if spec is not None and quorum_from_spec(spec).voter_ids() != c:
                    raise ConfigError("membership", f"quorum {spec!r} is not over voters {set(c)}")

    @classmethod
    def with_quorum(cls, quorum: QuorumSet, nodes: Mapping[NodeId, Any]) -> Membership:
        """A uniform membership whose voters form ``quorum`` (e.g. ``Flexible``)."""
        return cls((quorum.voter_ids(),), nodes, (quorum_to_spec(quorum),))

    def config_spec(self, i: int) -> QuorumSpec | None:
        """The quorum spec of config ``i`` (``None``: a majority)."""
        return self.quorums[i] if self.quorums else None

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
        specs = self.quorums or (None,) * len(self.configs)
        parts = [
            Majority(c) if spec is None else quorum_from_spec(spec)
            for c, spec in zip(self.configs, specs, strict=True)
        ]
        return parts[0] if len(parts) == 1 else Joint(parts)

    def node_info(self, node_id: NodeId) -> Any:
        return dict(self.nodes_items).get(node_id)


# -- changes -----------------------------------------------------------------------


def _freeze_ids(ids: Iterable[NodeId]) -> frozenset[NodeId]:
    return frozenset(check_node_id(n, "membership") for n in ids)


def _nodes_arg(nodes: Mapping[NodeId, Any] | Iterable[NodeId]) -> tuple[tuple[NodeId, Any], ...]:
    if not isinstance(nodes, Mapping):
        nodes = {n: None for n in nodes}
    return _freeze_nodes(nodes)


@attrs.frozen
class AddVoters:
    """Make these nodes voters; new nodes get the given info (existing info is kept)."""

    nodes: tuple[tuple[NodeId, Any], ...] = attrs.field(converter=_nodes_arg)


@attrs.frozen
class RemoveVoters:
    """Stop these voters voting (with ``retain`` they stay as learners)."""

    ids: frozenset[NodeId] = attrs.field(converter=_freeze_ids)


@attrs.frozen
class ReplaceVoters:
    """The voters become exactly these; new nodes get the given info."""

    nodes: tuple[tuple[NodeId, Any], ...] = attrs.field(converter=_nodes_arg)


@attrs.frozen
class AddLearners:
    """Add non-voting members that receive the log (existing info is kept)."""

    nodes: tuple[tuple[NodeId, Any], ...] = attrs.field(converter=_nodes_arg)


@attrs.frozen
class RemoveNodes:
    """Forget these members; refused while any of them is still a voter."""

    ids: frozenset[NodeId] = attrs.field(converter=_freeze_ids)


@attrs.frozen
class UpdateNodes:
    """Replace the node info of existing members."""

    nodes: tuple[tuple[NodeId, Any], ...] = attrs.field(converter=_nodes_arg)


def _spec_arg(quorum: QuorumSet | QuorumSpec) -> QuorumSpec:
    return quorum_to_spec(quorum_from_spec(quorum) if isinstance(quorum, tuple) else quorum)


@attrs.frozen
class SetQuorum:
    """The voters become ``quorum``'s (e.g. ``Flexible`` or ``Hierarchical``);
    new nodes get the info in ``nodes``. The only voter change allowed on a
    config that is not a plain majority."""

    quorum: QuorumSpec = attrs.field(converter=_spec_arg)
    nodes: tuple[tuple[NodeId, Any], ...] = attrs.field(default=(), converter=_nodes_arg)


Change = (
    AddVoters | RemoveVoters | ReplaceVoters | AddLearners | RemoveNodes | UpdateNodes | SetQuorum
)
CHANGE_TYPES = (
    AddVoters,
    RemoveVoters,
    ReplaceVoters,
    AddLearners,
    RemoveNodes,
    UpdateNodes,
    SetQuorum,
)


Goal = tuple[frozenset[NodeId], QuorumSpec | None]


def change_goal(m: Membership, change: Change) -> tuple[Goal, dict[NodeId, Any]]:
    """The voter config ``change`` asks for (voters and quorum spec), and the
    node infos it leaves.

    The goal starts from the newest config (the second one of a joint
    membership). Raises ``InvalidMembershipChange`` (a ``ValueError``) naming
    what is wrong.
    """
    voters = m.configs[-1]
    spec = m.config_spec(len(m.configs) - 1)
    nodes = m.nodes
    if isinstance(change, (AddVoters, RemoveVoters, ReplaceVoters)) and spec is not None:
        raise InvalidMembershipChange(
            f"the voters form a {spec[0]} quorum: change them with SetQuorum, "
            "which says what the new quorum is"
        )
    if isinstance(change, (AddVoters, ReplaceVoters, AddLearners, SetQuorum)):
        for n, info in change.nodes:
            nodes.setdefault(n, info)
        ids = frozenset(n for n, _ in change.nodes)
        if isinstance(change, AddVoters):
            voters = voters | ids
        elif isinstance(change, ReplaceVoters):
            voters = ids
        elif isinstance(change, SetQuorum):
            q = quorum_from_spec(change.quorum)
            if isinstance(q, Joint):
                raise InvalidMembershipChange(
                    "a joint quorum is not a goal: joint configs are the engine's"
                )
            voters = q.voter_ids()
            spec = None if isinstance(q, Majority) else change.quorum
            missing = voters - nodes.keys()
            if missing:
                raise InvalidMembershipChange(
                    f"no node info for new voters {sorted(missing)}: pass nodes"
                )
    elif isinstance(change, RemoveVoters):
        unknown = change.ids - voters
        if unknown:
            raise InvalidMembershipChange(f"not voters: {sorted(unknown)}")
        voters = voters - change.ids
    elif isinstance(change, RemoveNodes):
        still = change.ids & m.voter_ids()
        if still:
            raise InvalidMembershipChange(
                f"still voters (remove them as voters first): {sorted(still)}"
            )
        unknown = change.ids - m.node_ids()
        if unknown:
            raise InvalidMembershipChange(f"not members: {sorted(unknown)}")
        for n in change.ids:
            del nodes[n]
    elif isinstance(change, UpdateNodes):
        unknown = frozenset(n for n, _ in change.nodes) - m.node_ids()
        if unknown:
            raise InvalidMembershipChange(f"not members: {sorted(unknown)}")
        nodes.update(change.nodes)
    else:
        raise InvalidMembershipChange(f"not a membership change: {change!r}")
    if not voters:
        raise InvalidMembershipChange("the change leaves no voter")
    return (voters, spec), nodes


def next_membership(m: Membership, change: Change, *, retain: bool) -> Membership:
    """The membership a leader appends next for ``change``.

    A change of voters goes through a joint config of the newest config and
    the goal (extended joint consensus: from a joint ``[a, b]`` the next step
    is ``[b, goal]``, so consecutive memberships always share a config and
    any sequence of changes is safe). A change of learners or node info only
    is one uniform step.
    """
    (voters, spec), nodes = change_goal(m, change)
    last = len(m.configs) - 1
    last_spec = m.config_spec(last)
    if (voters, spec) != (m.configs[last], last_spec):
        return Membership((m.configs[last], voters), nodes, (last_spec, spec))
    if m.is_joint:
        return leave_joint(Membership(m.configs, nodes, m.quorums), retain=retain)
    return Membership((voters,), nodes, (spec,))


def leave_joint(m: Membership, *, retain: bool) -> Membership:
    """The uniform membership that ends joint ``m``: its newest config.

    Voters the change removed are dropped from the nodes unless ``retain``
    keeps them as learners.
    """
    goal = m.configs[-1]
    nodes = m.nodes
    if not retain:
        for n in m.voter_ids() - goal:
            nodes.pop(n, None)
    return Membership((goal,), nodes, (m.config_spec(len(m.configs) - 1),))
