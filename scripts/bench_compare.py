"""Compares this checkout's release binaries with another build's, started alternately under the
same stack, so that a noisy machine weighs on both alike: for each function, ROUNDS rounds of
5 cold starts and 300 warm invocations of each build, in turns (ABBA), under a Lambda Runtime API
stub as `bench_functions.py` runs them. Prints each build's median cold start and warm time.

Build both first (`cargo build --release` here, and in the other checkout or worktree):

    python3 scripts/bench_compare.py OTHER_RELEASE_DIR [FUNCTIONS] [ROUNDS]
        (FUNCTIONS: comma-separated, default every function that leaves the cluster as it found
         it; ROUNDS: default 4)
"""

import statistics
import sys
import uuid
from pathlib import Path

import bench_functions as bench

READ_ONLY = ["get-health", "get-status", "serve-ndp-docs", "serve-rexec-docs", "get-rexec-status",
             "get-broker-config", "get-server", "list-servers", "spawn-server"]
COLD, WARM = 5, 300


def main():
    builds = {"this": bench.RELEASE, "other": Path(sys.argv[1]).resolve()}
    names = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else READ_ONLY
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    callers = {name: user for name, _, user in bench.FUNCTIONS}
    run_dir = Path("/tmp") / f"rexec-compare-{uuid.uuid4()}"
    run_dir.mkdir()
    stack = bench.Stack(run_dir)
    results = {}
    try:
        # alice's server, made and ready first: get-server reads it, the spawns reuse it.
        bench.RELEASE = builds["this"]
        maker = bench.Function("spawn-server", stack.env)
        maker.invoke(bench.event("spawn-server", stack.tokens["alice"]))
        maker.close()
        for name in names:
            print(f"  {name}", file=sys.stderr, flush=True)
            user = callers[name]
            payload = bench.event(name, stack.tokens[user] if user else None)
            for turn in range(rounds):
                for label in ("this", "other") if turn % 2 == 0 else ("other", "this"):
                    bench.RELEASE = builds[label]
                    result = results.setdefault((name, label), {"cold": [], "warm": []})
                    result["cold"] += [bench.cold_start(name, stack.env, payload)[2] for _ in range(COLD)]
                    result["warm"].append(bench.warm(name, stack.env, payload, WARM)[0])
    finally:
        stack.close()
        for leftover in run_dir.iterdir():
            leftover.unlink()
        run_dir.rmdir()
    print(f"\n{rounds} rounds of {COLD} cold starts and {WARM} warm invocations per build, in turns;"
          f" this: {builds['this']}, other: {builds['other']}\n")
    print("| function | cold start ms, this | other | warm ms, this | other |")
    print("|---|---|---|---|---|")
    median = statistics.median
    for name in names:
        this, other = results[(name, "this")], results[(name, "other")]
        print(f"| {name} | {median(this['cold']):.1f} | {median(other['cold']):.1f} |"
              f" {median(this['warm']):.2f} | {median(other['warm']):.2f} |")


if __name__ == "__main__":
    main()
