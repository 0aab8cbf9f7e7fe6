"""Parallel proposals on NAS-Bench-201: batches of k (GP-BUCB, ``ask(k)`` then tell all k) and the
asynchronous mode the study runs (k workers: k-1 trials pending, ``ask(1)`` whenever one finishes) against
sequential proposals (k = 1), at equal trial counts and at equal simulated wall time.

    .venv/bin/python bench/bench_batch.py                     # 10 seeds, 100 trials per run
    .venv/bin/python bench/bench_batch.py --seeds 20 --nb201 /path/to/nb201_merged.csv
    .venv/bin/python bench/bench_batch.py --quick             # 3 seeds, 50 trials: a smoke run

Notation
    N          trials told so far (in the order they finished)
    regret(N)  best validation accuracy in the table minus the best one among the first N trials,
               in percentage points of CIFAR-10 validation accuracy (``cifar10valid_val_acc_mean``)
    d          a trial's simulated duration: log-normal with mean 1 and sigma 0.5 (log scale), drawn from
               its own seeded generator, the same sequence for every mode of one seed; NB-201 has no
               per-trial training time we could use, and what matters here is that durations differ
    T          simulated wall time, in units of the mean duration; k workers run at once

Modes (one optimiser, ``nas.Optimizer(nb201_space(), seed=s)`` with its defaults; only the protocol differs)
    sequential   ask(1), tell, repeat; one worker (T grows by each d)
    batch k      ask(k), run the k trials on k workers, tell all k once the slowest has finished
                 (a batch takes the longest of its k durations)
    async k      fill k workers with ask(1) each (earlier ones pending), then whenever one finishes tell
                 it and ask(1) again: what ``nas.study.Study`` does with ``--workers k``
    random       uniform samples, one worker (context)

Writes ``bench/results_batch.md`` (``--out``) and every trial to ``bench/out/batch_runs.json`` (``--raw``).
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import json
import os
import platform
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

from bench.common import finish_results, log  # noqa: E402

from bench.nb201 import NB201Missing, load_nb201, nb201_space  # noqa: E402

SIGMA = 0.5  # log-normal duration spread: the slowest of 4 trials takes ~1.6x the mean
_NB: dict = {}


def _init_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # two runs on two cores: no BLAS oversubscription


def _nb(path):
    if "nb" not in _NB:
        _NB["nb"] = load_nb201(path)
    return _NB["nb"]


def durations(seed: int, n: int) -> np.ndarray:
    """n log-normal durations with mean 1; the same for every mode of one seed."""
    rng = np.random.default_rng(1_000_003 + seed)
    return rng.lognormal(mean=-(SIGMA**2) / 2, sigma=SIGMA, size=n)


# ------------------------------------------------------------------------------------------ one run
def run_one(task: dict) -> dict:
    try:
        return _run_one(**task)
    except Exception:  # one broken run must not lose the others
        return {**task, "error": traceback.format_exc(limit=6)}


def _run_one(mode: str, k: int, seed: int, budget: int, nb201=None) -> dict:
    """Records in the order trials finished: ``{"val", "test", "t_end", "key"}``."""
    from nas.acq_maximizer import config_key
    from nas.optimizer import Optimizer

    nb = _nb(nb201)
    space = nb201_space()
    dur = durations(seed, budget)
    start = time.perf_counter()
    records: list = []

    def record(cfg, t_end):
        r = nb.lookup(cfg)
        records.append({"val": r["val"], "test": r["test"], "t_end": float(t_end), "key": config_key(cfg)})
        return r["val"]

    if mode == "random":
        rng, t = np.random.default_rng(seed), 0.0
        for i in range(budget):
            t += dur[i]
            record(space.sample(rng), t)
    elif mode == "batch":  # k = 1 is the sequential mode
        opt, t, i = Optimizer(space, direction="maximize", seed=seed), 0.0, 0
        while i < budget:
            cfgs = opt.ask(min(k, budget - i))
            ends = [t + dur[i + j] for j in range(len(cfgs))]
            for j in np.argsort(ends, kind="stable"):  # finish order within the batch
                opt.tell(cfgs[j], record(cfgs[j], ends[j]))
            t, i = max(ends), i + len(cfgs)
    elif mode == "async":
        opt, asked, running = Optimizer(space, direction="maximize", seed=seed), 0, []
        while asked < min(k, budget):  # fill the workers one ask at a time, as the study does
            (cfg,) = opt.ask(1)
            heapq.heappush(running, (dur[asked], asked, cfg))
            asked += 1
        while running:
            t_end, _, cfg = heapq.heappop(running)
            opt.tell(cfg, record(cfg, t_end))
            if asked < budget:
                (cfg,) = opt.ask(1)  # the rest are still running: pending, so the GP-BUCB variance shrinks
                heapq.heappush(running, (t_end + dur[asked], asked, cfg))
                asked += 1
    else:
        raise ValueError(f"unknown mode {mode!r}")
    assert len(records) == budget
    return {
        "mode": mode,
        "k": k,
        "seed": seed,
        "budget": budget,
        "records": records,
        "wall_s": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------------------ analysis
def label(mode: str, k: int) -> str:
    return {
        "random": "random (1 worker)",
        "batch": f"batch of {k}" if k > 1 else "sequential (k = 1)",
        "async": f"async, {k} workers",
    }[mode]


def quartiles(xs) -> tuple:
    return tuple(float(q) for q in np.quantile(np.asarray(xs, dtype=float), [0.25, 0.5, 0.75]))


def fmt_q(xs, digits=2) -> str:
    lo, med, hi = quartiles(xs)
    return f"{med:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def regret_at_n(run: dict, n: int, best: float) -> float:
    return best - max(r["val"] for r in run["records"][:n])


def regret_at_time(run: dict, t: float, best: float) -> float | None:
    """Regret over the trials finished by time t; None where the run's trials all ended before t (the
    run is too short to say)."""
    recs = run["records"]
    if max(r["t_end"] for r in recs) < t:
        return None
    done = [r["val"] for r in recs if r["t_end"] <= t]
    return best - max(done) if done else None


def pick_test(run: dict, n: int) -> float:
    recs = run["records"][:n]
    return recs[int(np.argmax([r["val"] for r in recs]))]["test"]


def tables(runs: list, variants: list, budgets: list, times: list, best: float) -> tuple[list, list, dict]:
    head = (
        ["mode"]
        + [f"regret @{b}" for b in budgets]
        + [
            f"test acc of pick @{budgets[-1]}",
            f"distinct @{budgets[-1]}",
            f"sim. time for {budgets[-1]}",
            "optimiser s / run",
        ]
    )
    by_n = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    thead = ["mode"] + [f"regret @T={t:g}" for t in times] + [f"trials done by T={t:g}" for t in times]
    by_t = ["| " + " | ".join(thead) + " |", "|---|" + "---:|" * (len(thead) - 1)]
    raw = {}
    for mode, k in variants:
        rs = [r for r in runs if r["mode"] == mode and r["k"] == k and "error" not in r]
        if not rs:
            continue
        raw[(mode, k)] = {b: [regret_at_n(r, b, best) for r in rs] for b in budgets}
        cells = [fmt_q(raw[(mode, k)][b]) for b in budgets]
        cells += [
            fmt_q([pick_test(r, budgets[-1]) for r in rs]),
            f"{np.median([len({x['key'] for x in r['records']}) for r in rs]):.0f}",
            fmt_q([max(x["t_end"] for x in r["records"]) for r in rs], 1),
            f"{np.median([r['wall_s'] for r in rs]):.1f}",
        ]
        by_n.append(f"| {label(mode, k)} (n={len(rs)}) | " + " | ".join(cells) + " |")
        tcells = []
        for t in times:
            vals = [regret_at_time(r, t, best) for r in rs]
            short = sum(v is None for v in vals)
            vals = [v for v in vals if v is not None]
            tcells.append((fmt_q(vals) if vals else "-") + (f" ({short} runs too short)" if short else ""))
        tcells += [f"{np.median([sum(x['t_end'] <= t for x in r['records']) for r in rs]):.0f}" for t in times]
        by_t.append(f"| {label(mode, k)} | " + " | ".join(tcells) + " |")
    return by_n, by_t, raw


def paired_lines(raw: dict, runs: list, variants: list, budgets: list, best: float) -> list:
    """Per seed, each parallel mode against sequential at equal N: how often it is worse, and by how much."""
    seq = {r["seed"]: r for r in runs if r["mode"] == "batch" and r["k"] == 1 and "error" not in r}
    out = []
    for mode, k in variants:
        if mode == "random" or (mode, k) == ("batch", 1):
            continue
        other = {r["seed"]: r for r in runs if r["mode"] == mode and r["k"] == k and "error" not in r}
        seeds = sorted(set(seq) & set(other))
        if not seeds:
            continue
        parts = []
        for b in budgets:
            d = [regret_at_n(other[s], b, best) - regret_at_n(seq[s], b, best) for s in seeds]
            worse = sum(x > 0 for x in d)
            better = sum(x < 0 for x in d)
            parts.append(
                f"@{b}: worse on {worse}, better on {better} of {len(seeds)} seeds, "
                f"median difference {np.median(d):+.2f}"
            )
        out.append(f"- {label(mode, k)} minus sequential: " + "; ".join(parts))
    return out


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 10; 3 with --quick)")
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 4], help="parallel widths (default 2 4)")
    ap.add_argument("--quick", action="store_true", help="3 seeds, budgets 25 / 50")
    ap.add_argument(
        "--nb201",
        default=None,
        help="path to nb201_merged.csv (default: $LIGHTNAS_NB201, then "
        "../shared/benchmarks/nb201/nb201_merged.csv from the project root)",
    )
    ap.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_batch.md")
    ap.add_argument("--raw", type=Path, default=ROOT / "bench" / "out" / "batch_runs.json")
    a = ap.parse_args(argv)
    seeds = list(range(a.seeds if a.seeds is not None else (3 if a.quick else 10)))
    budgets = [25, 50] if a.quick else [25, 50, 100]
    times = [10.0, 20.0] if not a.quick else [10.0]
    try:
        nb = _nb(a.nb201)
    except NB201Missing as e:
        log(f"skipping: {e}")
        return 0
    best = nb.best_val
    variants = [("batch", 1)] + [("batch", k) for k in a.ks] + [("async", k) for k in a.ks] + [("random", 1)]
    tasks = [
        {"mode": m, "k": k, "seed": s, "budget": budgets[-1], "nb201": a.nb201} for s in seeds for m, k in variants
    ]
    t0 = time.perf_counter()
    runs = []
    import multiprocessing as mp

    with ProcessPoolExecutor(
        max_workers=a.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
    ) as pool:
        futures = [pool.submit(run_one, t) for t in tasks]
        for f in as_completed(futures):
            r = f.result()
            runs.append(r)
            if "error" in r:
                log(f"RUN FAILED {r['mode']} k={r['k']} s{r['seed']}:\n{r['error']}")
            else:
                log(
                    f"[{len(runs)}/{len(tasks)}] {label(r['mode'], r['k'])} seed {r['seed']}: regret@{budgets[-1]} "
                    f"{regret_at_n(r, budgets[-1], best):.2f} ({r['wall_s']:.0f}s; "
                    f"{(time.perf_counter() - t0) / 60:.1f} min so far)"
                )
    total = time.perf_counter() - t0
    a.raw.parent.mkdir(parents=True, exist_ok=True)
    a.raw.write_text(json.dumps(runs))

    by_n, by_t, raw = tables(runs, variants, budgets, times, best)
    cmd = "cd /work/main && .venv/bin/python bench/bench_batch.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    errors = [r for r in runs if "error" in r]
    lines = [
        "# Batch and asynchronous proposals on NAS-Bench-201 (CIFAR-10 validation accuracy)",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Date: {datetime.date.today().isoformat()}. {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}, numpy {np.__version__}; {a.workers} runs at a time, one thread each; "
        f"total wall {total / 60:.1f} min. Table: `{nb.path}` (15,625 cells, read, not copied).",
        "",
        f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}) for every mode; each run is {budgets[-1]} trials, and the "
        f"regrets at fewer trials are read off the same run. Regret = {best:.2f} (the table's best validation "
        "accuracy) minus the best validation accuracy among the first N trials to finish, in percentage points; "
        "median [25 %, 75 %] over seeds. Simulated durations: log-normal, mean 1, sigma 0.5, the same draws "
        "for every mode of a seed (see the module docstring).",
        "",
        "## At equal trial counts",
        "",
        *by_n,
        "",
        *paired_lines(raw, runs, variants, budgets, best),
        "",
        "## At equal simulated wall time (k workers at once; T in mean trial durations)",
        "",
        *by_t,
        "",
    ]
    return finish_results(
        lines, errors, lambda r: f"{label(r['mode'], r['k'])} seed {r['seed']}", raw=a.raw, out=a.out, root=ROOT
    )


if __name__ == "__main__":
    raise SystemExit(main())
