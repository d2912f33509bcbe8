"""raftcore: a sans-IO Raft consensus engine.

The engine is a pure state machine: feed it events with ``Engine.handle(event,
now)``, execute the commands it returns, and wake it at ``next_deadline``.
"""

from raftcore.commands import (
    AppendLog,
    Apply,
    Command,
    Respond,
    SaveVote,
    Send,
    Stopped,
    StorageCommand,
    TruncateLog,
)
from raftcore.config import Config
from raftcore.engine import Engine, Rng
from raftcore.entries import Entry, EntryKind
from raftcore.errors import (
    ClientError,
    ConfigError,
    LeadershipLost,
    LocalProtocolError,
    NodeStopped,
    NotInitialized,
    NotLeader,
    RaftError,
    RemoteProtocolError,
)
from raftcore.events import (
    Applied,
    ClientWrite,
    ClientWriteBatch,
    Event,
    Initialize,
    IoFlushed,
    MessageReceived,
    StorageFailed,
    TriggerElection,
    TriggerHeartbeat,
    Wakeup,
)
from raftcore.ids import (
    INITIAL_VOTE,
    NO_NODE,
    ZERO_LOG_ID,
    LeaderIdMode,
    LogId,
    NodeId,
    Vote,
    compare_votes,
)
from raftcore.membership import Membership
from raftcore.messages import AppendRequest, AppendResponse, Message, VoteRequest, VoteResponse
from raftcore.quorum import Joint, Majority, QuorumSet
from raftcore.state import Metrics, RecoveredState, Role

__all__ = [
    "INITIAL_VOTE",
    "NO_NODE",
    "ZERO_LOG_ID",
    "AppendLog",
    "AppendRequest",
    "AppendResponse",
    "Applied",
    "Apply",
    "ClientError",
    "ClientWrite",
    "ClientWriteBatch",
    "Command",
    "Config",
    "ConfigError",
    "Engine",
    "Entry",
    "EntryKind",
    "Event",
    "Initialize",
    "IoFlushed",
    "Joint",
    "LeaderIdMode",
    "LeadershipLost",
    "LocalProtocolError",
    "LogId",
    "Majority",
    "Membership",
    "Message",
    "MessageReceived",
    "Metrics",
    "NodeId",
    "NodeStopped",
    "NotInitialized",
    "NotLeader",
    "QuorumSet",
    "RaftError",
    "RecoveredState",
    "RemoteProtocolError",
    "Respond",
    "Rng",
    "Role",
    "SaveVote",
    "Send",
    "Stopped",
    "StorageCommand",
    "StorageFailed",
    "TriggerElection",
    "TriggerHeartbeat",
    "TruncateLog",
    "Vote",
    "VoteRequest",
    "VoteResponse",
    "Wakeup",
    "compare_votes",
]
__version__ = "0.1.0"
