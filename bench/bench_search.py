"""The digits search: ours (exactly what ``nas search --dataset digits`` runs) against Optuna TPE and random
search on the same space, the same trial budget, the same training of every trial, over several seeds; and
the hand-written baseline CNN on the same split.

    .venv/bin/python bench/bench_search.py                       # 25 trials x 5 seeds x 3 methods + baseline
    .venv/bin/python bench/bench_search.py --trials 40 --seeds 10 --methods ours tpe random tpe-mv
    .venv/bin/python bench/bench_search.py --quick               # smoke run: 4 trials, 1 seed

What is shared, so the methods differ only in which configs they propose:
    space        the digits preset's default space (``nas space --dataset digits``), 61 encoded dims
    objective    ``trainers.runner.run_trial`` with the objective arguments ``nas search`` sets (data split
                 seed 0, no augmentation), except one torch thread (runs go two at a time on two cores)
                 and no weights kept (neither changes what is trained or measured)
    trial seed   the k-th trial of a run with seed s trains with seed ``s * 100003 + k`` in every method
                 (the Study's own rule), so equal configs give equal accuracies
    score        the CLI's default for digits: ``mnas`` with a 60k-MAC target, on validation accuracy;
                 the score of a trial is exact (MACs counted, not learnt) and the same for every method
    pick         each run's trial with the best score; its test accuracy is reported, never used to choose

Methods
    ours         ``nas.cli_wiring.make_study`` on the parsed ``nas search --dataset digits --trials T
                 --seed s`` command line, run as is (GP-UCB, 8 space-filling warm-up trials, SQLite study)
    tpe          ``optuna.samplers.TPESampler(seed=s)`` with default settings, told the same score
    tpe-mv       the same with ``multivariate=True, group=True`` (Optuna's mode for conditional spaces)
    random       ``space.sample`` with ``numpy.random.default_rng(s)``
Optuna reaches our conditional space through ``bench/optuna_adapter.py`` (every branch parameter is its own
Optuna parameter). A config that breaks a constraint of the search (for digits only "at most 3 stride-2
layers", which the space cannot break) would be told to Optuna as failed and not trained; the count is logged.

Runs go to ``--workers`` processes (default 2). Progress goes to stderr; results to ``bench/results_search.md``
(``--out``) and every trial to ``bench/out/search_runs.json`` (``--raw``, git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

from bench.common import finish_results, log  # noqa: E402

BASELINE_MACS = 157_312  # bench/bench_trainer.py's analytic count; checked again below
TEST_BAR = 0.97
LABELS = {
    "ours": "ours (GP-UCB)",
    "tpe": "Optuna TPE",
    "tpe-mv": "Optuna TPE (multivariate, group)",
    "random": "random search",
    "baseline": "hand-written baseline",
}
SEED_STRIDE = 100_003  # nas.study: trial.seed = optimizer seed * 100003 + trial id
# What `nas search --dataset digits` used when the first results were written (runs record their own since).
SCORE_SPEC = "mnas:macs=60000,alpha=-0.01,beta=-0.07"
SPACE_DIMS = {"dims": 61, "conditional": 43}


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    import warnings

    warnings.filterwarnings("ignore")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


# ------------------------------------------------------------------------------------------ the search set-up
def cli_study(trials: int, seed: int, folder: Path):
    """The Study ``nas search --dataset digits --trials T --seed s --out FOLDER --quiet`` builds."""
    from nas import cli_wiring
    from nas.cli import build_parser

    args = build_parser().parse_args(
        ["search", "--dataset", "digits", "--trials", str(trials), "--seed", str(seed), "--out", str(folder), "--quiet"]
    )
    study, _ = cli_wiring.make_study(args)
    study.objective_args.update(threads=1, save_weights=False)
    return study


def trial_record(study, config: dict, trial_id: int, seed: int) -> dict:
    """One trial as the Study would run it: a record with val / test accuracy, MACs, params, seconds."""
    known = study.opt.known(config)
    rec = {
        "trial": trial_id,
        "seed": seed * SEED_STRIDE + trial_id,
        "macs": known["macs"],
        "params": known["params"],
        "config": config,
    }
    spec = {"trial_id": trial_id, "config": config, "seed": rec["seed"], "study_dir": None, **study.objective_args}
    t0 = time.perf_counter()
    try:
        out = study.objective(spec)
        val = float(out["value"])
        rec.update(val=val, test=float(out["metrics"]["test_acc"]), failed=not math.isfinite(val))
    except Exception as exc:  # a NaN loss etc.: a failed trial, as in the Study
        rec.update(val=None, test=None, failed=True, error=f"{type(exc).__name__}: {exc}")
    rec["seconds"] = time.perf_counter() - t0
    return rec


def run_objective(study, config: dict, trial_id: int, seed: int) -> dict:
    """``trial_record`` plus the trial's score."""
    rec = trial_record(study, config, trial_id, seed)
    rec["score"] = None if rec["failed"] else float(study.opt.score_of([config], [rec["val"]])[0])
    return rec


