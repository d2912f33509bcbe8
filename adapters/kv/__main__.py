"""The KV service's command line: ``python -m adapters.kv COMMAND ...``.

    serve   run one node (Raft + HTTP) until SIGTERM/SIGINT
    put     set a key            get     read a key (from the leader)
    delete  remove a key         status  every node's role, term, log and commit

See docs/kv-service.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from adapters.kv.client import KvClient, KvError, parse_cluster
from raftcore.config import Config

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


def _cluster(spec: str) -> Any:
    try:
        return parse_cluster(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.kv", description="A replicated key-value store on raftcore."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cluster_help = (
        "ID=HOST:PORT[/HTTPHOST:HTTPPORT],... : every node's Raft address "
        "(and HTTP address; default: Raft port + 1000)"
    )

    serve = sub.add_parser("serve", help="run one node until SIGTERM/SIGINT")
    serve.add_argument("--id", type=int, required=True, help="this node's id")
    serve.add_argument("--cluster", type=_cluster, required=True, help=cluster_help)
    serve.add_argument("--data-dir", required=True, help="the node's directory (raft.sqlite3)")
    serve.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    serve.add_argument("--http", help="HTTP listen address (default: from --cluster)")
    serve.add_argument(
        "--init", action="store_true", help="form the cluster if this node's store is fresh"
    )
    serve.add_argument("--cluster-id", default="raftcore-kv", help="checked in the handshake")
    serve.add_argument(
        "--election-timeout",
        type=float,
        default=0.3,
        metavar="SECONDS",
        help="minimum election timeout (the maximum is twice it; default 0.3)",
    )
    serve.add_argument(
        "--heartbeat", type=float, help="heartbeat interval (default: election timeout / 3)"
    )
    serve.add_argument("--write-timeout", type=float, default=5.0, metavar="SECONDS")
    serve.add_argument("--log-level", default="INFO")

    for name, helptext in (
        ("put", "set KEY to VALUE"),
        ("get", "print KEY's value"),
        ("delete", "remove KEY"),
        ("status", "show every node's status"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name != "status":
            p.add_argument("key")
        if name == "put":
            p.add_argument("value")
        p.add_argument("--cluster", type=_cluster, required=True, help=cluster_help)
        p.add_argument(
            "--timeout", type=float, default=10.0, help="give up after this long (seconds)"
        )
        if name == "status":
            p.add_argument("--json", action="store_true", help="print the raw JSON")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from adapters.kv.server import ServeOptions, serve, setup_logging

    setup_logging(args.id, getattr(logging, str(args.log_level).upper(), logging.INFO))
    low = args.election_timeout
    config = Config(
        election_timeout_min=low,
        election_timeout_max=2 * low,
        heartbeat_interval=args.heartbeat if args.heartbeat is not None else low / 3,
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
    )
    return serve(opts)


def _fmt_log_id(lid: dict[str, int]) -> str:
    return f"{lid['term']}-{lid['node_id']}-{lid['index']}"


def status_table(statuses: dict[str, Any]) -> str:
    lines = [
        f"{'node':>4} {'http':<21} {'role':<13} {'leader':>6} {'term':>5} "
        f"{'last log':>12} {'committed':>12} {'applied':>12} {'keys':>6}"
    ]
    for addr, s in statuses.items():
        if not isinstance(s, dict):
            lines.append(f"{'?':>4} {addr:<21} {s}")
            continue
        lines.append(
            f"{s['node_id']:>4} {addr:<21} {s['role']:<13} {s['leader_id'] or '-'!s:>6} "
            f"{s['term']:>5} {_fmt_log_id(s['last_log']):>12} "
            f"{_fmt_log_id(s['committed']):>12} {_fmt_log_id(s['applied']):>12} {s['keys']:>6}"
        )
    return "\n".join(lines)


async def _client(args: argparse.Namespace) -> int:
    async with KvClient.for_cluster(args.cluster, deadline=args.timeout) as client:
        if args.command == "status":
            statuses = await client.statuses(timeout=min(args.timeout, 3.0))
            if args.json:
                print(json.dumps(statuses, indent=2))
            else:
                print(status_table(statuses))
            return EXIT_OK if any(isinstance(s, dict) for s in statuses.values()) else EXIT_FAILED
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from adapters.storage.sqlite import StoreLockedError

        try:
            return _serve(args)
        except ValueError as e:
            print(f"serve: {e}", file=sys.stderr)
            return EXIT_USAGE
        except StoreLockedError as e:  # another node process runs on this data directory
            print(f"serve: {e}", file=sys.stderr)
            return EXIT_FAILED
    try:
        return asyncio.run(_client(args))
    except KvError as e:
        print(f"{args.command}: {e}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
