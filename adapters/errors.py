"""Client-facing outcomes the runtimes add to the engine's own.

Every request a runtime answers ends in a result or one of these typed
errors (all ``raftcore.errors.ClientError``): the engine's ``NotLeader``
(with the leader's id and address), ``LeadershipLost`` and ``NodeStopped``
(storage failed; the reason says why), and the two below.
"""

from __future__ import annotations

import attrs

from raftcore.errors import ClientError, LocalProtocolError


@attrs.define(frozen=True, auto_exc=True, eq=True)
class Timeout(ClientError):
    """The request or condition did not complete in time.

    For a write the outcome is unknown: it may still commit.
    """

    seconds: float = 0.0


@attrs.define(frozen=True, auto_exc=True, eq=True)
class ShuttingDown(ClientError):
    """The node is shutting down; the request's outcome is unknown."""


class ClusterExists(LocalProtocolError):
    """``initialize`` or ``add_learner`` refused: a node named belongs to a
    cluster already (or refused this node's identity); nothing was changed."""


@attrs.define(frozen=True, auto_exc=True, eq=True)
class Unreachable(ClientError):
    """A node the request needs to reach did not answer; nothing was changed."""

    node_id: int = 0
    detail: str = ""
