"""Error types.

Following h11, errors are split by whose fault they are:

- ``LocalProtocolError``: the caller misused the API (bad config, an event the
  engine cannot take in its state). Raised; nothing was changed.
- ``RemoteProtocolError``: a peer sent something malformed or impossible.
  Raised by the codec and the engine boundary before any state changes; the
  node keeps running.
- ``ClientError`` and subclasses: outcomes of client requests (not leader,
  stopped, ...). They are values carried by ``Respond`` commands; adapters
  raise them to their callers.
"""

from __future__ import annotations

from typing import Any

import attrs


class RaftError(Exception):
    """Base of every raftcore error."""


class LocalProtocolError(RaftError):
    """The local caller misused the API."""


class RemoteProtocolError(RaftError):
    """A peer sent a malformed or impossible message."""


class ConfigError(LocalProtocolError, ValueError):
    """A configuration value is invalid; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@attrs.define(frozen=True, auto_exc=True, eq=True)
class ClientError(RaftError):
    """Base of client-request outcomes that are not results.

    They compare by type and fields (attrs' ``auto_exc`` keeps exceptions
    identity-compared), so commands carrying them are comparable values.
    """

    def __str__(self) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and attrs.astuple(self, recurse=False) == (
            attrs.astuple(other, recurse=False)
        )

    def __hash__(self) -> int:
        return hash((type(self), attrs.astuple(self, recurse=False)))


@attrs.define(frozen=True, auto_exc=True, eq=True)
class NotLeader(ClientError):
    """This node is not the leader; ``leader_id``/``leader_info`` when known."""

    leader_id: int | None = None
    leader_info: Any = None


@attrs.define(frozen=True, auto_exc=True, eq=True)
class LeadershipLost(ClientError):
    """The leader lost leadership before the request's outcome was known.

    The entry may or may not commit later: the outcome is unknown.
    """

    leader_id: int | None = None


@attrs.define(frozen=True, auto_exc=True, eq=True)
class ReadTimeout(ClientError):
    """The leader could not confirm its leadership for a read within
    ``Config.read_timeout`` seconds (it may have been cut off from a quorum)."""

    timeout: float = 0.0


@attrs.define(frozen=True, auto_exc=True, eq=True)
class TransferInProgress(ClientError):
    """The leader is handing leadership to ``to``: it takes no writes or
    membership changes meanwhile (retry at the new leader), and no second
    transfer."""

    to: int | None = None


@attrs.define(frozen=True, auto_exc=True, eq=True)
class InvalidTransfer(ClientError):
    """A leadership transfer that cannot happen; ``reason`` says why (the
    target is a learner or not a member, or there is no other voter)."""

    reason: str = ""


@attrs.define(frozen=True, auto_exc=True, eq=True)
class TransferTimeout(ClientError):
    """The transfer to ``to`` did not finish within ``timeout`` seconds
    (``Config.transfer_timeout``); the leader went back to serving writes."""

    to: int | None = None
    timeout: float = 0.0


@attrs.define(frozen=True, auto_exc=True, eq=True)
class NodeStopped(ClientError):
    """The engine stopped (e.g. storage failure) before answering."""

    reason: str = ""


@attrs.define(frozen=True, auto_exc=True, eq=True)
class NotInitialized(ClientError):
    """The node has no membership yet."""


@attrs.define(frozen=True, auto_exc=True, eq=True)
class MembershipChangeInProgress(ClientError):
    """Another membership change has not finished; retry once it has."""


@attrs.define(frozen=True, auto_exc=True, eq=True)
class InvalidMembershipChange(ClientError, ValueError):
    """The change cannot apply to the current membership; ``reason`` says why.

    Raised by ``raftcore.membership.next_membership`` (a ``ValueError`` too)
    and carried by the engine's answer to a ``ChangeMembership``.
    """

    reason: str = ""


@attrs.define(frozen=True, auto_exc=True, eq=True)
class MembershipMismatch(ClientError):
    """The caller's expected membership log id is not the current one."""

    expected: Any = None
    actual: Any = None
