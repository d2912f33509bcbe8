"""``python -m raftcore.sim``: run one seed, a campaign of seeds, or the demo.

Examples::

    python -m raftcore.sim --seed 7 --nodes 5 --steps 20000 --faults all
    python -m raftcore.sim --seeds 0:500 --json
    python -m raftcore.sim --seeds 0:50 --faults churn,crash
    python -m raftcore.sim --seed 7 --trace trace.ndjson
    python -m raftcore.sim --demo

Options left out are chosen by each seed (and printed). The exit status is 1
when any seed violates a property; the failing seeds are listed with the
exact command that replays each.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from raftcore.ids import LeaderIdMode
from raftcore.sim.cluster import SimResult, Simulation
from raftcore.sim.demo import DEMO_SEED, run_demo
from raftcore.sim.options import FAULT_KINDS, SimOptions, parse_faults

__all__ = ["main"]


def _seed_range(text: str) -> range:
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            return range(int(a), int(b))
        n = int(text)
        return range(n, n + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP or N, got {text!r}") from None


def _on_off(text: str) -> bool:
    t = text.lower()
    if t in ("on", "true", "yes", "1"):
        return True
    if t in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {text!r}")


def _faults(text: str) -> str:
    try:
        parse_faults(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _timeouts(text: str) -> tuple[float, float, float]:
    try:
        a, b, c = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX:HEARTBEAT, got {text!r}") from None
    return a, b, c


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m raftcore.sim",
        description="Deterministic Raft cluster simulation with fault injection, "
        "safety invariants, linearizability and liveness checks.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="run one seed (default 0)")
    which.add_argument("--seeds", type=_seed_range, help="campaign over seeds START:STOP")
    p.add_argument("--demo", action="store_true", help="narrate one 5-node run with all faults")
    p.add_argument("--nodes", type=int, help="cluster size (default: 3 or 5, from the seed)")
    p.add_argument("--steps", type=int, default=None, help="engine steps in the faults phase")
    p.add_argument(
        "--faults",
        type=_faults,
        default="all",
        help=f"comma list of {','.join(FAULT_KINDS)}, or all / none (default all)",
    )
    p.add_argument("--mode", choices=[m.value for m in LeaderIdMode], help="leader-id mode")
    p.add_argument("--pre-vote", type=_on_off, help="on/off")
    p.add_argument("--check-quorum", type=_on_off, help="on/off")
    p.add_argument("--max-entries", type=int, help="max entries per append message")
    p.add_argument("--fault-interval", type=float, help="mean seconds between faults")
    p.add_argument("--loss", type=float, help="base message loss rate")
    p.add_argument("--dup", type=float, help="base message duplication rate")
    p.add_argument("--clock-drift", type=float, help="max clock rate error (default 0.01)")
    p.add_argument("--clients", type=int, help="workload clients (default 3)")
    p.add_argument("--keys", type=int, help="workload keys (default 3)")
    p.add_argument("--client-timeout", type=float, help="client timeout, virtual seconds")
    p.add_argument("--liveness-timeouts", type=float, help="recovery bound, in election timeouts")
    p.add_argument(
        "--spares",
        type=int,
        help="uninitialized extra nodes for membership churn (default 2 with churn, else 0)",
    )
    p.add_argument(
        "--churn-interval",
        type=float,
        help="mean seconds between membership change requests (default: half the fault interval)",
    )
    p.add_argument("--timeouts", type=_timeouts, help="election MIN:MAX:HEARTBEAT seconds")
    p.add_argument("--snapshot-every", type=int, help="snapshot every N applied entries (0: never)")
    p.add_argument("--purge-keep", type=int, help="entries kept after a purge")
    p.add_argument("--snapshot-lag", type=int, help="lag beyond which a follower gets a snapshot")
    p.add_argument("--snapshot-chunk", type=int, help="snapshot chunk size in bytes")
    p.add_argument("--snapshot-window", type=int, help="snapshot chunks in flight")
    p.add_argument("--no-linearizability", action="store_true", help="skip the history check")
    p.add_argument(
        "--keep-going", action="store_true", help="do not stop a run at its first violation"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per seed")
    p.add_argument("--trace", metavar="FILE", help="write every step as NDJSON (one seed only)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the total")
    return p


def _options(args: argparse.Namespace, seed: int) -> SimOptions:
    kw: dict[str, Any] = {"seed": seed, "faults": args.faults}
    if args.steps is not None:
        kw["steps"] = args.steps
    simple = {
        "nodes": "nodes",
        "pre_vote": "pre_vote",
        "check_quorum": "check_quorum",
        "max_entries": "max_entries_per_append",
        "fault_interval": "fault_interval",
        "loss": "loss",
        "dup": "dup",
        "clock_drift": "clock_drift",
        "clients": "clients",
        "keys": "keys",
        "client_timeout": "client_timeout",
        "liveness_timeouts": "liveness_timeouts",
        "spares": "spares",
        "churn_interval": "churn_interval",
        "snapshot_every": "snapshot_every",
        "purge_keep": "purge_keep",
        "snapshot_lag": "snapshot_lag_threshold",
        "snapshot_chunk": "snapshot_chunk_size",
        "snapshot_window": "snapshot_window",
    }
    for arg, field in simple.items():
        value = getattr(args, arg)
        if value is not None:
            kw[field] = value
    if args.mode is not None:
        kw["leader_id_mode"] = LeaderIdMode(args.mode)
    if args.timeouts is not None:
        lo, hi, hb = args.timeouts
        kw.update(election_timeout_min=lo, election_timeout_max=hi, heartbeat_interval=hb)
    if args.no_linearizability:
        kw["check_linearizability"] = False
    if args.keep_going:
        kw["stop_on_violation"] = False
    return SimOptions(**kw)


def _report_failure(result: SimResult, out: TextIO) -> None:
    print(f"FAILED seed {result.seed}:", file=out)
    for v in result.violations[:20]:
        print(f"  {v}", file=out)
    if len(result.violations) > 20:
        print(f"  ... and {len(result.violations) - 20} more", file=out)
    print(f"  replay: {result.replay_command()}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.demo:
        result = run_demo(
            args.seed if args.seed is not None else DEMO_SEED, steps=args.steps or 6000
        )
        return 0 if result.ok else 1

    seeds = args.seeds if args.seeds is not None else range(args.seed or 0, (args.seed or 0) + 1)
    single = len(seeds) == 1
    if args.trace and not single:
        print("--trace needs a single --seed", file=sys.stderr)
        return 2
    try:
        opts = [_options(args, s) for s in seeds]
        for o in opts[:1]:
            o.resolve().config()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    tty = sys.stdout.isatty() and not args.json and not single
    failed: list[SimResult] = []
    total_steps = 0
    for i, o in enumerate(opts):
        trace_file = open(args.trace, "w") if args.trace else None  # noqa: SIM115
        try:
            sink = None
            if trace_file is not None:
                tf = trace_file

                def sink(rec: dict[str, Any], tf: TextIO = tf) -> None:
                    tf.write(json.dumps(rec, sort_keys=True) + "\n")

            resolved = o.resolve()
            if tty:
                print(
                    f"\r\033[K[{i + 1}/{len(opts)}] running seed {o.seed}  "
                    f"failed={len(failed)} steps={total_steps}",
                    end="",
                    flush=True,
                )
            if single and not args.json and not args.quiet:
                print(f"options: {resolved.describe()}")
            result = Simulation(resolved, trace=sink).run()
        finally:
            if trace_file is not None:
                trace_file.close()
        total_steps += result.steps
        if not result.ok:
            failed.append(result)
        if args.json:
            print(json.dumps(result.to_json(), sort_keys=True), flush=True)
            if not result.ok:
                _report_failure(result, sys.stderr)
        elif tty:
            if not result.ok:
                print("\r\033[K", end="")
                _report_failure(result, sys.stdout)
        else:
            if not args.quiet or not result.ok:
                print(result.summary(), flush=True)
            if not result.ok:
                _report_failure(result, sys.stdout)
    if tty:
        print("\r\033[K", end="")
    if not args.json and (not single or failed):
        print(
            f"{len(opts)} seed(s), {len(failed)} failed, {total_steps} steps"
            + (": " + " ".join(str(r.seed) for r in failed) if failed else "")
        )
        for r in failed:
            print(f"  replay seed {r.seed}: {r.replay_command()}")
    return 1 if failed else 0
