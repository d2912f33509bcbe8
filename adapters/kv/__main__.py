"""The KV service's command line: ``python -m raftcore.adapters.kv COMMAND ...``.

    serve        run one node (Raft + HTTP) until SIGTERM/SIGINT
    put          set a key            get     read a key (from the leader)
    delete       remove a key         status  every node's role, term, log, commit;
                                              the voters, learners, joint or not
    add-node     add a node as a learner (waits until it caught up)
    promote      make learners voters
    remove-node  remove a node (as a voter; with --retain it stays a learner)

See docs/kv-service.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from raftcore.adapters.kv.client import KvClient, KvError, parse_cluster
from raftcore.config import Config

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
#: ``serve``: the data directory or its store cannot be used.
EXIT_STORE = 4
#: ``serve``: an address to listen on cannot be bound (in use, not local).
EXIT_LISTEN = 5
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _cluster(spec: str) -> Any:
    try:
        return parse_cluster(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


EXAMPLES = """\
examples:
  export RAFTCORE_CLUSTER=1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
  # on each node (--init on one of them only):
  %(prog)s serve --id 1 --data-dir /var/lib/kv1 --init
  %(prog)s put greeting hello
  %(prog)s get greeting
  %(prog)s status
  %(prog)s add-node 4 10.0.0.4:7001
  %(prog)s promote 4
  # before restarting the leader:
  %(prog)s transfer-leader --to 2