def _progress(method: str, seed: int, trials: int, rec: dict, best: float | None) -> None:
    s = "failed" if rec["failed"] else f"score {rec['score']:.4f} val {rec['val']:.4f}"
    log(
        f"[{method} s{seed}] {rec['trial']}/{trials} {s} macs {rec['macs']:,} ({rec['seconds']:.1f}s)  "
        f"best {best if best is None else round(best, 4)}"
    )


# ------------------------------------------------------------------------------------------ one run
def run_one(task: dict) -> dict:
    try:
        return _run_one(**task)
    except Exception:  # one broken run must not lose the others
        return {**task, "error": traceback.format_exc(limit=6)}


def _run_one(method: str, seed: int, trials: int) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_search_") as tmp:
        study = cli_study(trials, seed, Path(tmp) / "study")
        if method == "baseline":
            records = [_baseline(study, seed)]
            rejected = 0
        elif method == "ours":
            records, rejected = _ours(study, seed, trials), 0
        elif method == "random":
            records, rejected = _random(study, seed, trials)
        elif method in ("tpe", "tpe-mv"):
            records, rejected = _tpe(study, seed, trials, multivariate=method == "tpe-mv")
        else:
            raise ValueError(f"unknown method {method!r}")
    return {
        "method": method,
        "seed": seed,
        "trials": trials,
        "records": records,
        "rejected": rejected,
        "wall_s": time.perf_counter() - start,
        "score_spec": study.opt.score.spec(),
        "space": {"dims": study.opt.space.n_dims, "conditional": study.opt.space.n_conditional},
    }


def _ours(study, seed: int, trials: int) -> list:
    from nas.storage import Storage
    from nas.trial import COMPLETE

    seen = [0]

    def on_progress(p):
        n = p.done + p.failed
        if n > seen[0]:
            seen[0] = n
            log(
                f"[ours s{seed}] {n}/{trials} best {None if p.best is None else round(p.best, 4)} "
                f"elapsed {p.elapsed:.0f}s"
            )

    study.on_progress = on_progress
    study.run()
    records = []
    with Storage(study.folder / "study.db", read_only=True) as st:
        for t in st.trials():
            ok = t.status == COMPLETE
            records.append(
                {
                    "trial": t.id,
                    "seed": t.seed,
                    "macs": t.macs,
                    "params": t.params,
                    "config": t.config,
                    "val": t.value if ok else None,
                    "test": t.metrics.get("test_acc") if ok else None,
                    "failed": not ok,
                    "score": t.score if ok else None,
                    "seconds": (t.metrics or {}).get("wall_time"),
                    "error": t.error,
                }
            )
    assert [r["seed"] for r in records] == [seed * SEED_STRIDE + r["trial"] for r in records]
    return records


def _random(study, seed: int, trials: int) -> tuple[list, int]:
    rng = np.random.default_rng(seed)
    space, records, rejected, best = study.opt.space, [], 0, None
    while len(records) < trials:
        cfg = space.sample(rng)
        if not study.opt.feasible(cfg):
            rejected += 1
            continue
        rec = run_objective(study, cfg, len(records) + 1, seed)
        records.append(rec)
        best = max([r["score"] for r in records if not r["failed"]], default=None)
        _progress("random", seed, trials, rec, best)
    return records, rejected


