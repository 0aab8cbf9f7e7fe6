"""Trials per minute with 1 and 2 workers, process executor and Ray side by side.

Each trial sleeps a fixed time, so the numbers measure the executors' own overhead and how well they
keep every worker busy, not the CPU. The loop keeps `capacity` trials in flight, as the search does.

    python bench/bench_parallel.py                      # 20 trials of 0.5 s, workers 1 and 2
    python bench/bench_parallel.py --trials 40 --sleep 0.25 --executors process
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nas.executors import get_executor  # noqa: E402


def sleep_trial(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def run_trials(ex, trials: int, seconds: float) -> float:
    """Seconds to finish `trials` trials, keeping the executor full (submit as soon as one ends)."""
    start = time.perf_counter()
    submitted = finished = 0
    while finished < trials:
        while submitted < trials and len(ex.running()) < ex.capacity:
            ex.submit(submitted, sleep_trial, seconds)
            submitted += 1
        for _, outcome in ex.wait():
            assert outcome.kind == "ok", outcome.error
            finished += 1
    return time.perf_counter() - start


def measure(name: str, workers: int, trials: int, seconds: float) -> dict:
    start = time.perf_counter()
    with get_executor(name, workers=workers) as ex:
        run_trials(ex, workers, 0.0)  # warm-up: workers started and each has run one task
        startup = time.perf_counter() - start
        wall = run_trials(ex, trials, seconds)
    return {
        "executor": name,
        "workers": workers,
        "trials": trials,
        "wall_s": wall,
        "per_min": trials / wall * 60,
        "startup_s": startup,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds each trial sleeps")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executors", nargs="+", default=["process", "ray"], choices=["process", "ray"])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_parallel.md")))
    args = parser.parse_args(argv)

    rows, notes = [], []
    for name in args.executors:
        ray = None
        if name == "ray":
            import ray

            # One local Ray for all worker counts: each executor uses `workers` of its CPUs.
            t0 = time.perf_counter()
            ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
            notes.append(
                f"Ray {ray.__version__} local start: {time.perf_counter() - t0:.1f} s "
                f"(not in the table's startup column)"
            )
        try:
            for workers in args.workers:
                rows.append(measure(name, workers, args.trials, args.sleep))
                print(f"{name} workers={workers}: {rows[-1]['per_min']:.1f} trials/min", flush=True)
        finally:
            if ray is not None:
                ray.shutdown()

    base = {r["executor"]: r["per_min"] for r in rows if r["workers"] == min(args.workers)}
    header = "| executor | workers | trials | wall (s) | trials / min | speed-up | startup + warm-up (s) |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['executor']} | {r['workers']} | {r['trials']} | {r['wall_s']:.2f} | "
            f"{r['per_min']:.1f} | {r['per_min'] / base[r['executor']]:.2f}x | {r['startup_s']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)

    command = "python " + " ".join(["bench/bench_parallel.py", *(argv if argv is not None else sys.argv[1:])])
    ideal = 60 / args.sleep
    Path(args.out).write_text(
        f"# Parallel executors: trials per minute\n\n"
        f"Command: `{command}`\n\n"
        f"Each trial sleeps {args.sleep} s ({args.trials} trials per row), so one worker can at best do "
        f"{ideal:.0f} trials / min. Wall time counts from the first submit to the last result, with "
        f"workers already started (startup shown apart). Speed-up is against {min(args.workers)} worker(s).\n\n"
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}.\n\n"
        f"{table}\n\n" + "".join(f"- {n}\n" for n in notes)
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
