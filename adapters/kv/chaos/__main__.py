"""``python -m raftcore.adapters.kv.chaos``: one run; its JSON verdict is the last stdout line.

Exit status: 0 if every check held, 1 on a violation (safety or liveness),
2 if the harness itself failed, 130 if interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
from collections.abc import Sequence

from raftcore.adapters.kv.chaos.report import summary, verdict
from raftcore.adapters.kv.chaos.runner import ChaosRun, Options


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m raftcore.adapters.kv.chaos",
        description="Faults against a real KV cluster; checks the clients' history.",
    )
    p.add_argument("--seconds", type=float, default=180.0, help="length of the fault phase")
    p.add_argument("--seed", type=int, help="the nemesis schedule's seed (default: random)")
    p.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    p.add_argument("--runtime", choices=("asyncio", "trio", "mixed"), default="asyncio")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--keys", type=int, default=5, help="keys the clients share (default 5)")
    p.add_argument("--dir", help="keep logs and histories here (default: a new temp dir)")
    return p


async def _main(run: ChaosRun) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    await run.run()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.nodes < 3 or args.clients < 1 or args.keys < 1 or args.seconds < 0:
        print("need --nodes >= 3, --clients >= 1, --keys >= 1, --seconds >= 0", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    opts = Options(
        seed=seed,
        seconds=args.seconds,
        nodes=args.nodes,
        runtime=args.runtime,
        clients=args.clients,
        keys=args.keys,
        dir=args.dir,
    )
    run = ChaosRun(opts, say=lambda line: print(line, flush=True))
    run.log(f"chaos run: seed {seed}, {opts.seconds:g}s of faults; rerun: {opts.command()}")
    try:
        asyncio.run(_main(run))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"interrupted; seed {seed}; logs in {run.root}", flush=True)
        return 130
    finally:
        with contextlib.suppress(Exception):  # idempotent: nothing may outlive the harness
            run.cluster.shutdown(timeout=2.0)
    out = run.out
    for line in summary(opts, out, run.history, run.root):
        print(line)
    result = verdict(opts, out, run.history, run.root)
    print(json.dumps(result, separators=(",", ":")), flush=True)
    if out.harness_error:
        return 2
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
