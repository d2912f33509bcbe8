"""The clients: each runs one operation at a time and records it in the history.

``OpClient`` does not use ``KvClient.put``/``get``/``delete``: those repeat a
write whose outcome was unknown, so one call could apply its value twice
(before and after another client's write), which no single register
operation explains. ``OpClient`` sends an operation again only after an
answer proving it had no effect (see ``history.classify``), on a fresh
connection each time: a connection that fails before anything was written
(refused, connect timeout) proves the request was never sent, while a
failure on a kept-alive connection would not.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Sequence

from raftcore.adapters.kv.chaos.history import (
    Answer,
    History,
    OpRecord,
    OpType,
    Outcome,
    Verdict,
    classify,
)
from raftcore.adapters.kv.http import NEED_DATA, ClientConnection, HttpError, Response, key_path
from raftcore.adapters.kv.http import split_hostport as split

#: How long one operation keeps trying while every answer says it was not applied.
OP_DEADLINE = 5.0
#: How long a request may wait for its answer once sent (nodes run --write-timeout 1.5):
#: short, so that a client stuck on a paused or cut-off node soon tries another.
REQUEST_TIMEOUT = 2.5
CONNECT_TIMEOUT = 1.0
_FIRST_BACKOFF = 0.02
_MAX_BACKOFF = 0.5

_METHOD = {OpType.PUT: "PUT", OpType.DELETE: "DELETE", OpType.GET: "GET"}


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    addr: str,
    request: tuple[str, str, bytes],
) -> Response:
    conn = ClientConnection(addr)
    writer.write(conn.request(*request))
    await writer.drain()
    while True:
        event = conn.next_response()
        if event is NEED_DATA:
            conn.receive_data(await reader.read(65536))  # b"": closed -> HttpError next
            continue
        assert isinstance(event, Response)
        return event


class OpClient:
    """One client: an operation at a time, to the node it believes leads or,
    with a ``home``, first to that node for every operation (following its
    redirect): a client bound to one node, which keeps asking a deposed
    leader as long as that node still answers as leader."""

    def __init__(
        self,
        name: str,
        addrs: Sequence[str],
        history: History,
        *,
        home: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.name = name
        self.addrs = list(addrs)
        self.history = history
        self.home = home
        self.request_timeout = request_timeout
        self.leader: str | None = None
        self._turn = itertools.count()
        self._values = itertools.count()

    def unique_value(self) -> str:
        return f"{self.name}-{next(self._values)}"

    async def run(
        self, op: OpType, key: str, value: str | None = None, *, deadline: float = OP_DEADLINE
    ) -> OpRecord:
        """Invoke ``op``, record its outcome; the record."""
        record = self.history.invoke(self.name, op, key, value)
        try:
            answer, node = await self._attempts(op, key, value, deadline)
        except asyncio.CancelledError:
            self.history.complete(record, Outcome.UNKNOWN, detail="cancelled in flight")
            raise
        outcome = {Verdict.OK: Outcome.OK, Verdict.FAIL: Outcome.FAIL}.get(
            answer.verdict, Outcome.UNKNOWN
        )
        self.history.complete(
            record,
            outcome,
            value=answer.value,
            detail=answer.detail,
            node=node,
            unexpected=answer.unexpected,
        )
        return record

    def _next_addr(self) -> str:
        if self.leader is not None:
            return self.leader
        return self.addrs[next(self._turn) % len(self.addrs)]

    async def _attempts(
        self, op: OpType, key: str, value: str | None, deadline: float
    ) -> tuple[Answer, str | None]:
        end = time.monotonic() + deadline
        if self.home is not None:
            self.leader = self.home
        body = value.encode() if op is OpType.PUT and value is not None else b""
        request = (_METHOD[op], key_path(key), body)
        backoff = _FIRST_BACKOFF
        last = "no attempt"
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return Answer(Verdict.FAIL, detail=f"not applied: {last}"), None
            addr = self._next_addr()
            host, port = split(addr)
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), min(CONNECT_TIMEOUT, remaining)
                )
            except (OSError, TimeoutError) as e:  # nothing was sent
                last = f"{addr}: connect: {type(e).__name__}"
                answer = Answer(Verdict.RETRY, detail=last)
            else:
                try:
                    response = await asyncio.wait_for(
                        _exchange(reader, writer, addr, request), self.request_timeout
                    )
                    answer = classify(op, response.status, response.json_body())
                except (OSError, HttpError, TimeoutError, asyncio.IncompleteReadError) as e:
                    # Sent (maybe partly), no answer: it may have been applied.
                    if self.leader == addr:
                        self.leader = None
                    return Answer(Verdict.UNKNOWN, detail=f"{type(e).__name__}: {e}"), addr
                finally:
                    # A reset, not a close: hundreds of connections a second
                    # would otherwise pile up in TIME_WAIT and exhaust the ports.
                    writer.transport.abort()
                last = f"{addr}: {answer.detail}"
            if answer.verdict is Verdict.OK:
                self.leader = addr
            if answer.verdict is not Verdict.RETRY:
                return answer, addr
            if answer.leader is not None and answer.leader != addr:
                self.leader = answer.leader  # go there at once
                continue
            if self.leader == addr:
                self.leader = None
            await asyncio.sleep(min(backoff, max(0.0, end - time.monotonic())))
            backoff = min(2 * backoff, _MAX_BACKOFF)


#: Keys written once and never again start with this (``w-c3-17``).
WRITE_ONCE_PREFIX = "w-"


async def client_loop(
    client: OpClient,
    keys: Sequence[str],
    rng: random.Random,
    stop: asyncio.Event,
    *,
    think: float = 0.02,
) -> None:
    """Until ``stop``, on ``keys``: puts (35 %), deletes (10 %), gets (40 %);
    and (15 %) a put to a key of its own that nothing writes again, so that
    losing it shows in the final state even where reads are stale."""
    fresh = itertools.count()
    while not stop.is_set():
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.35:
            await client.run(OpType.PUT, key, client.unique_value())
        elif roll < 0.45:
            await client.run(OpType.DELETE, key)
        elif roll < 0.85:
            await client.run(OpType.GET, key)
        else:
            once = f"{WRITE_ONCE_PREFIX}{client.name}-{next(fresh)}"
            await client.run(OpType.PUT, once, client.unique_value())
        await asyncio.sleep(rng.uniform(0, think))


async def commit_one(client: OpClient, key: str, timeout: float) -> float | None:
    """Put unique values to ``key`` until one is acknowledged; seconds it took,
    ``None`` if none was within ``timeout``. Every attempt is in the history."""
    start = time.monotonic()
    end = start + timeout
    while (remaining := end - time.monotonic()) > 0:
        record = await client.run(
            OpType.PUT, key, client.unique_value(), deadline=min(OP_DEADLINE, remaining)
        )
        if record.outcome is Outcome.OK:
            return time.monotonic() - start
        await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
    return None