def _tpe(study, seed: int, trials: int, *, multivariate: bool) -> tuple[list, int]:
    import optuna
    from optuna.trial import TrialState

    from bench.optuna_adapter import suggest_config

    sampler = (
        optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
        if multivariate
        else optuna.samplers.TPESampler(seed=seed)
    )
    ostudy = optuna.create_study(direction="maximize", sampler=sampler)
    space, records, rejected, best = study.opt.space, [], 0, None
    name = "tpe-mv" if multivariate else "tpe"
    while len(records) < trials:
        trial = ostudy.ask()
        cfg = suggest_config(trial, space)
        if not study.opt.feasible(cfg):  # never trained, never given a value
            ostudy.tell(trial, state=TrialState.FAIL)
            rejected += 1
            if rejected > 1000:
                raise RuntimeError("Optuna proposed 1000 configs that break the search's constraints")
            continue
        rec = run_objective(study, cfg, len(records) + 1, seed)
        records.append(rec)
        if rec["failed"]:
            ostudy.tell(trial, state=TrialState.FAIL)
        else:
            ostudy.tell(trial, rec["score"])
        best = max([r["score"] for r in records if not r["failed"]], default=None)
        _progress(name, seed, trials, rec, best)
    return records, rejected


def _baseline(study, seed: int) -> dict:
    """The hand-written CNN, trained with seed ``seed`` itself (as bench/bench_trainer.py does)."""
    from bench.bench_trainer import BASELINE

    cfg = json.loads(json.dumps(BASELINE))
    known = study.opt.known(cfg)
    spec = {"trial_id": 0, "config": cfg, "seed": seed, "study_dir": None, **study.objective_args}
    t0 = time.perf_counter()
    out = study.objective(spec)
    val = float(out["value"])
    rec = {
        "trial": 0,
        "seed": seed,
        "macs": known["macs"],
        "params": known["params"],
        "config": cfg,
        "val": val,
        "test": float(out["metrics"]["test_acc"]),
        "failed": False,
        "seconds": time.perf_counter() - t0,
        "score": float(study.opt.score_of([cfg], [val])[0]),
    }
    log(f"[baseline s{seed}] val {rec['val']:.4f} test {rec['test']:.4f} score {rec['score']:.4f}")
    return rec


# ------------------------------------------------------------------------------------------ analysis
def quartiles(xs) -> tuple:
    a = np.asarray(xs, dtype=float)
    return tuple(float(q) for q in np.quantile(a, [0.25, 0.5, 0.75]))


def fmt_q(xs, fmt="{:.4f}") -> str:
    lo, med, hi = quartiles(xs)
    return f"{fmt.format(med)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def pick(records: list, upto: int | None = None) -> dict | None:
    ok = [r for r in records[:upto] if not r["failed"]]
    return max(ok, key=lambda r: r["score"]) if ok else None  # max keeps the first on ties


def meets_bar(rec: dict | None) -> bool:
    return rec is not None and rec["test"] >= TEST_BAR and rec["macs"] < BASELINE_MACS


