"""The client history: every operation with its invoke time, completion time and outcome.

Outcomes (``raftcore.sim.linearizability.Outcome``):

- ``ok``: the node answered ``200`` (or ``404 not_found`` to a GET); for a
  GET the value read (``None``: no such key).
- ``fail``: the operation definitely had no effect: no node could be sent
  the request (connection refused, connect timed out) or every node it was
  sent to answered before proposing it (``307 not_leader``, ``503
  no_leader``/``not_initialized``/``leader_not_ready``), or it was refused as
  malformed (``4xx``, which the harness never sends: counted as unexpected).
- ``unknown``: the request reached a node and no answer says it was not
  applied: a timeout or connection loss after sending, ``503 timeout`` or
  ``leadership_lost``, ``503 shutting_down`` and ``500 node_stopped`` (both
  can fail a write that was already proposed), any other ``5xx``. An unknown
  write may take effect at any time after its invocation, even after the run.

``classify`` maps one HTTP answer to what the client does next.
"""

from __future__ import annotations

import enum
import json
import time
from typing import Any

import attrs

from raftcore.adapters.kv.chaos.journal import Journal
from raftcore.sim.linearizability import Outcome

__all__ = ["Answer", "History", "OpRecord", "OpType", "Outcome", "Verdict", "classify"]


class OpType(enum.Enum):
    PUT = "put"
    DELETE = "delete"
    GET = "get"

    @property
    def is_write(self) -> bool:
        return self is not OpType.GET


class Verdict(enum.Enum):
    """What one answer means for the operation."""

    OK = "ok"
    #: Not applied; the same operation may be sent again (``Answer.leader`` hints where).
    RETRY = "retry"
    FAIL = "fail"
    UNKNOWN = "unknown"


@attrs.frozen
class Answer:
    verdict: Verdict
    value: str | None = None  # a GET's value, a write's previous value
    detail: str = ""
    leader: str | None = None  # not_leader's leader_http
    unexpected: bool = False  # an answer the harness should never get


#: 503 answers given before the request was proposed: it had no effect.
NOT_PROPOSED = frozenset({"no_leader", "not_initialized", "leader_not_ready", "read_not_confirmed"})


def classify(op: OpType, status: int, body: Any) -> Answer:
    """What a node's answer (``status``, decoded JSON ``body``) means for ``op``."""
    if not isinstance(body, dict):
        return Answer(Verdict.UNKNOWN, detail=f"{status}: not a JSON object", unexpected=True)
    error = body.get("error")
    if status == 200:
        key = "value" if op is OpType.GET else "previous"
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            return Answer(Verdict.UNKNOWN, detail=f"200 with {key} {value!r}", unexpected=True)
        return Answer(Verdict.OK, value)
    if status == 404 and error == "not_found" and op is OpType.GET:
        return Answer(Verdict.OK, None)
    detail = f"{status} {error}"
    if status == 307 and error == "not_leader":
        hint = body.get("leader_http")
        return Answer(Verdict.RETRY, detail=detail, leader=hint if isinstance(hint, str) else None)
    if status == 503 and error in NOT_PROPOSED:
        return Answer(Verdict.RETRY, detail=detail)
    if 400 <= status < 500:
        return Answer(Verdict.FAIL, detail=detail, unexpected=True)
    # timeout, leadership_lost, shutting_down, node_stopped, anything else: maybe applied.
    if op is OpType.GET:
        return Answer(Verdict.FAIL, detail=detail)  # a read that did not answer read nothing
    return Answer(Verdict.UNKNOWN, detail=detail)


@attrs.define
class OpRecord:
    op_id: int
    client: str
    type: OpType
    key: str
    #: The value written (PUT), or read (GET, once ok; ``None`` = no such key).
    value: str | None
    invoke: float
    complete: float | None = None
    outcome: Outcome | None = None  # None while in flight
    detail: str = ""
    node: str | None = None  # the HTTP address that gave the final answer

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.op_id,
            "client": self.client,
            "op": self.type.value,
            "key": self.key,
            "value": self.value,
            "invoke": round(self.invoke, 6),
            "complete": None if self.complete is None else round(self.complete, 6),
            "outcome": self.outcome.value if self.outcome else None,
            "detail": self.detail,
            "node": self.node,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> OpRecord:
        return cls(
            op_id=obj["id"],
            client=obj["client"],
            type=OpType(obj["op"]),
            key=obj["key"],
            value=obj["value"],
            invoke=obj["invoke"],
            complete=obj["complete"],
            outcome=Outcome(obj["outcome"]) if obj["outcome"] else None,
            detail=obj.get("detail", ""),
            node=obj.get("node"),
        )


class History:
    """Records operations; each completed one is also written to the journal.

    Times are seconds on the run's monotonic clock (the journal's ``t0``).
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.records: list[OpRecord] = []
        self.unexpected = 0

    def now(self) -> float:
        return time.monotonic() - self.journal.t0

    def invoke(self, client: str, op: OpType, key: str, value: str | None = None) -> OpRecord:
        record = OpRecord(len(self.records), client, op, key, value, self.now())
        self.records.append(record)
        return record

    def complete(
        self,
        record: OpRecord,
        outcome: Outcome,
        *,
        value: str | None = None,
        detail: str = "",
        node: str | None = None,
        unexpected: bool = False,
    ) -> None:
        if record.outcome is not None:
            raise ValueError(f"op {record.op_id} completed twice")
        record.complete = None if outcome is Outcome.UNKNOWN else self.now()
        record.outcome = outcome
        if record.type is OpType.GET:
            record.value = value if outcome is Outcome.OK else None
        record.detail = detail
        record.node = node
        self.unexpected += unexpected
        self.journal.write(record.to_json())

    def abandon_open(self, why: str) -> int:
        """Complete every op still in flight as unknown; how many there were."""
        open_ops = [r for r in self.records if r.outcome is None]
        for r in open_ops:
            self.complete(r, Outcome.UNKNOWN, detail=why)
        return len(open_ops)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{op type: {outcome: n}}`` of the completed ops."""
        out = {t.value: dict.fromkeys((o.value for o in Outcome), 0) for t in OpType}
        for r in self.records:
            if r.outcome is not None:
                out[r.type.value][r.outcome.value] += 1
        return out


def load_history(path: str) -> list[OpRecord]:
    """The records of a history file (JSON lines), e.g. to re-check a run."""
    with open(path) as f:
        return [OpRecord.from_json(json.loads(line)) for line in f if line.strip()]
