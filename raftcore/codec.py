"""CBOR encoding of messages, log entries and persisted records.

Every encoded value is one CBOR array ``[version, tag, field, ...]``: the
format version (``FORMAT_VERSION``), a small integer tag naming the record
type, then the record's fields. Nested votes and log ids are flattened into
their parent (three items each) and a message's entries travel as one flat
array of five items per entry: every CBOR container costs far more to encode
and decode than a scalar, and this is the replication hot path. The layouts,
the validation rules and the error contract are in ``docs/codec.md``.

The peer messages are ``VoteRequest``, ``VoteResponse``, ``AppendRequest``,
``AppendResponse``, ``InstallSnapshotRequest`` (one chunk of a snapshot: its
``SnapshotMeta`` flattened in place, the chunk as CBOR bytes) and
``InstallSnapshotResponse``. A ``SnapshotMeta`` is also a record of its own
(``encode_snapshot_meta``), e.g. for a snapshot file's header.

Decoding validates strictly and raises only ``CodecError`` (a
``RemoteProtocolError``): the bytes came from a peer or from disk, and
whatever they are, they can neither crash the node nor reach the engine
malformed. Encoding a value the format cannot represent raises
``EncodeError`` (a ``LocalProtocolError``): that is the caller's bug.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, NoReturn

import cbor2

from raftcore._values import value
from raftcore.entries import Entry, EntryKind
from raftcore.errors import LocalProtocolError, RemoteProtocolError
from raftcore.ids import ZERO_LOG_ID, LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import (
    AppendRequest,
    AppendResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from raftcore.snapshots import SnapshotMeta

__all__ = [
    "FORMAT_VERSION",
    "MAX_DATA_DEPTH",
    "MAX_SNAPSHOT_ID_LEN",
    "TAG_APPEND_REQUEST",
    "TAG_APPEND_RESPONSE",
    "TAG_ENTRY",
    "TAG_HELLO",
    "TAG_INSTALL_SNAPSHOT_REQUEST",
    "TAG_INSTALL_SNAPSHOT_RESPONSE",
    "TAG_LOG_ID",
    "TAG_MEMBERSHIP",
    "TAG_READ_INDEX_REQUEST",
    "TAG_READ_INDEX_RESPONSE",
    "TAG_SNAPSHOT_META",
    "TAG_TIMEOUT_NOW",
    "TAG_VOTE",
    "TAG_VOTE_REQUEST",
    "TAG_VOTE_RESPONSE",
    "CodecError",
    "EncodeError",
    "Hello",
    "UnsupportedVersion",
    "decode_entry",
    "decode_hello",
    "decode_log_id",
    "decode_membership",
    "decode_message",
    "decode_snapshot_meta",
    "decode_vote",
    "encode_entry",
    "encode_hello",
    "encode_log_id",
    "encode_membership",
    "encode_message",
    "encode_snapshot_meta",
    "encode_vote",
]

#: The version of the format this node writes and reads.
FORMAT_VERSION: int = 1

#: The deepest nesting of arrays/maps allowed in application data (entry
#: payloads, node info), counting the value's own container as one.
MAX_DATA_DEPTH = 64

#: The longest ``SnapshotMeta.snapshot_id`` (in characters); ids are never empty.
MAX_SNAPSHOT_ID_LEN = 128

# Room for the record's own arrays (message, entries, membership, nodes).
_MAX_CBOR_DEPTH = MAX_DATA_DEPTH + 8
_U64 = (1 << 64) - 1

# Record tags. Frozen: a tag is never reused for another layout.
TAG_VOTE_REQUEST = 1
TAG_VOTE_RESPONSE = 2
TAG_APPEND_REQUEST = 3
TAG_APPEND_RESPONSE = 4
TAG_ENTRY = 5
TAG_VOTE = 6
TAG_LOG_ID = 7
TAG_MEMBERSHIP = 8
TAG_HELLO = 9
TAG_INSTALL_SNAPSHOT_REQUEST = 10
TAG_INSTALL_SNAPSHOT_RESPONSE = 11
TAG_SNAPSHOT_META = 12
TAG_READ_INDEX_REQUEST = 13
TAG_READ_INDEX_RESPONSE = 14
TAG_TIMEOUT_NOW = 15

_RECORD_NAMES = {
    TAG_VOTE_REQUEST: "VoteRequest",
    TAG_VOTE_RESPONSE: "VoteResponse",
    TAG_APPEND_REQUEST: "AppendRequest",
    TAG_APPEND_RESPONSE: "AppendResponse",
    TAG_ENTRY: "Entry",
    TAG_VOTE: "Vote",
    TAG_LOG_ID: "LogId",
    TAG_MEMBERSHIP: "Membership",
    TAG_HELLO: "Hello",
    TAG_INSTALL_SNAPSHOT_REQUEST: "InstallSnapshotRequest",
    TAG_INSTALL_SNAPSHOT_RESPONSE: "InstallSnapshotResponse",
    TAG_SNAPSHOT_META: "SnapshotMeta",
    TAG_READ_INDEX_REQUEST: "ReadIndexRequest",
    TAG_READ_INDEX_RESPONSE: "ReadIndexResponse",
    TAG_TIMEOUT_NOW: "TimeoutNow",
}

_BLANK = EntryKind.BLANK
_NORMAL = EntryKind.NORMAL
_MEMBERSHIP = EntryKind.MEMBERSHIP
_new = tuple.__new__
_isfinite = math.isfinite


class CodecError(RemoteProtocolError):
    """Bytes that are not a valid encoding; the message names what was wrong.

    The only exception the ``decode_*`` functions raise, whatever their input.
    """


class UnsupportedVersion(CodecError):
    """The record was written in a format version this node does not speak."""

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported format version {version}, this node speaks {FORMAT_VERSION}")
        self.version = version


class EncodeError(LocalProtocolError, ValueError):
    """The value cannot be encoded (e.g. entry data that is not CBOR-able)."""


@value
class Hello(NamedTuple):
    """The first frame on a transport connection, in both directions.

    Its layout ``[version, 9, cluster_id, node_id, ...]`` is frozen across
    format versions, so a node can always tell which version its peer speaks.
    Four fields follow (a Hello without them decodes with their defaults):
    the cluster the node's store belongs to (``""``: none yet), the store's
    incarnation (``""``: the store keeps none), ``refused``: a reason, when
    this Hello answers another by refusing it, and the log id of the node's
    effective membership (how current its records of the others are).
    """

    cluster_id: str
    node_id: NodeId
    version: int = FORMAT_VERSION
    store_cluster: str = ""
    incarnation: str = ""
    refused: str = ""
    membership: LogId = ZERO_LOG_ID


# ---------------------------------------------------------------------------
# Validation helpers, shared by both directions.
#
# ``_Bad`` carries a problem and the path of the offending field; each level
# prepends its own field name on the way out, so the success path pays
# nothing for the precise messages.


class _Bad(Exception):
    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    def at(self, field: str) -> _Bad:
        p = self.path
        self.path = field if not p else field + p if p[0] == "[" else f"{field}.{p}"
        return self

    def message(self, record: str) -> str:
        p = self.path
        where = record if not p else record + p if p[0] == "[" else f"{record}.{p}"
        if len(where) > 160:  # a deeply nested value
            where = f"{where[:100]}...{where[-50:]}"
        return f"{where}: {self.problem}"


def _short(v: Any) -> str:
    try:
        r = repr(v)
    except Exception:  # e.g. an int too long to print
        r = "..."
    return r if len(r) <= 40 else r[:37] + "..."


def _show(v: Any) -> str:
    """A short description of a bad value for an error message."""
    r = _short(v)
    t = type(v)
    if t is int or t is float or t is str:
        return r
    return f"{t.__name__} {r}"


def _uint(x: Any, field: str) -> None:
    if type(x) is not int or x < 0:
        raise _Bad(f"expected int >= 0, got {_show(x)}", field)
    if x > _U64:
        raise _Bad(f"expected int < 2**64, got {_show(x)}", field)


def _node_id(x: Any, field: str) -> None:
    if type(x) is not int or x < 1:
        raise _Bad(f"expected node id (int >= 1), got {_show(x)}", field)
    if x > _U64:
        raise _Bad(f"expected int < 2**64, got {_show(x)}", field)


def _bool(x: Any, field: str) -> None:
    if type(x) is not bool:
        raise _Bad(f"expected bool, got {_show(x)}", field)


def _time(x: Any, field: str) -> float:
    """A clock reading: a finite float, or an int (returned as a float)."""
    t = type(x)
    if t is float:
        if _isfinite(x):
            return x  # type: ignore[no-any-return]
        raise _Bad(f"expected a finite number, got {_show(x)}", field)
    if t is int:
        if -_U64 - 1 <= x <= _U64:
            return float(x)
        raise _Bad(f"int out of CBOR range -2**64 .. 2**64-1: {_show(x)}", field)
    raise _Bad(f"expected float or int, got {_show(x)}", field)


def _vote_ok(t: Any, n: Any, c: Any, field: str) -> None:
    if type(t) is int and type(n) is int and not ((t | n) >> 64) and type(c) is bool:
        return
    pre = f"{field}." if field else ""
    _uint(t, f"{pre}term")
    _uint(n, f"{pre}node_id")
    _bool(c, f"{pre}committed")


def _log_id_ok(t: Any, n: Any, i: Any, field: str) -> None:
    if type(t) is int and type(n) is int and type(i) is int and not ((t | n | i) >> 64):
        return
    pre = f"{field}." if field else ""
    _uint(t, f"{pre}term")
    _uint(n, f"{pre}node_id")
    _uint(i, f"{pre}index")


def _check_data(v: Any, room: int) -> None:
    """Application data: None/bool/int/float/str/bytes/list/tuple/dict, nested
    at most ``room`` containers deep; ints within CBOR's range, floats finite,
    map keys scalars. Raises ``_Bad`` naming the offending element."""
    t = type(v)
    if t is bytes or t is str or t is bool or v is None:
        return
    if t is int:
        if -_U64 - 1 <= v <= _U64:
            return
        raise _Bad(f"int out of CBOR range -2**64 .. 2**64-1: {_show(v)}")
    if t is float:
        if _isfinite(v):
            return
        raise _Bad(f"floats must be finite, got {v!r}")
    if t is list or t is tuple:
        if room <= 0:
            raise _Bad(f"nested deeper than {MAX_DATA_DEPTH} arrays/maps")
        room -= 1
        for j, x in enumerate(v):
            tx = type(x)
            if tx is bytes or tx is str or tx is bool or x is None:
                continue
            try:
                _check_data(x, room)
            except _Bad as b:
                raise b.at(f"[{j}]") from None
        return
    if t is dict:
        if room <= 0:
            raise _Bad(f"nested deeper than {MAX_DATA_DEPTH} arrays/maps")
        room -= 1
        for k, x in v.items():
            tk = type(k)
            if tk is not str and tk is not bytes and tk is not bool and k is not None:
                if tk is not int and tk is not float:
                    raise _Bad(
                        f"map keys must be None, bool, int, float, str or bytes, got {_show(k)}"
                    )
                try:
                    _check_data(k, 0)
                except _Bad as b:
                    raise b.at(f"[{_short(k)}]") from None
            try:
                _check_data(x, room)
            except _Bad as b:
                raise b.at(f"[{_short(k)}]") from None
        return
    raise _Bad(
        f"unsupported type {t.__name__} "
        "(allowed: None, bool, int, float, str, bytes, list, tuple, dict)"
    )


# ---------------------------------------------------------------------------
# Membership: [configs, nodes], configs = [[voter id, ...], ...] (sorted),
# nodes = [node id, info, node id, info, ...] (sorted by id).


def _membership_out(m: Any) -> list[Any]:
    if type(m) is not Membership:
        raise _Bad(f"expected Membership, got {_show(m)}")
    configs = []
    for j, c in enumerate(m.configs):
        ids = sorted(c)
        for x in ids:
            _node_id(x, f"configs[{j}]")
        configs.append(ids)
    nodes: list[Any] = []
    for n, info in m.nodes_items:
        _node_id(n, "nodes")
        try:
            _check_data(info, MAX_DATA_DEPTH)
        except _Bad as b:
            raise b.at(f"nodes[{n}]") from None
        nodes += (n, info)
    if not m.quorums:
        return [configs, nodes]
    return [configs, nodes, [None if q is None else _spec_out(q) for q in m.quorums]]


def _spec_out(spec: Any) -> Any:
    return [_spec_out(x) for x in spec] if isinstance(spec, tuple) else spec


def _spec_in(v: Any, depth: int = 0) -> Any:
    if type(v) is list:
        if depth > 8:
            raise _Bad("quorum spec nested too deep", "quorums")
        return tuple(_spec_in(x, depth + 1) for x in v)
    return v


def _membership_in(v: Any) -> Membership:
    if type(v) is not list or len(v) not in (2, 3):
        raise _Bad(f"expected [configs, nodes] or [configs, nodes, quorums], got {_show(v)}")
    configs, nodes = v[0], v[1]
    quorums: Any = ()
    if len(v) == 3:
        if type(v[2]) is not list:
            raise _Bad(f"expected an array of quorum specs, got {_show(v[2])}", "quorums")
        quorums = [None if q is None else _spec_in(q) for q in v[2]]
    if type(configs) is not list:
        raise _Bad(f"expected an array of voter configs, got {_show(configs)}", "configs")
    sets = []
    for j, c in enumerate(configs):
        where = f"configs[{j}]"
        if type(c) is not list:
            raise _Bad(f"expected an array of node ids, got {_show(c)}", where)
        for x in c:
            _node_id(x, where)
        s = frozenset(c)
        if len(s) != len(c):
            raise _Bad("duplicate node id", where)
        sets.append(s)
    if type(nodes) is not list or len(nodes) % 2:
        raise _Bad(f"expected an array [node id, info, ...], got {_show(nodes)}", "nodes")
    infos: dict[int, Any] = {}
    it = iter(nodes)
    for n, info in zip(it, it, strict=True):
        _node_id(n, "nodes")
        if n in infos:
            raise _Bad(f"duplicate node id {n}", "nodes")
        try:
            _check_data(info, MAX_DATA_DEPTH)
        except _Bad as b:
            raise b.at(f"nodes[{n}]") from None
        infos[n] = info
    try:
        return Membership(sets, infos, quorums)
    except Exception as e:  # ConfigError: no config, an empty one, a voter without info
        raise _Bad(f"invalid membership: {getattr(e, 'problem', e)}") from None


# ---------------------------------------------------------------------------
# Snapshot meta: six items in place, ``term, node_id, index, membership,
# snapshot_id, size`` (the last log id flattened); ``membership`` is null or
# the stored form without its version and tag,
# ``[term, node_id, index, configs, nodes]`` (``, quorums`` when any is set).
# Not the hot path: one per snapshot chunk, next to the chunk's bytes.


def _snapshot_id(x: Any, field: str) -> None:
    if type(x) is not str:
        raise _Bad(f"expected str, got {_show(x)}", field)
    if not x or len(x) > MAX_SNAPSHOT_ID_LEN:
        raise _Bad(f"expected 1 to {MAX_SNAPSHOT_ID_LEN} characters, got {len(x)}", field)


def _chunk(x: Any, field: str) -> None:
    if type(x) is not bytes:
        raise _Bad(f"expected bytes, got {_show(x)}", field)


def _meta_out(meta: Any) -> tuple[Any, ...]:
    """A ``SnapshotMeta`` as its six items; ``_Bad`` names what cannot be encoded."""
    if type(meta) is not SnapshotMeta:
        raise _Bad(f"expected SnapshotMeta, got {_show(meta)}")
    lid = meta.last_log_id
    if type(lid) is not LogId:
        raise _Bad(f"expected LogId, got {_show(lid)}", "last_log_id")
    t, n, i = lid
    _log_id_ok(t, n, i, "last_log_id")
    sm = meta.membership
    membership: list[Any] | None = None
    if sm is not None:
        if type(sm) is not tuple or len(sm) != 2:
            raise _Bad(f"expected (LogId, Membership) or None, got {_show(sm)}", "membership")
        mid, m = sm
        if type(mid) is not LogId:
            raise _Bad(f"expected LogId, got {_show(mid)}", "membership.log_id")
        mt, mn, mi = mid
        _log_id_ok(mt, mn, mi, "membership.log_id")
        try:
            membership = [mt, mn, mi, *_membership_out(m)]
        except _Bad as b:
            raise b.at("membership") from None
    _snapshot_id(meta.snapshot_id, "snapshot_id")
    _uint(meta.size, "size")
    return (t, n, i, membership, meta.snapshot_id, meta.size)


def _meta_in(t: Any, n: Any, i: Any, sm: Any, snapshot_id: Any, size: Any) -> SnapshotMeta:
    """A ``SnapshotMeta`` from its six items; ``_Bad`` names what is wrong."""
    _log_id_ok(t, n, i, "last_log_id")
    membership: tuple[LogId, Membership] | None = None
    if sm is not None:
        if type(sm) is not list or len(sm) not in (5, 6):
            raise _Bad(
                "expected null or [term, node_id, index, configs, nodes(, quorums)], "
                f"got {_show(sm)}",
                "membership",
            )
        mt, mn, mi = sm[:3]
        _log_id_ok(mt, mn, mi, "membership.log_id")
        try:
            membership = (_new(LogId, (mt, mn, mi)), _membership_in(sm[3:]))
        except _Bad as b:
            raise b.at("membership") from None
    _snapshot_id(snapshot_id, "snapshot_id")
    _uint(size, "size")
    return SnapshotMeta(_new(LogId, (t, n, i)), membership, snapshot_id, size)


# ---------------------------------------------------------------------------
# Entries: a flat array [term, node_id, index, kind, data, term, ...].
#
# The loops handle the common entries inline (valid log id, NORMAL with
# bytes/str/None data, BLANK) and hand everything else to the one-entry
# functions, which also name whatever is wrong.


def _entries_out(entries: Iterable[Entry]) -> list[Any]:
    flat: list[Any] = []
    push = flat.extend
    try:
        for e in entries:
            if type(e) is Entry and type(e[0]) is LogId:
                (t, n, i), k, d = e
                if type(t) is int and type(n) is int and type(i) is int and not ((t | n | i) >> 64):
                    if k is _NORMAL:
                        td = type(d)
                        if td is bytes or td is str or d is None:
                            push((t, n, i, 1, d))
                            continue
                    elif k is _BLANK and d is None:
                        push((t, n, i, 0, None))
                        continue
            push(_entry_out(e))
    except _Bad as b:
        raise b.at(f"[{len(flat) // 5}]") from None
    return flat


def _entry_out(e: Any) -> tuple[Any, ...]:
    """One entry as five flat items; ``_Bad`` names what cannot be encoded."""
    if type(e) is not Entry:
        raise _Bad(f"expected Entry, got {_show(e)}")
    lid, k, d = e
    if type(lid) is not LogId:
        raise _Bad(f"expected LogId, got {_show(lid)}", "log_id")
    t, n, i = lid
    _log_id_ok(t, n, i, "log_id")
    if k is _NORMAL:
        try:
            _check_data(d, MAX_DATA_DEPTH)
        except _Bad as b:
            raise b.at("data") from None
        return (t, n, i, 1, d)
    if k is _BLANK:
        if d is not None:
            raise _Bad(f"a BLANK entry carries None, got {_show(d)}", "data")
        return (t, n, i, 0, None)
    if k is _MEMBERSHIP:
        try:
            return (t, n, i, 2, _membership_out(d))
        except _Bad as b:
            raise b.at("data") from None
    raise _Bad(f"expected EntryKind, got {_show(k)}", "kind")


def _entries_in(flat: Any) -> tuple[Entry, ...]:
    if type(flat) is not list:
        raise _Bad(f"expected an array, got {_show(flat)}")
    if len(flat) % 5:
        raise _Bad(
            f"expected 5 items per entry [term, node_id, index, kind, data], got {len(flat)} items"
        )
    out: list[Entry] = []
    append = out.append
    it = iter(flat)
    for t, n, i, k, d in zip(it, it, it, it, it, strict=True):
        if type(t) is int and type(n) is int and type(i) is int and (t | n | i) >= 0:
            if k == 1 and type(k) is int:
                td = type(d)
                if td is bytes or td is str or d is None:
                    append(_new(Entry, (_new(LogId, (t, n, i)), _NORMAL, d)))
                    continue
            elif k == 0 and d is None and type(k) is int:
                append(_new(Entry, (_new(LogId, (t, n, i)), _BLANK, None)))
                continue
        try:
            append(_entry_in(t, n, i, k, d))
        except _Bad as b:
            raise b.at(f"[{len(out)}]") from None
    return tuple(out)


def _entry_in(t: Any, n: Any, i: Any, k: Any, d: Any) -> Entry:
    """One entry from its five flat items; ``_Bad`` names what is wrong."""
    _log_id_ok(t, n, i, "log_id")
    if type(k) is not int or not 0 <= k <= 2:
        raise _Bad(
            f"expected entry kind 0 (BLANK), 1 (NORMAL) or 2 (MEMBERSHIP), got {_show(k)}",
            "kind",
        )
    log_id = _new(LogId, (t, n, i))
    if k == 1:
        try:
            _check_data(d, MAX_DATA_DEPTH)
        except _Bad as b:
            raise b.at("data") from None
        return _new(Entry, (log_id, _NORMAL, d))
    if k == 0:
        if d is not None:
            raise _Bad(f"a BLANK entry carries None, got {_show(d)}", "data")
        return _new(Entry, (log_id, _BLANK, None))
    try:
        return _new(Entry, (log_id, _MEMBERSHIP, _membership_in(d)))
    except _Bad as b:
        raise b.at("data") from None


# ---------------------------------------------------------------------------
# Records out.


def check_data(data: Any) -> None:
    """Raise ``EncodeError`` unless ``data`` can travel as entry data.

    Runtimes call it before proposing a write: data the codec cannot encode
    would otherwise reach the log and wedge replication (every append
    carrying it would fail to encode).
    """
    try:
        _check_data(data, MAX_DATA_DEPTH)
    except _Bad as b:
        raise EncodeError(b.message("entry data")) from None
    try:
        cbor2.dumps(data)
    except Exception as e:  # e.g. a str with a lone surrogate (not UTF-8)
        raise EncodeError(f"entry data: cannot encode: {e}") from e


def _out(record: str, build: Callable[[Any], list[Any]], obj: Any) -> bytes:
    try:
        items = build(obj)
    except _Bad as b:
        raise EncodeError(b.message(record)) from None
    except Exception as e:  # not shaped like the record at all
        raise EncodeError(f"{record}: cannot encode {_show(obj)} ({e})") from e
    try:
        return cbor2.dumps(items)
    except Exception as e:  # e.g. a str with a lone surrogate (not UTF-8)
        raise EncodeError(f"{record}: cannot encode: {e}") from e


def _vote_request_out(m: VoteRequest) -> list[Any]:
    (vt, vn, vc), (lt, ln, li), pre, tr = m
    _vote_ok(vt, vn, vc, "vote")
    _log_id_ok(lt, ln, li, "last_log_id")
    _bool(pre, "pre_vote")
    # The last slot: false, or the transfer's leader as [term, node_id] (a
    # leader's vote is committed).
    if tr is None:
        return [FORMAT_VERSION, TAG_VOTE_REQUEST, vt, vn, vc, lt, ln, li, pre, False]
    tt, tn, tc = tr
    _vote_ok(tt, tn, tc, "transfer_from")
    if not tc:
        raise _Bad("must be a leader's (committed) vote", "transfer_from")
    return [FORMAT_VERSION, TAG_VOTE_REQUEST, vt, vn, vc, lt, ln, li, pre, [tt, tn]]


def _vote_response_out(m: VoteResponse) -> list[Any]:
    (vt, vn, vc), granted, (ft, fn, fc), (lt, ln, li), pre = m
    _vote_ok(vt, vn, vc, "vote")
    _bool(granted, "granted")
    _vote_ok(ft, fn, fc, "for_vote")
    _log_id_ok(lt, ln, li, "last_log_id")
    _bool(pre, "pre_vote")
    return [FORMAT_VERSION, TAG_VOTE_RESPONSE, vt, vn, vc, granted, ft, fn, fc, lt, ln, li, pre]


def _append_request_out(m: AppendRequest) -> list[Any]:
    (vt, vn, vc), (pt, pn, pi), entries, commit, seq, sent_at = m
    _vote_ok(vt, vn, vc, "vote")
    _log_id_ok(pt, pn, pi, "prev_log_id")
    if type(commit) is not int or type(seq) is not int or (commit | seq) >> 64:
        _uint(commit, "leader_commit")
        _uint(seq, "seq")
    if type(sent_at) is not float or not _isfinite(sent_at):
        _time(sent_at, "sent_at")
    try:
        flat = _entries_out(entries)
    except _Bad as b:
        raise b.at("entries") from None
    return [FORMAT_VERSION, TAG_APPEND_REQUEST, vt, vn, vc, pt, pn, pi, flat, commit, seq, sent_at]


def _append_response_out(m: AppendResponse) -> list[Any]:
    (vt, vn, vc), success, (mt, mn, mi), hint, (lt, ln, li), seq, sent_at = m
    _vote_ok(vt, vn, vc, "vote")
    _bool(success, "success")
    _log_id_ok(mt, mn, mi, "matching")
    _uint(hint, "conflict_hint")
    _log_id_ok(lt, ln, li, "last_log_id")
    _uint(seq, "seq")
    _time(sent_at, "sent_at")
    return [
        FORMAT_VERSION,
        TAG_APPEND_RESPONSE,
        vt,
        vn,
        vc,
        success,
        mt,
        mn,
        mi,
        hint,
        lt,
        ln,
        li,
        seq,
        sent_at,
    ]


def _install_snapshot_request_out(m: InstallSnapshotRequest) -> list[Any]:
    (vt, vn, vc), meta, offset, data, seq, sent_at = m
    _vote_ok(vt, vn, vc, "vote")
    try:
        lt, ln, li, membership, snapshot_id, size = _meta_out(meta)
    except _Bad as b:
        raise b.at("meta") from None
    _uint(offset, "offset")
    _chunk(data, "data")
    _uint(seq, "seq")
    _time(sent_at, "sent_at")
    return [
        FORMAT_VERSION,
        TAG_INSTALL_SNAPSHOT_REQUEST,
        vt,
        vn,
        vc,
        lt,
        ln,
        li,
        membership,
        snapshot_id,
        size,
        offset,
        data,
        seq,
        sent_at,
    ]


def _install_snapshot_response_out(m: InstallSnapshotResponse) -> list[Any]:
    (vt, vn, vc), snapshot_id, next_offset, done, (mt, mn, mi), seq, sent_at = m
    _vote_ok(vt, vn, vc, "vote")
    _snapshot_id(snapshot_id, "snapshot_id")
    _uint(next_offset, "next_offset")
    _bool(done, "done")
    _log_id_ok(mt, mn, mi, "matching")
    _uint(seq, "seq")
    _time(sent_at, "sent_at")
    return [
        FORMAT_VERSION,
        TAG_INSTALL_SNAPSHOT_RESPONSE,
        vt,
        vn,
        vc,
        snapshot_id,
        next_offset,
        done,
        mt,
        mn,
        mi,
        seq,
        sent_at,
    ]


def _read_index_request_out(m: ReadIndexRequest) -> list[Any]:
    (vt, vn, vc), seq = m
    _vote_ok(vt, vn, vc, "vote")
    _uint(seq, "seq")
    return [FORMAT_VERSION, TAG_READ_INDEX_REQUEST, vt, vn, vc, seq]


def _read_index_response_out(m: ReadIndexResponse) -> list[Any]:
    (vt, vn, vc), seq, point = m
    _vote_ok(vt, vn, vc, "vote")
    _uint(seq, "seq")
    if point is None:
        return [FORMAT_VERSION, TAG_READ_INDEX_RESPONSE, vt, vn, vc, seq, None, None, None]
    pt, pn, pi = point
    _log_id_ok(pt, pn, pi, "read_point")
    return [FORMAT_VERSION, TAG_READ_INDEX_RESPONSE, vt, vn, vc, seq, pt, pn, pi]


def _timeout_now_out(m: TimeoutNow) -> list[Any]:
    (vt, vn, vc), (lt, ln, li) = m
    _vote_ok(vt, vn, vc, "vote")
    _log_id_ok(lt, ln, li, "last_log_id")
    return [FORMAT_VERSION, TAG_TIMEOUT_NOW, vt, vn, vc, lt, ln, li]


_MESSAGE_OUT: dict[type, tuple[str, Callable[[Any], list[Any]]]] = {
    VoteRequest: ("VoteRequest", _vote_request_out),
    VoteResponse: ("VoteResponse", _vote_response_out),
    AppendRequest: ("AppendRequest", _append_request_out),
    AppendResponse: ("AppendResponse", _append_response_out),
    InstallSnapshotRequest: ("InstallSnapshotRequest", _install_snapshot_request_out),
    InstallSnapshotResponse: ("InstallSnapshotResponse", _install_snapshot_response_out),
    ReadIndexRequest: ("ReadIndexRequest", _read_index_request_out),
    ReadIndexResponse: ("ReadIndexResponse", _read_index_response_out),
    TimeoutNow: ("TimeoutNow", _timeout_now_out),
}


def encode_message(msg: Message) -> bytes:
    """Encode a peer message (``VoteRequest``, ``VoteResponse``, ``AppendRequest``,
    ``AppendResponse``, ``InstallSnapshotRequest``, ``InstallSnapshotResponse``,
    ``ReadIndexRequest``, ``ReadIndexResponse`` or ``TimeoutNow``); ``EncodeError`` if it cannot
    be represented."""
    found = _MESSAGE_OUT.get(type(msg))
    if found is None:
        raise EncodeError(f"cannot encode {type(msg).__name__} as a message")
    return _out(found[0], found[1], msg)


def _entry_record_out(e: Entry) -> list[Any]:
    return [FORMAT_VERSION, TAG_ENTRY, *_entry_out(e)]


def encode_entry(entry: Entry) -> bytes:
    """Encode one log entry, as stored."""
    return _out("Entry", _entry_record_out, entry)


def _vote_out(v: Vote) -> list[Any]:
    t, n, c = v
    _vote_ok(t, n, c, "")
    return [FORMAT_VERSION, TAG_VOTE, t, n, c]


def encode_vote(vote: Vote) -> bytes:
    """Encode a vote, as stored."""
    return _out("Vote", _vote_out, vote)


def _log_id_out(log_id: LogId) -> list[Any]:
    t, n, i = log_id
    _log_id_ok(t, n, i, "")
    return [FORMAT_VERSION, TAG_LOG_ID, t, n, i]


def encode_log_id(log_id: LogId) -> bytes:
    """Encode a log id (e.g. the last purged one), as stored."""
    return _out("LogId", _log_id_out, log_id)


def _stored_membership_out(m: tuple[LogId, Membership]) -> list[Any]:
    (t, n, i), membership = m
    _log_id_ok(t, n, i, "log_id")
    return [FORMAT_VERSION, TAG_MEMBERSHIP, t, n, i, *_membership_out(membership)]


def encode_membership(m: tuple[LogId, Membership]) -> bytes:
    """Encode a membership with the log id of the entry that carried it."""
    return _out("Membership", _stored_membership_out, m)


def _snapshot_meta_out(meta: SnapshotMeta) -> list[Any]:
    return [FORMAT_VERSION, TAG_SNAPSHOT_META, *_meta_out(meta)]


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    """Encode a snapshot's ``SnapshotMeta``, as stored (e.g. a snapshot file's header)."""
    return _out("SnapshotMeta", _snapshot_meta_out, meta)


_HELLO_TEXT = ("store_cluster", "incarnation", "refused")


def _hello_out(h: Hello) -> list[Any]:
    cluster_id, node_id, version, *text, (mt, mn, mi) = h
    for name, t in zip(("cluster_id", *_HELLO_TEXT), (cluster_id, *text), strict=True):
        if type(t) is not str:
            raise _Bad(f"expected str, got {_show(t)}", name)
    _node_id(node_id, "node_id")
    _uint(version, "version")
    _log_id_ok(mt, mn, mi, "membership")
    if not any(text) and h.membership == ZERO_LOG_ID:
        return [version, TAG_HELLO, cluster_id, node_id]  # without identity: the short form
    return [version, TAG_HELLO, cluster_id, node_id, *text, mt, mn, mi]


def encode_hello(h: Hello) -> bytes:
    """Encode a transport handshake. Its ``version`` is written as the record's
    version, so a ``Hello`` of another version can be produced (for tests)."""
    return _out("Hello", _hello_out, h)


# ---------------------------------------------------------------------------
# Records in.


class _TagRejected(ValueError):
    def __init__(self, tag: int) -> None:
        super().__init__(f"CBOR tag {tag} is not allowed")
        self.tag = tag


def _reject_tag(tag: Any, *_: Any) -> NoReturn:
    raise _TagRejected(getattr(tag, "tag", -1))


class _NoSemanticTags(Mapping[int, Callable[..., NoReturn]]):
    """Every semantic tag cbor2 would decode itself (datetimes, bignums, sets,
    shared references, ...) maps to a decoder that refuses it."""

    def __getitem__(self, tag: int) -> Callable[..., NoReturn]:
        def refuse(*_: Any) -> NoReturn:
            raise _TagRejected(tag)

        return refuse

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_SEMANTIC_TAGS = _NoSemanticTags()


def _cbor_problem(e: BaseException) -> str:
    seen: BaseException | None = e
    for _ in range(8):  # the tag refusal, wherever cbor2 wrapped it
        if seen is None:
            break
        if isinstance(seen, _TagRejected):
            return f"{seen} (tags are never used by this format)"
        seen = seen.__cause__ or seen.__context__
    if isinstance(e, EOFError | cbor2.CBORDecodeEOF):
        return f"truncated input ({e})"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, MemoryError):
        return "declared length too large"
    return f"invalid CBOR ({type(e).__name__}: {e})"


def _load(data: Any, what: str) -> list[Any]:
    """Parse one CBOR record and check its version; the array it is."""
    if type(data) is not bytes:
        if not isinstance(data, bytearray | memoryview):
            raise CodecError(f"{what}: expected bytes, got {type(data).__name__}")
        try:
            data = bytes(data)
        except Exception as e:
            raise CodecError(f"{what}: unreadable buffer ({e})") from e
    if not data:
        raise CodecError(f"{what}: empty input")
    fp = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(
            fp,
            tag_hook=_reject_tag,
            semantic_decoders=_NO_SEMANTIC_TAGS,
            max_depth=_MAX_CBOR_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        ).decode()
    except Exception as e:
        raise CodecError(f"{what}: {_cbor_problem(e)}") from e
    end = fp.tell()
    if end != len(data):
        extra = len(data) - end
        raise CodecError(f"{what}: {extra} trailing byte{'s' * (extra > 1)} after the record")
    if type(obj) is not list or not obj:
        raise CodecError(f"{what}: expected an array [version, tag, ...], got {_show(obj)}")
    version = obj[0]
    if type(version) is not int:
        raise CodecError(f"{what}: expected the format version (int), got {_show(version)}")
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(version)
    if len(obj) < 2 or type(obj[1]) is not int:
        raise CodecError(f"{what}: expected a record tag (int) after the version")
    return obj


def _tag_problem(what: str, tag: int, expected: str) -> CodecError:
    name = _RECORD_NAMES.get(tag)
    got = f"record tag {tag} ({name})" if name else f"unknown record tag {tag}"
    return CodecError(f"{what}: expected {expected}, got {got}")


def _arity(a: list[Any], n: int) -> None:
    if len(a) != n:
        raise _Bad(f"expected {n} items [version, tag, ...], got {len(a)}")


def _vote_request_in(a: list[Any]) -> VoteRequest:
    _arity(a, 10)
    _, _, vt, vn, vc, lt, ln, li, pre, slot = a
    _vote_ok(vt, vn, vc, "vote")
    _log_id_ok(lt, ln, li, "last_log_id")
    _bool(pre, "pre_vote")
    tr = None
    if slot is not False:
        if type(slot) is not list or len(slot) != 2:
            raise _Bad(f"expected false or [term, node_id], got {_show(slot)}", "transfer_from")
        tt, tn = slot
        _vote_ok(tt, tn, True, "transfer_from")
        tr = _new(Vote, (tt, tn, True))
    return _new(VoteRequest, (_new(Vote, (vt, vn, vc)), _new(LogId, (lt, ln, li)), pre, tr))


def _vote_response_in(a: list[Any]) -> VoteResponse:
    _arity(a, 13)
    _, _, vt, vn, vc, granted, ft, fn, fc, lt, ln, li, pre = a
    _vote_ok(vt, vn, vc, "vote")
    _bool(granted, "granted")
    _vote_ok(ft, fn, fc, "for_vote")
    _log_id_ok(lt, ln, li, "last_log_id")
    _bool(pre, "pre_vote")
    return _new(
        VoteResponse,
        (
            _new(Vote, (vt, vn, vc)),
            granted,
            _new(Vote, (ft, fn, fc)),
            _new(LogId, (lt, ln, li)),
            pre,
        ),
    )


def _append_request_in(a: list[Any]) -> AppendRequest:
    _arity(a, 12)
    _, _, vt, vn, vc, pt, pn, pi, flat, commit, seq, sent_at = a
    _vote_ok(vt, vn, vc, "vote")
    _log_id_ok(pt, pn, pi, "prev_log_id")
    try:
        entries = _entries_in(flat)
    except _Bad as b:
        raise b.at("entries") from None
    if type(commit) is not int or type(seq) is not int or (commit | seq) < 0:
        _uint(commit, "leader_commit")
        _uint(seq, "seq")
    if type(sent_at) is not float or not _isfinite(sent_at):
        sent_at = _time(sent_at, "sent_at")
    return _new(
        AppendRequest,
        (
            _new(Vote, (vt, vn, vc)),
            _new(LogId, (pt, pn, pi)),
            entries,
            commit,
            seq,
            sent_at,
        ),
    )


def _append_response_in(a: list[Any]) -> AppendResponse:
    _arity(a, 15)
    _, _, vt, vn, vc, success, mt, mn, mi, hint, lt, ln, li, seq, sent_at = a
    _vote_ok(vt, vn, vc, "vote")
    _bool(success, "success")
    _log_id_ok(mt, mn, mi, "matching")
    _uint(hint, "conflict_hint")
    _log_id_ok(lt, ln, li, "last_log_id")
    _uint(seq, "seq")
    sent_at = _time(sent_at, "sent_at")
    return _new(
        AppendResponse,
        (
            _new(Vote, (vt, vn, vc)),
            success,
            _new(LogId, (mt, mn, mi)),
            hint,
            _new(LogId, (lt, ln, li)),
            seq,
            sent_at,
        ),
    )


def _install_snapshot_request_in(a: list[Any]) -> InstallSnapshotRequest:
    _arity(a, 15)
    _, _, vt, vn, vc, lt, ln, li, membership, snapshot_id, size, offset, data, seq, sent_at = a
    _vote_ok(vt, vn, vc, "vote")
    try:
        meta = _meta_in(lt, ln, li, membership, snapshot_id, size)
    except _Bad as b:
        raise b.at("meta") from None
    _uint(offset, "offset")
    _chunk(data, "data")
    _uint(seq, "seq")
    sent_at = _time(sent_at, "sent_at")
    return _new(
        InstallSnapshotRequest,
        (_new(Vote, (vt, vn, vc)), meta, offset, data, seq, sent_at),
    )


def _install_snapshot_response_in(a: list[Any]) -> InstallSnapshotResponse:
    _arity(a, 13)
    _, _, vt, vn, vc, snapshot_id, next_offset, done, mt, mn, mi, seq, sent_at = a
    _vote_ok(vt, vn, vc, "vote")
    _snapshot_id(snapshot_id, "snapshot_id")
    _uint(next_offset, "next_offset")
    _bool(done, "done")
    _log_id_ok(mt, mn, mi, "matching")
    _uint(seq, "seq")
    sent_at = _time(sent_at, "sent_at")
    return _new(
        InstallSnapshotResponse,
        (
            _new(Vote, (vt, vn, vc)),
            snapshot_id,
            next_offset,
            done,
            _new(LogId, (mt, mn, mi)),
            seq,
            sent_at,
        ),
    )


def _read_index_request_in(a: list[Any]) -> ReadIndexRequest:
    _arity(a, 6)
    _, _, vt, vn, vc, seq = a
    _vote_ok(vt, vn, vc, "vote")
    _uint(seq, "seq")
    return _new(ReadIndexRequest, (_new(Vote, (vt, vn, vc)), seq))


def _read_index_response_in(a: list[Any]) -> ReadIndexResponse:
    _arity(a, 9)
    _, _, vt, vn, vc, seq, pt, pn, pi = a
    _vote_ok(vt, vn, vc, "vote")
    _uint(seq, "seq")
    point = None
    if (pt, pn, pi) != (None, None, None):
        _log_id_ok(pt, pn, pi, "read_point")
        point = _new(LogId, (pt, pn, pi))
    return _new(ReadIndexResponse, (_new(Vote, (vt, vn, vc)), seq, point))


def _timeout_now_in(a: list[Any]) -> TimeoutNow:
    _arity(a, 8)
    _, _, vt, vn, vc, lt, ln, li = a
    _vote_ok(vt, vn, vc, "vote")
    _log_id_ok(lt, ln, li, "last_log_id")
    return _new(TimeoutNow, (_new(Vote, (vt, vn, vc)), _new(LogId, (lt, ln, li))))


_MESSAGE_IN: dict[int, Callable[[list[Any]], Message]] = {
    TAG_VOTE_REQUEST: _vote_request_in,
    TAG_VOTE_RESPONSE: _vote_response_in,
    TAG_APPEND_REQUEST: _append_request_in,
    TAG_APPEND_RESPONSE: _append_response_in,
    TAG_INSTALL_SNAPSHOT_REQUEST: _install_snapshot_request_in,
    TAG_INSTALL_SNAPSHOT_RESPONSE: _install_snapshot_response_in,
    TAG_READ_INDEX_REQUEST: _read_index_request_in,
    TAG_READ_INDEX_RESPONSE: _read_index_response_in,
    TAG_TIMEOUT_NOW: _timeout_now_in,
}


def _in(a: list[Any], record: str, build: Callable[[list[Any]], Any]) -> Any:
    try:
        return build(a)
    except _Bad as b:
        raise CodecError(b.message(record)) from None
    except Exception as e:  # defensive: validation above should leave nothing
        raise CodecError(f"{record}: {type(e).__name__}: {e}") from e


def decode_message(data: bytes) -> Message:
    """Decode a peer message; ``CodecError`` if ``data`` is not a valid one."""
    a = _load(data, "message")
    tag = a[1]
    build = _MESSAGE_IN.get(tag)
    if build is None:
        raise _tag_problem("message", tag, "a message record (tags 1-4, 10-11, 13-15)")
    return _in(a, _RECORD_NAMES[tag], build)  # type: ignore[no-any-return]


def _load_record(data: Any, tag: int) -> list[Any]:
    record = _RECORD_NAMES[tag]
    a = _load(data, record)
    if a[1] != tag:
        raise _tag_problem(record, a[1], f"record tag {tag}")
    return a


def _entry_record_in(a: list[Any]) -> Entry:
    _arity(a, 7)
    _, _, t, n, i, k, d = a
    return _entry_in(t, n, i, k, d)


def decode_entry(data: bytes) -> Entry:
    """Decode one stored log entry."""
    return _in(_load_record(data, TAG_ENTRY), "Entry", _entry_record_in)  # type: ignore[no-any-return]


def _vote_in(a: list[Any]) -> Vote:
    _arity(a, 5)
    _, _, t, n, c = a
    _vote_ok(t, n, c, "")
    return _new(Vote, (t, n, c))


def decode_vote(data: bytes) -> Vote:
    """Decode a stored vote."""
    return _in(_load_record(data, TAG_VOTE), "Vote", _vote_in)  # type: ignore[no-any-return]


def _log_id_in(a: list[Any]) -> LogId:
    _arity(a, 5)
    _, _, t, n, i = a
    _log_id_ok(t, n, i, "")
    return _new(LogId, (t, n, i))


def decode_log_id(data: bytes) -> LogId:
    """Decode a stored log id."""
    return _in(_load_record(data, TAG_LOG_ID), "LogId", _log_id_in)  # type: ignore[no-any-return]


def _stored_membership_in(a: list[Any]) -> tuple[LogId, Membership]:
    if len(a) != 8:
        _arity(a, 7)
    t, n, i = a[2:5]
    _log_id_ok(t, n, i, "log_id")
    return (_new(LogId, (t, n, i)), _membership_in(a[5:]))


def decode_membership(data: bytes) -> tuple[LogId, Membership]:
    """Decode a stored membership and the log id of the entry that carried it."""
    a = _load_record(data, TAG_MEMBERSHIP)
    return _in(a, "Membership", _stored_membership_in)  # type: ignore[no-any-return]


def _snapshot_meta_in(a: list[Any]) -> SnapshotMeta:
    _arity(a, 8)
    _, _, t, n, i, membership, snapshot_id, size = a
    return _meta_in(t, n, i, membership, snapshot_id, size)


def decode_snapshot_meta(data: bytes) -> SnapshotMeta:
    """Decode a stored ``SnapshotMeta``."""
    a = _load_record(data, TAG_SNAPSHOT_META)
    return _in(a, "SnapshotMeta", _snapshot_meta_in)  # type: ignore[no-any-return]


def _hello_in(a: list[Any]) -> Hello:
    if len(a) == 4:
        a = [*a, "", "", "", 0, 0, 0]
    _arity(a, 10)
    version, _, cluster_id, node_id, s1, s2, s3, mt, mn, mi = a
    for name, t in zip(("cluster_id", *_HELLO_TEXT), (cluster_id, s1, s2, s3), strict=True):
        if type(t) is not str:
            raise _Bad(f"expected str, got {_show(t)}", name)
    _node_id(node_id, "node_id")
    _log_id_ok(mt, mn, mi, "membership")
    membership = _new(LogId, (mt, mn, mi))
    return _new(Hello, (cluster_id, node_id, version, s1, s2, s3, membership))


def decode_hello(data: bytes) -> Hello:
    """Decode a transport handshake; ``UnsupportedVersion`` (a ``CodecError``)
    names the peer's version when it differs from ``FORMAT_VERSION``."""
    return _in(_load_record(data, TAG_HELLO), "Hello", _hello_in)  # type: ignore[no-any-return]
