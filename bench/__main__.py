"""``python -m bench [--quick] [--duration S] [--warmup S] [--clients 1,64,256]``.

Prints one JSON line per scenario on stdout and exits non-zero when a
scenario's correctness check fails. ``BENCH_DURATION``, ``BENCH_WARMUP`` and
``BENCH_CLIENTS`` set the defaults; ``--profile`` prints cProfile hot spots of
each scenario on stderr instead of timing it.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.engine_bench import BenchFailure, profile_scenario, run_scenario

DEFAULT_CLIENTS = "1,64,256"


def _parse_clients(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text!r}") from None
    if not out or any(n < 1 for n in out):
        raise argparse.ArgumentTypeError(f"client counts must be >= 1: {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short runs (0.5 s each), for CI")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first")
    p.add_argument(
        "--clients",
        type=_parse_clients,
        default=_parse_clients(env.get("BENCH_CLIENTS", DEFAULT_CLIENTS)),
        help=f"outstanding writes per scenario, comma-separated (default {DEFAULT_CLIENTS})",
    )
    p.add_argument("--profile", action="store_true", help="print cProfile hot spots to stderr")
    args = p.parse_args(argv)
    duration = args.duration
    if duration is None:
        duration = 0.5 if args.quick else float(env.get("BENCH_DURATION", "2.5"))
    warmup = args.warmup
    if warmup is None:
        warmup = 0.2 if args.quick else float(env.get("BENCH_WARMUP", "0.5"))
    if duration <= 0 or warmup < 0:
        p.error("--duration must be > 0 and --warmup >= 0")

    for clients in args.clients:
        try:
            if args.profile:
                print(f"== engine, {clients} clients ==", file=sys.stderr)
                print(profile_scenario(clients, duration, warmup), file=sys.stderr)
            else:
                print(run_scenario(clients, duration, warmup).as_json(), flush=True)
        except BenchFailure as e:
            print(f"bench engine clients={clients}: FAILED: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