Every command takes --cluster (default: $RAFTCORE_CLUSTER). Exit status: 0 ok,
1 key not found, 2 bad arguments or configuration, 3 refused or unreachable
(or the data directory in use), 4 unusable data directory or store, 5 cannot
listen on an address.
See docs/kv-service.md.
"""


def _prog() -> str:
    """``raftcore-kv`` when run as the console command, else the module form."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name if name.startswith("raftcore-kv") else "python -m raftcore.adapters.kv"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="A replicated key-value store on raftcore.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env_cluster = os.environ.get("RAFTCORE_CLUSTER") or None
    sub = parser.add_subparsers(dest="command", required=True)
    ca_help = (
        "talk HTTPS to nodes serving --api-tls-cert, checking them with this CA "
        "(default: $RAFTCORE_API_CA)"
    )
    token_help = (
        "send the first token of this file (the nodes' --api-token-file format); "
        "default: $RAFTCORE_API_TOKEN"
    )
    cluster_help = (
        "ID=HOST:PORT[/HTTPHOST:HTTPPORT],... : every node's Raft address "
        "(and HTTP address; default: Raft port + 1000); default: $RAFTCORE_CLUSTER"
    )

    serve = sub.add_parser("serve", help="run one node until SIGTERM/SIGINT")
    serve.add_argument("--id", type=_node_id, required=True, help="this node's id (1, 2, ...)")
    serve.add_argument(
        "--cluster",
        type=_cluster,
        required=env_cluster is None,
        default=env_cluster,
        help=cluster_help,
    )
    serve.add_argument("--data-dir", required=True, help="the node's directory (raft.sqlite3)")
    serve.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    serve.add_argument("--http", help="HTTP listen address (default: from --cluster)")
    serve.add_argument(
        "--raft",
        metavar="HOST:PORT",
        help="this node's Raft address, if --cluster does not list it (a node joining)",
    )
    serve.add_argument(
        "--raft-listen",
        type=_address,
        metavar="HOST:PORT",
        help="listen for Raft traffic here instead of at this node's advertised Raft "
        "address (for a node behind a proxy or NAT)",
    )
    serve.add_argument(
        "--init", action="store_true", help="form the cluster if this node's store is fresh"
    )
    serve.add_argument("--cluster-id", default="raftcore-kv", help="checked in the handshake")
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="mutual TLS between nodes: this node's certificate (PEM); its subjectAltName "
        "must include DNS:node-ID and the address peers dial",
    )
    serve.add_argument("--tls-key", metavar="FILE", help="this node's private key (PEM)")
    serve.add_argument("--tls-ca", metavar="FILE", help="the cluster CA's certificate (PEM)")
    serve.add_argument(
        "--api-tls-cert",
        metavar="FILE",
        help="serve the HTTP API over HTTPS with this certificate (it may be the node's "
        "--tls-cert); clients then need --api-ca",
    )
    serve.add_argument("--api-tls-key", metavar="FILE", help="the HTTPS certificate's key")
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        default=256,
        metavar="N",
        help="HTTP connections served at once; more are answered 503 and closed (default 256)",
    )
    serve.add_argument(
        "--api-token-file",
        metavar="FILE",
        help="require 'Authorization: Bearer TOKEN' on every HTTP request; FILE holds one "
        "token per line, optionally followed by 'ro' (reads only) or 'rw' (the default)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext Raft traffic beyond loopback (anyone who reaches the Raft "
        "port can forge messages; logged as a warning)",
    )
    serve.add_argument(
        "--election-timeout",
        type=_seconds,
        default=0.3,
        metavar="SECONDS",
        help="minimum election timeout (the maximum is twice it; default 0.3)",
    )
    serve.add_argument(
        "--heartbeat", type=_seconds, help="heartbeat interval (default: election timeout / 3)"
    )
    serve.add_argument(
        "--snapshot-every",
        type=_count,
        default=10_000,
        metavar="N",
        help="snapshot the map every N applied entries, then purge the log (0: only on "
        "the snapshot command; default 10000)",
    )
    serve.add_argument("--write-timeout", type=_seconds, default=5.0, metavar="SECONDS")
    serve.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO",
        choices=LOG_LEVELS,
        help=f"one of {', '.join(LOG_LEVELS)} (default INFO)",
    )

    def client_options(p: argparse.ArgumentParser) -> None:
        """What every client command takes: where the cluster is, how long
        to try, and the API's token and CA."""
        p.add_argument(
            "--cluster",
            type=_cluster,
            required=env_cluster is None,
            default=env_cluster,
            help=cluster_help,
        )
        p.add_argument(
            "--timeout", type=_seconds, default=10.0, help="give up after this long (seconds)"
        )
        p.add_argument("--api-token-file", metavar="FILE", help=token_help)
        p.add_argument("--api-ca", metavar="FILE", help=ca_help)

    for name, helptext in (
        ("put", "set KEY to VALUE"),
        ("get", "print KEY's value"),
        ("delete", "remove KEY"),
        ("status", "show every node's status"),
        ("snapshot", "snapshot every node's state now (each then purges its log)"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name not in ("status", "snapshot"):
            p.add_argument("key")
        if name == "put":
            p.add_argument("value")
        client_options(p)
        if name == "status":
            p.add_argument("--json", action="store_true", help="print the raw JSON")

    add = sub.add_parser(
        "add-node", help="add a node as a learner; by default wait until it caught up"
    )
    add.add_argument("node_id", type=_node_id, metavar="ID")
    add.add_argument("raft", type=_address, metavar="RAFT_ADDR", help="its Raft HOST:PORT")
    add.add_argument("--http", type=_address, help="its HTTP HOST:PORT (default: Raft port + 1000)")
    add.add_argument(
        "--max-lag", type=int, default=0, help="caught up: within this many entries (default 0)"
    )
    add.add_argument(
        "--catch-up-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long the leader waits for it to catch up (default 30)",
    )
    add.add_argument("--no-wait", action="store_true", help="do not wait for it to catch up")
    promote = sub.add_parser("promote", help="make learners voters (through a joint config)")
    promote.add_argument("node_ids", type=_node_id, nargs="+", metavar="ID")
    remove = sub.add_parser(
        "remove-node", help="remove a node from the voters and (unless --retain) the cluster"
    )
    remove.add_argument("node_id", type=_node_id, metavar="ID")
    remove.add_argument("--retain", action="store_true", help="keep it as a learner")
    transfer = sub.add_parser(
        "transfer-leader",
        help="hand leadership to another voter (e.g. before restarting the leader)",
    )
    transfer.add_argument(
        "--to",
        type=_node_id,
        metavar="ID",
        help="the new leader (default: the most up-to-date other voter)",
    )
    for p in (add, promote, remove, transfer):
        client_options(p)
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    return parser


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _node_id(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive node id, got {text!r}")
    return int(text)


def _address(text: str) -> str:
    from raftcore.adapters.kv.http import check_address

    try:
        return check_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _serve(args: argparse.Namespace) -> int:
    from raftcore.adapters.kv.auth import ApiTokens
    from raftcore.adapters.kv.server import ServeOptions, serve, setup_logging

    setup_logging(args.id, getattr(logging, args.log_level))
    low = args.election_timeout
    config = Config(
        election_timeout_min=low,
        election_timeout_max=2 * low,
        heartbeat_interval=args.heartbeat if args.heartbeat is not None else low / 3,
        snapshot_every=args.snapshot_every or None,
    )
    opts = ServeOptions(
        node_id=args.id,
        cluster=args.cluster,
        data_dir=args.data_dir,
        runtime=args.runtime,
        http=args.http,
        init=args.init,
        cluster_id=args.cluster_id,
        config=config,
        write_timeout=args.write_timeout,
        raft=args.raft,
        raft_bind=args.raft_listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
        insecure=args.insecure,
        api_tokens=None if args.api_token_file is None else ApiTokens.load(args.api_token_file),
        max_connections=args.max_connections,
        api_tls_cert=args.api_tls_cert,
        api_tls_key=args.api_tls_key,
    )
    return serve(opts)


def _fmt_log_id(lid: dict[str, int]) -> str:
    return f"{lid['term']}-{lid['node_id']}-{lid['index']}"


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids) or "-"


def membership_summary(m: dict[str, Any]) -> str:
    """``voters 1, 2, 3  learners 4  (uniform)``; a joint one shows both configs."""
    if m["joint"]:
        voters = " + ".join("{" + _ids(c) + "}" for c in m["voters"])
        kind = "JOINT: a change is under way, quorums of both configs needed"
    else:
        voters = _ids(m["voter_ids"])
        kind = "uniform"
    return f"voters {voters}  learners {_ids(m['learners'])}  ({kind})"


def membership_text(m: dict[str, Any] | None) -> str:
    """A membership (as ``/status`` and ``/cluster`` give it) as a few lines."""
    if m is None:
        return "no membership (the node is not part of a cluster yet)"
    lines = [membership_summary(m)]
    voters = set(m["voter_ids"])
    for n, raft in m["nodes"].items():
        kind = "voter" if int(n) in voters else "learner"
        http = m.get("http", {}).get(n) or "?"
        lines.append(f"  {n:>4} {kind:<8} raft {raft:<21} http {http}")
    return "\n".join(lines)


def status_table(statuses: dict[str, Any]) -> str:
    lines = [
        f"{'node':>4} {'http':<21} {'role':<13} {'leader':>6} {'term':>5} "
        f"{'last log':>12} {'committed':>12} {'applied':>12} {'snapshot':>12} {'keys':>6}  member"
    ]
    up = [s for s in statuses.values() if isinstance(s, dict)]
    view = next((s for s in up if s["role"] == "leader"), None) or next(
        (s for s in up if s.get("membership")), None
    )
    membership = view.get("membership") if view else None
    for addr, s in statuses.items():
        if not isinstance(s, dict):
            lines.append(f"{'?':>4} {addr:<21} {s}")
            continue
        member = "-"
        if membership is not None:
            if s["node_id"] in membership["voter_ids"]:
                member = "voter"
            elif s["node_id"] in membership["learners"]:
                member = "learner"
        lines.append(
            f"{s['node_id']:>4} {addr:<21} {s['role']:<13} {s['leader_id'] or '-'!s:>6} "
            f"{s['term']:>5} {_fmt_log_id(s['last_log']):>12} "
            f"{_fmt_log_id(s['committed']):>12} {_fmt_log_id(s['applied']):>12} "
            f"{_fmt_log_id(s['snapshot']) if s.get('snapshot') else '-':>12} {s['keys']:>6}"
            f"  {member}"
        )
    if view is not None and membership is not None:
        whose = "the leader" if view["role"] == "leader" else f"node {view['node_id']} (no leader)"
        lines.append(f"membership ({whose}): {membership_summary(membership)}")
    if view is not None and view.get("transfer"):
        lines.append(
            f"leadership transfer in progress: node {view['node_id']} -> "
            f"node {view['transfer']['to']} (writes wait until it is done)"
        )
    if view is not None and view.get("followers"):
        lines.append(f"replication (leader {view['node_id']}):")
        for n, f in view["followers"].items():
            line = (
                f"  {n:>4} {f['state']:<12} matched {_fmt_log_id(f['matched']):>12}"
                f"  last ack {f['last_ack_age']:.2f}s ago"
            )
            if f.get("detail"):
                line += f"\n       {f['detail']}"
            lines.append(line)
    return "\n".join(lines)


def change_text(command: str, args: argparse.Namespace, answer: dict[str, Any]) -> str:
    """What a membership command did, and the membership it left."""
    if command == "add-node":
        what = f"node {args.node_id} is a learner"
        if answer.get("caught_up") and answer.get("matched"):
            what += (
                f", caught up (its log matches the leader's at {_fmt_log_id(answer['matched'])})"
            )
    elif command == "promote":
        what = f"{'nodes' if len(args.node_ids) > 1 else 'node'} {_ids(args.node_ids)}: voter"
    else:
        what = f"node {args.node_id} removed" + (
            " as a voter, kept as a learner" if args.retain else ""
        )
    if not answer.get("changed"):
        what += " (no change: " + str(answer.get("detail") or "already so") + ")"
    at = f" at {_fmt_log_id(answer['log_id'])}" if answer.get("log_id") else ""
    return f"{what}\nmembership{at}: {membership_text(answer['membership'])}"


async def _statuses(client: KvClient, timeout: float) -> dict[str, Any]:
    """Every node's status: the spec's nodes, then the leader if the spec
    does not list it (a follower names it), then the members the leader's
    membership lists and the spec does not."""
    statuses: dict[str, Any] = await client.statuses(timeout=timeout)
    up = [s for s in statuses.values() if isinstance(s, dict)]
    if not any(s["role"] == "leader" for s in up):
        named = {s["leader_http"] for s in up if s.get("leader_http")} - set(statuses)
        if named:
            client.add_addresses(sorted(named))
            statuses = await client.statuses(timeout=timeout)
    for s in list(statuses.values()):
        if isinstance(s, dict) and s["role"] == "leader" and s.get("membership"):
            missing = [a for a in s["membership"]["http"].values() if a and a not in statuses]
            if missing:
                client.add_addresses(missing)
                statuses = await client.statuses(timeout=timeout)
            break
    return statuses


async def _client(args: argparse.Namespace) -> int:
    token = _client_token(args)
    tls = _client_tls(args)
    async with KvClient.for_cluster(
        args.cluster, deadline=args.timeout, token=token, tls=tls
    ) as client:
        if args.command in ("add-node", "promote", "remove-node"):
            if args.command == "add-node":
                answer = await client.add_learner(
                    args.node_id,
                    args.raft,
                    args.http,
                    blocking=not args.no_wait,
                    max_lag=args.max_lag,
                    timeout=args.catch_up_timeout,
                    deadline=max(args.timeout, args.catch_up_timeout + 5.0),
                )
            elif args.command == "promote":
                answer = await client.promote(args.node_ids)
            else:
                answer = await client.remove_node(args.node_id, retain=args.retain)
            print(
                json.dumps(answer, indent=2)
                if args.json
                else change_text(args.command, args, answer)
            )
            return EXIT_OK
        if args.command == "transfer-leader":
            answer = await client.transfer_leader(args.to)
            if args.json:
                print(json.dumps(answer, indent=2))
            else:
                http = answer.get("leader_http")
                print(f"node {answer['leader_id']} leads" + (f" (http {http})" if http else ""))
            return EXIT_OK
        if args.command == "status":
            statuses = await _statuses(client, min(args.timeout, 3.0))
            if args.json:
                print(json.dumps(statuses, indent=2))
            else:
                print(status_table(statuses))
            return EXIT_OK if any(isinstance(s, dict) for s in statuses.values()) else EXIT_FAILED
        if args.command == "snapshot":
            answers = await client.snapshot_all(timeout=args.timeout)
            for addr, a in answers.items():
                if isinstance(a, dict):
                    snap = a["snapshot"]
                    at = _fmt_log_id(snap) if snap else "nothing applied yet"
                    purged = _fmt_log_id(a["last_purged"])
                    print(f"{addr}: snapshot at {at}, log purged up to {purged}")
                else:
                    print(f"{addr}: {a}")
            return EXIT_OK if any(isinstance(a, dict) for a in answers.values()) else EXIT_FAILED
        if args.command == "put":
            previous = await client.put(args.key, args.value)
            print(json.dumps({"ok": True, "previous": previous}))
        elif args.command == "delete":
            previous = await client.delete(args.key)
            print(json.dumps({"ok": True, "previous": previous}))
        else:
            value = await client.get(args.key)
            if value is None:
                print(f"{args.key}: not found", file=sys.stderr)
                return EXIT_NOT_FOUND
            print(value)
        return EXIT_OK


def _client_token(args: argparse.Namespace) -> str | None:
    """The bearer token: the first in ``--api-token-file``, else ``$RAFTCORE_API_TOKEN``."""
    path = getattr(args, "api_token_file", None)
    if path is None:
        return os.environ.get("RAFTCORE_API_TOKEN") or None
    from raftcore.adapters.kv.auth import ApiTokens

    return ApiTokens.load(path).tokens[0][0]


def _client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """HTTPS with ``--api-ca`` (else ``$RAFTCORE_API_CA``): the CA that signed
    the nodes' API certificates; ``ValueError`` if it cannot be loaded."""
    path = getattr(args, "api_ca", None) or os.environ.get("RAFTCORE_API_CA") or None
    if path is None:
        return None
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"--api-ca: cannot load {path}: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from raftcore.adapters.kv.server import DataDirError
        from raftcore.adapters.storage.snapshots import SnapshotStoreError
        from raftcore.adapters.storage.sqlite import SqliteStoreError, StoreLockedError

        try:
            return _serve(args)
        except ValueError as e:
            print(f"serve: {e}", file=sys.stderr)
            return EXIT_USAGE
        except StoreLockedError as e:  # another node process runs on this data directory
            print(f"serve: {e}", file=sys.stderr)
            return EXIT_FAILED
        except DataDirError as e:
            print(f"serve: {e} (give a directory this user can create and write)", file=sys.stderr)
            return EXIT_STORE
        except (SqliteStoreError, SnapshotStoreError) as e:
            print(
                f"serve: {e} (restore the data directory from a backup, or replace the node: "
                "docs/kv-service.md#a-node-that-lost-its-disk)",
                file=sys.stderr,
            )
            return EXIT_STORE
        except OSError as e:  # binding a listening socket
            print(
                f"serve: {e.strerror or e} (another process on that port? an address of "
                "this machine?)",
                file=sys.stderr,
            )
            return EXIT_LISTEN
    try:
        return asyncio.run(_client(args))
    except KvError as e:
        print(f"{args.command}: {e}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as e:  # an unusable --api-token-file
        print(f"{args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `status | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
