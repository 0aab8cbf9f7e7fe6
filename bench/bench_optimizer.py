"""GP-UCB (ours) against random search, Optuna TPE and Optuna GPSampler, on NAS-Bench-201 and a conditional
synthetic problem; one objective, two objectives (accuracy and latency), and the optimiser's own overhead.

    .venv/bin/python -m bench.bench_optimizer                 # 10 seeds, trajectories of 100 trials
    .venv/bin/python -m bench.bench_optimizer --quick         # 3 seeds, 50 trials: a smoke run
    .venv/bin/python -m bench.bench_optimizer --parts nb201 overhead --nb201 /path/to/nb201_merged.csv

Every run is sequential (one trial at a time) and seeded; regrets at the smaller budgets are read off the
longest trajectory of the same run. A re-suggested config counts as a trial (random search and Optuna can
repeat a config; ours never proposes one twice). Runs are spread over ``--workers`` processes, each limited to
one BLAS / torch thread; the overhead timings run afterwards alone, with the default threads.
Writes ``bench/results_optimizer.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

from bench.common import log  # noqa: E402,F401  (re-exported: other benchmarks import it from here)
from bench.nb201 import NB201Missing, load_nb201  # noqa: E402
from bench.problems import (  # noqa: E402
    Problem,
    conditional_problem,
    conditional_space,
    conditional_value,
    optuna_distributions,
    suggest,
)

LAT_DEVICE = "lat_ms_pixel3"  # Google Pixel 3, batch 1: a phone, where latency is what one pays for
MNAS_EXP = -0.07  # MnasNet's soft constraint (Tan et al. 2019, Eq. 2: alpha = beta = -0.07)
LABELS = {
    "ours": "ours (arc)",
    "ours-impute": "ours (impute)",
    "random": "random",
    "tpe": "Optuna TPE",
    "gp": "Optuna GPSampler",
    "tpe-mo": "Optuna TPE, 2 objectives",
}


# ------------------------------------------------------------------------------------------ problems
_CACHE: dict = {}


def _nb(path):
    if "nb" not in _CACHE:
        _CACHE["nb"] = load_nb201(path)
    return _CACHE["nb"]


def mo_setup(nb):
    """The scalarised two-objective problem: MnasScore on accuracy (%) and latency in microseconds.

    Microseconds, because MnasScore floors a known value at 1.0 (it was written for MACs / params) and 283
    cells of the table run under 1 ms on the Pixel 3; in microseconds none is below 3."""
    from nas.score import MnasScore

    lat_us = nb.columns[LAT_DEVICE] * 1000.0
    target = float(np.median(lat_us))
    score = MnasScore(targets={"latency": target}, alpha=MNAS_EXP, beta=MNAS_EXP)
    table_scores = score(nb.columns["cifar10valid_val_acc_mean"], {"latency": lat_us})
    return score, target, float(table_scores.max())


def make_problem(name: str, nb201_path) -> Problem:
    if name == "conditional":
        return conditional_problem()
    nb = _nb(nb201_path)

    def evaluate(c):
        r = nb.lookup(c)
        return {"value": r["val"], "test": r["test"], "lat": r[LAT_DEVICE], "row": nb.row(c)}

    return Problem(name, nb.space, evaluate, nb.best_val)


# ------------------------------------------------------------------------------------------ one run
def _init_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # two runs on two cores: no oversubscription from BLAS
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    _quiet()


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GPSampler warns once per conditional parameter
    warnings.filterwarnings("ignore")


def run_one(task: dict) -> dict:
    """One seeded run: ``{"records": [{"value", ...} per trial], "wall_s", ...}`` or ``{"error": ...}``."""
    try:
        return _run_one(**task)
    except Exception:  # one broken run must not lose the others
        return {**task, "error": traceback.format_exc(limit=4)}


def _run_one(problem: str, method: str, seed: int, budget: int, nb201_path=None, mo: bool = False) -> dict:
    prob = make_problem(problem, nb201_path)
    score = known = None
    if mo:
        nb = _nb(nb201_path)
        score, _, _ = mo_setup(nb)
        known = lambda c: {"latency": nb.lookup(c)[LAT_DEVICE] * 1000.0}  # noqa: E731
    start = time.perf_counter()
    records, n_warn = [], {}
    if method in ("ours", "ours-impute"):
        from nas.optimizer import Optimizer

        opt = Optimizer(
            prob.space,
            direction="maximize",
            seed=seed,
            known=known,
            score=score,
            kernel="impute" if method == "ours-impute" else "arc",
        )
        with warnings.catch_warnings(record=True) as caught:  # counted: a GP fit that fell back is news
            warnings.simplefilter("always")
            for _ in range(budget):
                cfg = opt.ask(1)[0]
                rec = prob.evaluate(cfg)
                opt.tell(cfg, rec["value"])
                records.append(rec | {"key": _key(cfg)})
        for w in caught:
            n_warn[w.category.__name__] = n_warn.get(w.category.__name__, 0) + 1
    elif method == "random":
        rng = np.random.default_rng(seed)
        for _ in range(budget):
            cfg = prob.space.sample(rng)
            records.append(prob.evaluate(cfg) | {"key": _key(cfg)})
    elif method in ("tpe", "gp", "tpe-mo"):
        import optuna

        _quiet()
        sampler = optuna.samplers.GPSampler(seed=seed) if method == "gp" else optuna.samplers.TPESampler(seed=seed)
        if method == "tpe-mo":
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        else:
            study = optuna.create_study(direction="maximize", sampler=sampler)
        for _ in range(budget):
            trial = study.ask()
            cfg = suggest(trial, prob.space)
            rec = prob.evaluate(cfg)
            if method == "tpe-mo":
                study.tell(trial, [rec["value"], rec["lat"]])
            elif mo:  # the same scalarisation as ours, on the exact latency
                study.tell(trial, float(score([rec["value"]], {"latency": [rec["lat"] * 1000.0]})[0]))
            else:
                study.tell(trial, rec["value"])
            records.append(rec | {"key": _key(cfg)})
    else:
        raise ValueError(f"unknown method {method!r}")
    return {
        "problem": problem,
        "method": method,
        "seed": seed,
        "budget": budget,
        "mo": mo,
        "records": records,
        "warnings": n_warn,
        "wall_s": time.perf_counter() - start,
    }


def _key(cfg: dict) -> str:
    from nas.acq_maximizer import config_key

    return config_key(cfg)


# ------------------------------------------------------------------------------------------ analysis
def quartiles(xs) -> tuple:
    a = np.asarray(xs, dtype=float)
    return tuple(float(q) for q in np.quantile(a, [0.25, 0.5, 0.75]))


def fmt_q(xs, digits=3) -> str:
    lo, med, hi = quartiles(xs)
    return f"{med:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def regret_at(run: dict, budget: int, best: float, key="value") -> float:
    return best - max(r[key] for r in run["records"][:budget])


def pick_at(run: dict, budget: int) -> dict:
    """The record a search would return after ``budget`` trials: the best value (first one on ties)."""
    recs = run["records"][:budget]
    return recs[int(np.argmax([r["value"] for r in recs]))]


def single_table(runs: list, methods: list, budgets: list, best: float, *, digits: int, test: bool) -> tuple:
    """Markdown table rows and {method: {budget: [regrets]}}."""
    head = ["method"] + [f"regret @{b}" for b in budgets]
    if test:
        head += [f"test acc of pick @{b}" for b in budgets]
    head += [f"distinct @{budgets[-1]}", "s / trial"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    regrets = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m and "error" not in r]
        if not rs:
            lines.append(f"| {LABELS[m]} | " + " | ".join(["(no runs)"] * (len(head) - 1)) + " |")
            continue
        regrets[m] = {b: [regret_at(r, b, best) for r in rs] for b in budgets}
        cells = [fmt_q(regrets[m][b], digits) for b in budgets]
        if test:
            cells += [fmt_q([pick_at(r, b)["test"] for r in rs], 2) for b in budgets]
        distinct = [len({x["key"] for x in r["records"][: budgets[-1]]}) for r in rs]
        cells += [f"{np.median(distinct):.0f}", f"{np.median([r['wall_s'] / len(r['records']) for r in rs]):.3f}"]
        lines.append(f"| {LABELS[m]} (n={len(rs)}) | " + " | ".join(cells) + " |")
    return lines, regrets


def mo_table(runs, methods, budgets, nb, score, best_score) -> tuple:
    from nas.pareto import hypervolume_2d

    val = nb.columns["cifar10valid_val_acc_mean"]
    lat = nb.columns[LAT_DEVICE]
    # Reference point: the table's median accuracy and its worst latency. With the worst accuracy (9.7 %) as
    # reference, the cells that are merely not broken fill 93 % of the table's hypervolume after 25 random
    # trials and the measure no longer tells methods apart.
    ref = [float(np.median(val)), float(lat.max())]
    hv_table = hypervolume_2d(np.c_[val, lat], ref=ref, maximize=[True, False])
    head = ["method"] + [f"score regret @{b}" for b in budgets] + [f"HV / HV(table) @{b}" for b in budgets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m and "error" not in r]
        if not rs:
            continue
        regs, hvs = {}, {}
        for b in budgets:
            regs[b], hvs[b] = [], []
            for r in rs:
                recs = r["records"][:b]
                v = np.array([x["value"] for x in recs])
                lt = np.array([x["lat"] for x in recs])
                regs[b].append(best_score - float(score(v, {"latency": lt * 1000.0}).max()))
                hvs[b].append(hypervolume_2d(np.c_[v, lt], ref=ref, maximize=[True, False]) / hv_table)
        out[m] = regs
        cells = [fmt_q(regs[b], 3) for b in budgets] + [fmt_q(hvs[b], 3) for b in budgets]
        lines.append(f"| {LABELS[m]} (n={len(rs)}) | " + " | ".join(cells) + " |")
    return lines, out, ref, hv_table


# ------------------------------------------------------------------------------------------ overhead
def time_ours(n_obs: int, reps: int, seed: int = 0) -> list:
    from nas.optimizer import Optimizer

    space = conditional_space()
    opt = Optimizer(space, direction="maximize", seed=seed)
    for c in space.sample_many(n_obs, seed=seed):
        opt.tell(c, conditional_value(c))
    times = []
    for _ in range(reps):  # each ask after a new tell, so each one refits, as in a real search
        t0 = time.perf_counter()
        cfg = opt.ask(1)[0]
        times.append(time.perf_counter() - t0)
        opt.tell(cfg, conditional_value(cfg))
    return times


def time_optuna(kind: str, n_obs: int, reps: int, seed: int = 0) -> list:
    import optuna
    from optuna.trial import create_trial

    _quiet()
    space = conditional_space()
    sampler = optuna.samplers.GPSampler(seed=seed) if kind == "gp" else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trials(
        [
            create_trial(params=c, distributions=optuna_distributions(space, c), value=conditional_value(c))
            for c in space.sample_many(n_obs, seed=seed)
        ]
    )
    times = []
    for _ in range(reps):
        # Optuna samples lazily: the GP is fitted at the first suggest, so the clock covers ask + suggest.
        t0 = time.perf_counter()
        trial = study.ask()
        cfg = suggest(trial, space)
        times.append(time.perf_counter() - t0)
        study.tell(trial, conditional_value(cfg))
    return times


# ------------------------------------------------------------------------------------------ main
ENGINE = (
    "nas/optimizer.py",
    "nas/surrogate.py",
    "nas/gp.py",
    "nas/kernel.py",
    "nas/gp_fit.py",
    "nas/acquisition.py",
    "nas/acq_maximizer.py",
    "nas/constraints.py",
    "nas/space.py",
    "nas/params.py",
    "nas/score.py",
)


def engine_hash() -> str:
    """A short digest of the engine files the results depend on, so a table names the code it measured."""
    import hashlib

    h = hashlib.sha256()
    for f in ENGINE:
        p = ROOT / f
        h.update(p.read_bytes() if p.exists() else b"")
    return h.hexdigest()[:12]


def machine_note() -> str:
    import optuna
    import scipy

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return (
        f"{cores} CPU cores available, Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, optuna {optuna.__version__}, {platform.platform()}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 10; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 seeds, budgets 25 / 50")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["nb201", "conditional", "mo", "overhead"],
        choices=["nb201", "conditional", "mo", "overhead"],
    )
    parser.add_argument(
        "--nb201",
        default=None,
        help="path to nb201_merged.csv (default: $LIGHTNAS_NB201, then "
        "../shared/benchmarks/nb201/nb201_merged.csv from the project root)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(LABELS),
        help="run only these methods (default: all that apply to each part)",
    )
    parser.add_argument(
        "--reuse",
        default=None,
        metavar="RAW_JSON",
        help="take runs from an earlier --raw file instead of running them again (same problem, "
        "method, seed and budget), except for the methods named in --methods, which run afresh",
    )
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_optimizer.md")))
    parser.add_argument(
        "--raw",
        default=str(Path(__file__).with_name("out") / "optimizer_runs.json"),
        help="every trial of every run, as JSON (bench/out/ is not tracked)",
    )
    args = parser.parse_args(argv)
    n_seeds = args.seeds if args.seeds is not None else (3 if args.quick else 10)
    seeds = list(range(n_seeds))
    budgets = [25, 50] if args.quick else [25, 50, 100]
    horizon = budgets[-1]
    obs_counts = [50, 200] if args.quick else [50, 200, 1000]
    command = "python -m bench.bench_optimizer " + " ".join(argv if argv is not None else sys.argv[1:])
    t_start = time.perf_counter()
    engine_at_start = engine_hash()
    _quiet()

    nb = None
    skipped = []
    if {"nb201", "mo"} & set(args.parts):
        try:
            nb = _nb(args.nb201)
        except NB201Missing as e:
            log(f"skipping NAS-Bench-201 parts: {e}")
            skipped.append(f"NAS-Bench-201 parts skipped: {e}")

    tasks = []
    plan = []  # (problem, methods, mo)
    if "nb201" in args.parts and nb is not None:
        plan.append(("nb201", ["ours", "random", "tpe", "gp"], False))
    if "conditional" in args.parts:
        plan.append(("conditional", ["ours", "ours-impute", "random", "tpe", "gp"], False))
    if "mo" in args.parts and nb is not None:
        plan.append(("nb201-mo", ["ours", "random", "tpe", "tpe-mo"], True))
    slow_first = {"gp": 0, "ours": 1, "ours-impute": 1, "tpe": 2, "tpe-mo": 2, "random": 3}
    for problem, methods, mo in plan:
        for m in methods:
            if args.methods and m not in args.methods and not args.reuse:
                continue
            for s in seeds:
                tasks.append(
                    {
                        "problem": "nb201" if mo else problem,
                        "method": m,
                        "seed": s,
                        "budget": horizon,
                        "nb201_path": str(nb.path) if nb is not None else None,
                        "mo": mo,
                    }
                )
    tasks.sort(key=lambda t: slow_first[t["method"]])

    runs = []
    if args.reuse:

        def same(t):
            return (t["problem"], t["method"], t["seed"], t["budget"], t["mo"])

        fresh = set(args.methods or [])
        old = {same(r): r for r in json.loads(Path(args.reuse).read_text()) if "error" not in r}
        runs = [old[same(t)] for t in tasks if t["method"] not in fresh and same(t) in old]
        tasks = [t for t in tasks if t["method"] in fresh or same(t) not in old]
        log(f"reusing {len(runs)} runs from {args.reuse}")
    t_runs = time.perf_counter()
    if tasks:
        log(f"{len(tasks)} runs of {horizon} trials on {args.workers} workers")
        import multiprocessing as mp

        with ProcessPoolExecutor(
            max_workers=args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
        ) as ex:
            futs = [ex.submit(run_one, t) for t in tasks]
            for i, f in enumerate(as_completed(futs), 1):
                r = f.result()
                runs.append(r)
                name = f"{'nb201-mo' if r['mo'] else r['problem']} {r['method']} seed {r['seed']}"
                if "error" in r:
                    log(f"[{i}/{len(tasks)}] {name}: FAILED\n{r['error']}")
                else:
                    best = max(x["value"] for x in r["records"])
                    warned = f", warnings {r['warnings']}" if r.get("warnings") else ""
                    log(f"[{i}/{len(tasks)}] {name}: best value {best:.4f} ({r['wall_s']:.1f} s{warned})")
    t_runs = time.perf_counter() - t_runs
    if runs:
        Path(args.raw).parent.mkdir(parents=True, exist_ok=True)
        Path(args.raw).write_text(json.dumps(runs))
        log(f"wrote {args.raw}")

    md = [
        "# Optimiser benchmark: ours (GP-UCB) against random search, Optuna TPE and Optuna GPSampler",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine_note()}.",
        "",
        f"Engine: sha256 of {', '.join(ENGINE)} = `{engine_at_start}`.",
        "",
        f"Seeds: {seeds}. Budgets: {budgets} trials (read off one {horizon}-trial trajectory per run). "
        f"Runs sequential (one trial at a time), {args.workers} runs in parallel with one thread each. "
        f"Cells are median [25 %, 75 % quartiles] over seeds. Optuna samplers at their defaults "
        f"(`TPESampler(seed=s)`, `GPSampler(seed=s)`, 10 random start-up trials each); ours at its defaults "
        f"(`Optimizer(space, seed=s)`, 10 warm-up trials). A re-suggested config counts as a trial; "
        f"'distinct' is the median number of different configs among the first {horizon}.",
        "",
    ]
    md += [f"- {s}" for s in skipped]
    regrets = {}
    failures = [r for r in runs if "error" in r]
    if failures:
        md += [
            f"- {len(failures)} run(s) failed: "
            + ", ".join(f"{r['problem']} {r['method']} seed {r['seed']}" for r in failures),
            "",
        ]

    warned = {}
    for r in runs:
        for k, v in r.get("warnings", {}).items():
            warned[k] = warned.get(k, 0) + v
    if warned:
        md += [
            "- Warnings raised by our optimiser over all its runs: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(warned.items())),
            "",
        ]

    # a. NB201 ------------------------------------------------------------------------------------------
    if any(p[0] == "nb201" for p in plan):
        rs = [r for r in runs if r["problem"] == "nb201" and not r["mo"]]
        lines, regrets["nb201"] = single_table(
            rs, ["ours", "random", "tpe", "gp"], budgets, nb.best_val, digits=2, test=True
        )
        md += (
            [
                "## a. NAS-Bench-201, CIFAR-10: maximise validation accuracy",
                "",
                f"Table: `{nb.path}` (15,625 cells; read, not copied). Regret = best validation accuracy in the "
                f"table ({nb.best_val:.2f} %) minus the best found, in percentage points. The pick is the "
                f"config with the best validation accuracy found; its test accuracy is reported "
                f"(a perfect search picks {nb.test_of_best_val:.2f} %; the best test accuracy in the table is "
                f"{nb.best_test:.2f} %).",
                "",
            ]
            + lines
            + [""]
        )
    # b. conditional -----------------------------------------------------------------------------------
    if any(p[0] == "conditional" for p in plan):
        rs = [r for r in runs if r["problem"] == "conditional"]
        space = conditional_space()
        lines, regrets["conditional"] = single_table(
            rs, ["ours", "ours-impute", "random", "tpe", "gp"], budgets, 1.0, digits=3, test=False
        )
        found_a = {
            m: np.mean(
                [max(x["value"] for x in r["records"][:50]) > 0.85 for r in rs if r["method"] == m and "error" not in r]
            )
            for m in ["ours", "ours-impute", "random", "tpe", "gp"]
        }
        md += (
            [
                "## b. Conditional synthetic problem (`bench/problems.py`)",
                "",
                f"{space.n_dims} encoded dims, {space.n_conditional} conditional: `family` in {{a, b, c}}, each "
                "with 3-4 own parameters of mixed kinds and one nested choice, plus shared `x`, `n`. The maximum is "
                "exactly 1.0 (family a, nested a_mode = boost); b tops out at 0.85 and c at 0.7, so a value above "
                "0.85 means family a's peak was found. Regret = 1.0 - best value found. 'impute' is our "
                "optimiser with the naive kernel (inactive dims read as their stored 0).",
                "",
            ]
            + lines
            + [""]
        )
        md += [
            "Share of seeds whose best value after 50 trials is above 0.85 (found the global peak's family "
            "and region): " + ", ".join(f"{LABELS[m]} {v:.0%}" for m, v in found_a.items() if not math.isnan(v)),
            "",
        ]
    # c. two objectives --------------------------------------------------------------------------------
    if any(p[0] == "nb201-mo" for p in plan):
        rs = [r for r in runs if r["problem"] == "nb201" and r["mo"]]
        score, target, best_score = mo_setup(nb)
        lines, regrets["mo"], ref, hv_table = mo_table(
            rs, ["ours", "random", "tpe", "tpe-mo"], budgets, nb, score, best_score
        )
        md += (
            [
                "## c. NAS-Bench-201: validation accuracy against Pixel 3 latency",
                "",
                f"Latency column `{LAT_DEVICE}` (ms, batch 1). Score: MnasNet's soft constraint "
                f"`acc * (lat / T) ** {MNAS_EXP}` (alpha = beta = {MNAS_EXP}), T = median latency of the table "
                f"({target / 1000:.3f} ms), with the latency known exactly (`known=` for ours, computed in the "
                f"objective for TPE), latency passed in microseconds. Score regret = best score in the table "
                f"({best_score:.3f}) minus the best score found. 'Optuna TPE' optimises the same scalar score; "
                f"'Optuna TPE, 2 objectives' is Optuna's multi-objective TPE on (accuracy, latency) and is scored "
                f"afterwards. Hypervolume of the (val acc, latency) points found, reference point (median accuracy, "
                f"worst latency in the table) = ({ref[0]:.2f} %, {ref[1]:.2f} ms), divided by the hypervolume "
                f"of the whole table ({hv_table:.1f}).",
                "",
            ]
            + lines
            + [""]
        )
    # d. overhead --------------------------------------------------------------------------------------
    timing = {}
    if "overhead" in args.parts:
        load_before = os.getloadavg()[0]
        log(f"timing ask(1) (alone, default threads; 1-min load average {load_before:.1f})")
        reps = 3
        # With --reuse, --methods names what runs afresh: the timings are all taken again either way.
        kinds = [k for k in ("ours", "gp", "tpe") if not args.methods or args.reuse or k in args.methods]
        for n in obs_counts:
            for kind in kinds:
                try:
                    ts = time_ours(n, reps) if kind == "ours" else time_optuna(kind, n, reps)
                except Exception:
                    log(f"  {kind} after {n} observations: FAILED\n{traceback.format_exc(limit=4)}")
                    timing[(kind, n)] = math.nan
                    failures.append({"problem": "overhead", "method": kind, "seed": n})
                    continue
                timing[(kind, n)] = float(np.median(ts))
                log(
                    f"  {kind} after {n} observations: median {timing[(kind, n)]:.3f} s ({', '.join(f'{t:.3f}' for t in ts)})"
                )
        md += [
            "## d. Overhead: seconds per ask(1)",
            "",
            f"Conditional problem; {', '.join(map(str, obs_counts))} random configs told with their values, "
            f"then {reps} rounds of ask(1) + tell; median seconds of the ask (ours: `Optimizer.ask(1)`, "
            "which refits the GP after each tell; Optuna: `study.ask()` plus the define-by-run suggestions, "
            "since Optuna fits its model at the first suggest). Run alone, after the searches, with the "
            "default thread settings; the machine's 1-minute load average was "
            f"{load_before:.1f} when timing began (above the 2 cores means other processes were competing). "
            "GPSampler models only the parameters every trial has "
            "(x, n, family) and samples the rest at random, so its GP is smaller than ours.",
            "",
            "| method | " + " | ".join(f"after {n}" for n in obs_counts) + " |",
            "|---|" + "---:|" * len(obs_counts),
        ]
        for kind in kinds:
            md.append(
                f"| {LABELS[kind]} | "
                + " | ".join(
                    "failed" if math.isnan(timing[(kind, n)]) else f"{timing[(kind, n)]:.3f}" for n in obs_counts
                )
                + " |"
            )
        md.append("")
    # e. summary ---------------------------------------------------------------------------------------
    md += ["## e. Targets", "", "| target | measured | met |", "|---|---|---|"]
    b50 = 50
    for prob, label in (("nb201", "NAS-Bench-201"), ("conditional", "conditional problem")):
        reg = regrets.get(prob)
        if not reg or "ours" not in reg:
            continue
        ours = float(np.median(reg["ours"][b50]))
        for other, factor in (("tpe", 0.7), ("gp", 1.0)):
            if other not in reg:
                continue
            theirs = float(np.median(reg[other][b50]))
            ok = ours <= factor * theirs
            ratio = f"{ours / theirs:.2f}x" if theirs > 0 else "n/a (theirs is 0)"
            md.append(
                f"| {label}: median regret @50 <= {factor:g} x {LABELS[other]}'s | ours {ours:.3f}, "
                f"{LABELS[other]} {theirs:.3f} (ratio {ratio}) | {'yes' if ok else 'NO'} |"
            )
    for n, limit in ((200, 0.5), (1000, 5.0)):
        if ("ours", n) in timing:
            t = timing[("ours", n)]
            shown = "failed" if math.isnan(t) else f"{t:.3f} s"
            md.append(f"| ask(1) after {n} observations < {limit:g} s | {shown} | {'yes' if t < limit else 'NO'} |")
    if engine_hash() != engine_at_start:
        md += [
            "",
            f"**Warning: the engine files changed during this run (now `{engine_hash()}`): runs that "
            "started at different times may have used different code. Run it again.**",
        ]
        log("warning: nas/ engine files changed during the run; the results mix versions")
    if args.reuse:
        md += [
            "",
            f"Runs of methods other than {', '.join(args.methods or []) or '(none)'} were reused from "
            f"`{args.reuse}` (same seeds and budgets; Optuna and random search do not depend on the engine).",
        ]
    md += ["", f"Wall time: {time.perf_counter() - t_start:.0f} s in all ({t_runs:.0f} s for the searches).", ""]

    text = "\n".join(md)
    print(text)
    Path(args.out).write_text(text)
    log(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