def summarise(runs: list, methods: list, trials: int) -> list[str]:
    early = max(1, min(10, trials // 2))
    head = [
        "method",
        "runs",
        f"best score @{early}",
        f"best score @{trials}",
        "pick val acc",
        "pick test acc",
        "pick MACs",
        "pick params",
        f"picks >= {TEST_BAR:.0%} test & < {BASELINE_MACS // 1000}k MACs",
        "failed trials",
        "median s / trial",
        "median run min",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for m in methods:
        rs = [r for r in runs if r["method"] == m and "error" not in r]
        if not rs:
            continue
        picks = [pick(r["records"]) for r in rs]
        picks_early = [pick(r["records"], early) for r in rs]
        secs = [x["seconds"] for r in rs for x in r["records"] if x.get("seconds") is not None]
        lines.append(
            "| "
            + " | ".join(
                [
                    LABELS[m],
                    str(len(rs)),
                    fmt_q([p["score"] for p in picks_early]),
                    fmt_q([p["score"] for p in picks]),
                    fmt_q([p["val"] for p in picks]),
                    fmt_q([p["test"] for p in picks]),
                    fmt_q([p["macs"] for p in picks], "{:,.0f}"),
                    fmt_q([p["params"] for p in picks], "{:,.0f}"),
                    f"{sum(map(meets_bar, picks))} / {len(rs)}",
                    str(sum(x["failed"] for r in rs for x in r["records"])),
                    f"{statistics.median(secs):.1f}" if secs else "-",
                    f"{statistics.median(r['wall_s'] for r in rs) / 60:.1f}",
                ]
            )
            + " |"
        )
    return lines


def per_run_table(runs: list, methods: list) -> list[str]:
    lines = [
        "| method | seed | best score | pick: val | test | MACs | params | pick's trial | meets bar |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in methods:
        for r in sorted((r for r in runs if r["method"] == m and "error" not in r), key=lambda r: r["seed"]):
            p = pick(r["records"])
            lines.append(
                f"| {LABELS[m]} | {r['seed']} | {p['score']:.4f} | {p['val']:.4f} | {p['test']:.4f} | "
                f"{p['macs']:,} | {p['params']:,} | {p['trial']} | {'yes' if meets_bar(p) else 'no'} |"
            )
    return lines


def head_to_head(runs: list, methods: list) -> list[str]:
    """Per seed, ours against each other method on the best score reached (same seed, same trial seeds)."""
    best = {(r["method"], r["seed"]): pick(r["records"])["score"] for r in runs if "error" not in r}
    out = []
    for m in methods:
        if m == "ours":
            continue
        seeds = sorted(s for (mm, s) in best if mm == m and ("ours", s) in best)
        if not seeds:
            continue
        wins = sum(best[("ours", s)] > best[(m, s)] for s in seeds)
        ties = sum(best[("ours", s)] == best[(m, s)] for s in seeds)
        diffs = [best[("ours", s)] - best[(m, s)] for s in seeds]
        out.append(
            f"- ours vs {LABELS[m]}: ours higher on {wins} of {len(seeds)} seeds"
            + (f" ({ties} ties)" if ties else "")
            + f"; median difference in best score {statistics.median(diffs):+.4f}"
        )
    return out


def curve_table(runs: list, methods: list, trials: int) -> list[str]:
    marks = sorted({b for b in (5, 10, 15, 20, 25, 30, 40, 50) if b < trials} | {trials})
    lines = ["| method | " + " | ".join(f"@{b}" for b in marks) + " |", "|---|" + "---:|" * len(marks)]
    for m in methods:
        rs = [r for r in runs if r["method"] == m and "error" not in r]
        if not rs:
            continue
        cells = []
        for b in marks:
            vals = [p["score"] for p in (pick(r["records"], b) for r in rs) if p is not None]
            cells.append(f"{statistics.median(vals):.4f}" if vals else "-")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return lines


def baseline_lines(runs: list) -> list[str]:
    rs = sorted((r for r in runs if r["method"] == "baseline" and "error" not in r), key=lambda r: r["seed"])
    if not rs:
        return []
    recs = [r["records"][0] for r in rs]
    b = recs[0]
    return [
        f"Baseline (stem conv 16 -> conv 32 s2 -> conv 64 s2 -> GAP -> linear; Adam 1e-3, batch 32, 15 epochs; "
        f"`bench/bench_trainer.py`'s BASELINE trained by the same `run_trial`), seeds "
        f"{', '.join(str(r['seed']) for r in rs)}: MACs {b['macs']:,}, params {b['params']:,}; "
        f"val acc {fmt_q([r['val'] for r in recs])}, test acc {fmt_q([r['test'] for r in recs])}, "
        f"score {fmt_q([r['score'] for r in recs])} (median [quartiles])."
    ]


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=25, help="trials per run (default 25)")
    ap.add_argument("--seeds", type=int, default=5, help="runs per method, seeds 0..N-1 (default 5)")
    ap.add_argument(
        "--methods", nargs="+", default=["ours", "tpe", "random"], choices=["ours", "tpe", "tpe-mv", "random"]
    )
    ap.add_argument("--baseline-seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2, help="runs at once (processes)")
    ap.add_argument("--quick", action="store_true", help="4 trials, 1 seed, 1 baseline seed")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_search.md")
    ap.add_argument("--raw", type=Path, default=ROOT / "bench" / "out" / "search_runs.json")
    ap.add_argument("--from-raw", action="store_true", help="write the report from --raw without running anything")
    a = ap.parse_args(argv)
    if a.quick:
        a.trials, a.seeds, a.baseline_seeds = 4, 1, 1
    cmd = "cd /work/main && .venv/bin/python bench/bench_search.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if a.from_raw:
        raw = json.loads(a.raw.read_text())
        return report(raw["runs"], a, command=raw["command"], total=raw["total_s"])

    from bench.optuna_adapter import check_adapter
    from nas.cli_wiring import default_space_for

    log(f"optuna adapter self-check: {check_adapter(default_space_for('digits'), 300)}")

    tasks = [{"method": "baseline", "seed": s, "trials": 1} for s in range(a.baseline_seeds)]
    # Interleave methods, so a slow stretch of the shared machine does not fall on one method alone.
    tasks += [{"method": m, "seed": s, "trials": a.trials} for s in range(a.seeds) for m in a.methods]
    import multiprocessing as mp

    t0 = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(
        max_workers=a.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
    ) as pool:
        futures = {pool.submit(run_one, t): t for t in tasks}
        for f in as_completed(futures):
            r = f.result()
            runs.append(r)
            if "error" in r:
                log(f"RUN FAILED {r['method']} s{r['seed']}:\n{r['error']}")
            else:
                log(
                    f"done {r['method']} s{r['seed']} in {r['wall_s'] / 60:.1f} min "
                    f"({len(runs)}/{len(tasks)} runs, {(time.perf_counter() - t0) / 60:.1f} min so far)"
                )
    total = time.perf_counter() - t0
    a.raw.parent.mkdir(parents=True, exist_ok=True)
    a.raw.write_text(json.dumps({"command": cmd.strip(), "total_s": total, "runs": runs}, indent=1))
    return report(runs, a, command=cmd.strip(), total=total)


def report(runs: list, a, *, command: str, total: float) -> int:
    import optuna
    import torch

    ok = [r for r in runs if "error" not in r]
    base = [r for r in ok if r["method"] == "baseline"]
    if base:
        assert base[0]["records"][0]["macs"] == BASELINE_MACS, base[0]["records"][0]["macs"]
    study_score = ok[0]["score_spec"] if ok and "score_spec" in ok[0] else SCORE_SPEC
    dims = ok[0].get("space", SPACE_DIMS) if ok else SPACE_DIMS
    rejected = {m: sum(r.get("rejected", 0) for r in runs if r["method"] == m) for m in a.methods}
    errors = [r for r in runs if "error" in r]
    lines = [
        "# Digits search: ours against Optuna TPE and random search",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {os.cpu_count()} CPUs (shared with other jobs "
        f"while this ran), Python {platform.python_version()}, torch {torch.__version__}, optuna "
        f"{optuna.__version__}. {a.workers} runs at a time, one torch thread each; total wall {total / 60:.1f} min.",
        "",
        f"Budget: {a.trials} trials per run; seeds {', '.join(map(str, range(a.seeds)))} for every method "
        f"(the optimiser's / sampler's seed; trial k of seed s trains with seed s*{SEED_STRIDE}+k in every "
        f"method). Space: the digits default ({dims['dims']} encoded dims, "
        f"{dims['conditional']} conditional). Score: `{study_score}` on validation accuracy (the "
        "CLI default for digits), computed exactly for every method. Each run's pick is its best-scoring "
        "trial; test accuracy is reported for the pick only.",
        "",
        "Optuna / random configs rejected by the search's constraints (never trained): "
        + ", ".join(f"{m} {n}" for m, n in rejected.items() if m != "ours")
        + ".",
        "",
        "## Summary (median [25 %, 75 %] over seeds)",
        "",
        *summarise(runs, a.methods, a.trials),
        "",
        *baseline_lines(runs),
        "",
        *head_to_head(runs, a.methods),
        "",
        "## Best score so far, median over seeds",
        "",
        *curve_table(runs, a.methods, a.trials),
        "",
        "## Every run's pick",
        "",
        *per_run_table(runs, a.methods),
        "",
    ]
    return finish_results(lines, errors, lambda r: f"{r['method']} seed {r['seed']}", raw=a.raw, out=a.out, root=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
