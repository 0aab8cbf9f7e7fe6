"""Pareto search with real training on digits: accuracy against MACs and parameters. Ours (exactly what
``nas search --dataset digits --objective pareto`` runs) against Optuna's multi-objective TPE and random
search, the same trials, the same training of every trial, over several seeds.

    .venv/bin/python -m bench.bench_pareto_digits                        # the run in results_pareto_digits.md
    .venv/bin/python -m bench.bench_pareto_digits --trials 8 --seeds 1   # smoke run

What is shared, so the methods differ only in which configs they propose:
    space        ``bench/pareto_digits_space.yaml``: architecture only, training keys at the trainer's
                 defaults (a small space so that a few epochs per trial and 20 trials fit a loaded machine)
    objective    ``trainers.runner.run_trial`` with the arguments ``nas search`` sets (data split seed 0, no
                 augmentation, ``--epochs E --fidelity off``: every trial trains exactly E epochs), one
                 torch thread, no weights kept
    trial seed   the k-th trial of a run with seed s trains with seed ``s * 100003 + k`` in every method
                 (the Study's own rule), so equal configs give equal accuracies
    costs        MACs and parameters counted exactly (``study.opt.known``), the same for every method

Methods
    ours         ``nas.cli_wiring.make_study`` on ``nas search --dataset digits --objective pareto --fidelity off
                 --epochs E --space ... --trials T --seed s``, run as is (EHVI, 8 space-filling warm-up trials)
    ours-lin     the same study with the Optimizer's costs on a linear scale (``log_costs=False``)
    ours-nofeat  the same study without the known costs as GP inputs (``cost_features=False``)
    tpe-mo       ``optuna.samplers.TPESampler(seed=s)``, three directions (max val acc, min MACs, min params)
    random       ``space.sample`` with ``numpy.random.default_rng(s)``

Measures (validation accuracy is what every search sees; test accuracy is reported for picks only)
    HV           hypervolume of (val acc, log10 MACs) and of (val acc, log10 MACs, log10 params), reference
                 (val acc 0.5, 1.1 x the largest MACs / params of 2,000 random configs of the space), divided
                 by the hypervolume of the union of every run's points (the best front known)
    budgets      the best val acc on each run's front with MACs <= each budget, and that network's test acc
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.bench_search import SEED_STRIDE, _init_worker, fmt_q, log  # noqa: E402
from bench.bench_search import trial_record as run_objective  # noqa: E402

SPACE = Path(__file__).with_name("pareto_digits_space.yaml")
LABELS = {
    "ours": "ours, EHVI (--objective pareto)",
    "ours-lin": "ours, EHVI on linear MACs and params",
    "ours-nofeat": "ours, EHVI, MACs and params not GP inputs (cost_features=False)",
    "tpe-mo": "Optuna TPE (3 objectives)",
    "random": "random search",
}
BUDGETS = (10_000, 30_000, 100_000)  # MACs
REF_ACC = 0.5


def cli_study(trials: int, seed: int, epochs: int, folder: Path):
    from nas import cli_wiring
    from nas.cli import build_parser

    args = build_parser().parse_args(
        [
            "search",
            "--dataset",
            "digits",
            "--objective",
            "pareto",
            "--fidelity",
            "off",
            "--epochs",
            str(epochs),
            "--space",
            str(SPACE),
            "--trials",
            str(trials),
            "--seed",
            str(seed),
            "--out",
            str(folder),
            "--quiet",
        ]
    )
    study, _ = cli_wiring.make_study(args)
    study.objective_args.update(threads=1, save_weights=False)
    return study


def run_one(task: dict) -> dict:
    try:
        return _run_one(**task)
    except Exception:
        return {**task, "error": traceback.format_exc(limit=6)}


def _run_one(method: str, seed: int, trials: int, epochs: int) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_pdigits_") as tmp:
        study = cli_study(trials, seed, epochs, Path(tmp) / "study")
        if method in ("ours", "ours-lin", "ours-nofeat"):
            if method == "ours-lin":
                _linear_costs(study.opt, seed)
            if method == "ours-nofeat":  # before the GP is made (at its first fit): config inputs only
                study.opt.surrogate.features, study.opt.surrogate.n_features = None, 0
            records = _ours(study, seed)
        elif method == "random":
            rng = np.random.default_rng(seed)
            records = [run_objective(study, study.opt.space.sample(rng), k, seed) for k in range(1, trials + 1)]
        elif method == "tpe-mo":
            records = _tpe(study, seed, trials)
        else:
            raise ValueError(f"unknown method {method!r}")
    log(f"[{method} s{seed}] {len(records)} trials in {time.perf_counter() - start:.0f} s")
    return {
        "method": method,
        "seed": seed,
        "trials": trials,
        "epochs": epochs,
        "records": records,
        "wall_s": time.perf_counter() - start,
    }


def _linear_costs(opt, seed: int) -> None:
    """The variant: the same Optimizer with ``log_costs=False`` (no CLI flag sets it), reference recomputed."""
    from dataclasses import replace

    from nas import multiobjective as mo
    from nas.optimize import sample_feasible

    opt.objectives = replace(opt.objectives, log_costs=False, offsets=())
    probe = sample_feasible(opt.space, mo.REF_SAMPLES, np.random.default_rng(seed), opt.feasible)
    limits = {c.name: c.max for c in opt.constraints if hasattr(c, "max")}
    opt._ref_value, opt._ref_costs = mo.reference_point(
        opt.objectives, [opt.known(c) for c in probe], limits=limits, value_bounds=opt.value_bounds
    )


def _ours(study, seed: int) -> list:
    from nas.storage import Storage
    from nas.trial import COMPLETE

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
                    "seconds": (t.metrics or {}).get("wall_time"),
                }
            )
    assert [r["seed"] for r in records] == [seed * SEED_STRIDE + r["trial"] for r in records]
    return records


def _tpe(study, seed: int, trials: int) -> list:
    import optuna
    from optuna.trial import TrialState

    from bench.optuna_adapter import suggest_config

    ostudy = optuna.create_study(
        directions=["maximize", "minimize", "minimize"], sampler=optuna.samplers.TPESampler(seed=seed)
    )
    records = []
    while len(records) < trials:
        trial = ostudy.ask()
        rec = run_objective(study, suggest_config(trial, study.opt.space), len(records) + 1, seed)
        records.append(rec)
        if rec["failed"]:
            ostudy.tell(trial, state=TrialState.FAIL)
        else:
            ostudy.tell(trial, [rec["val"], rec["macs"], rec["params"]])
    return records


# ------------------------------------------------------------------------------------------ analysis
def cost_refs(epochs: int, n: int = 2000) -> tuple:
    with tempfile.TemporaryDirectory() as tmp:
        study = cli_study(1, 0, epochs, Path(tmp) / "s")
        rng = np.random.default_rng(12345)
        ks = [study.opt.known(study.opt.space.sample(rng)) for _ in range(n)]
    return 1.1 * max(k["macs"] for k in ks), 1.1 * max(k["params"] for k in ks)


def _points(records, dims):
    ok = [r for r in records if not r["failed"]]
    cols = [[-r["val"] for r in ok], [math.log10(r["macs"]) for r in ok]]
    if dims == 3:
        cols.append([math.log10(r["params"]) for r in ok])
    return np.array(cols, dtype=float).T.reshape(-1, dims)


def hv_table(runs, methods, refs) -> tuple:
    from nas.hypervolume import hypervolume

    ref2 = [-REF_ACC, math.log10(refs[0])]
    ref3 = ref2 + [math.log10(refs[1])]
    every = [r for run in runs for r in run["records"]]
    best2, best3 = hypervolume(_points(every, 2), ref2), hypervolume(_points(every, 3), ref3)
    lines = [
        "| method | HV (val acc, log MACs) | HV (val acc, log MACs, log params) | front size | s / trial |",
        "|---|---|---|---|---|",
    ]
    med = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        if not rs:
            continue
        h2 = [hypervolume(_points(r["records"], 2), ref2) / best2 for r in rs]
        h3 = [hypervolume(_points(r["records"], 3), ref3) / best3 for r in rs]
        med[m] = (float(np.median(h2)), float(np.median(h3)))
        size = [len(front(r["records"])) for r in rs]
        spt = np.median([r["wall_s"] / len(r["records"]) for r in rs])
        lines.append(
            f"| {LABELS[m]} (n={len(rs)}) | {fmt_q(h2, '{:.3f}')} | {fmt_q(h3, '{:.3f}')} | "
            f"{fmt_q(size, '{:.0f}')} | {spt:.1f} |"
        )
    return lines, med


def front(records) -> list:
    """Non-dominated trials in (val acc, MACs): the accuracy-MACs front."""
    ok = sorted((r for r in records if not r["failed"]), key=lambda r: (r["macs"], -r["val"]))
    out, best = [], -math.inf
    for r in ok:
        if r["val"] > best:
            out.append(r)
            best = r["val"]
    return out


def budget_table(runs, methods) -> list:
    lines = [
        "| method | " + " | ".join(f"<= {b // 1000}k MACs: val / test" for b in BUDGETS) + " |",
        "|---|" + "---|" * len(BUDGETS),
    ]
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        if not rs:
            continue
        cells = []
        for b in BUDGETS:
            picks = [
                max((x for x in front(r["records"]) if x["macs"] <= b), key=lambda x: x["val"], default=None)
                for r in rs
            ]
            got = [p for p in picks if p is not None]
            if not got:
                cells.append("none")
                continue
            miss = f" ({len(rs) - len(got)} runs with none)" if len(got) < len(rs) else ""
            cells.append(
                f"{fmt_q([p['val'] for p in got], '{:.3f}')} / {fmt_q([p['test'] for p in got], '{:.3f}')}{miss}"
            )
        lines.append(f"| {LABELS[m]} (n={len(rs)}) | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(LABELS), choices=list(LABELS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--reuse", default=None, help="tabulate the runs of an earlier --raw file, run none")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_pareto_digits.md")))
    ap.add_argument("--raw", default=str(Path(__file__).with_name("out") / "pareto_digits_runs.json"))
    args = ap.parse_args(argv)
    command = "python -m bench.bench_pareto_digits " + " ".join(argv if argv is not None else sys.argv[1:])
    tasks = [
        {"method": m, "seed": s, "trials": args.trials, "epochs": args.epochs}
        for s in range(args.seeds)
        for m in args.methods
    ]
    t0 = time.perf_counter()
    runs = json.loads(Path(args.reuse).read_text()) if args.reuse else []
    import multiprocessing as mp

    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as ex:
        for f in as_completed([ex.submit(run_one, t) for t in ([] if args.reuse else tasks)]):
            r = f.result()
            if "error" in r:
                log(f"{r['method']} seed {r['seed']}: FAILED\n{r['error']}")
                continue
            runs.append(r)
            Path(args.raw).parent.mkdir(parents=True, exist_ok=True)
            Path(args.raw).write_text(json.dumps(runs))
    wall = time.perf_counter() - t0 if not args.reuse else sum(r["wall_s"] for r in runs) / args.workers
    refs = cost_refs(args.epochs)
    methods = [m for m in LABELS if any(r["method"] == m for r in runs)]
    hv_lines, _ = hv_table(runs, methods, refs)
    failed = sum(x["failed"] for r in runs for x in r["records"])
    from bench.bench_optimizer import machine_note

    md = [
        "# Pareto search on digits with real training: accuracy against MACs and parameters",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine_note()}. {len(runs)} runs in "
        f"{wall / 60:.1f} min, {args.workers} at a time, one torch thread each.",
        "",
        f"Each run: {args.trials} trials, every one trained for exactly {args.epochs} epochs (`--fidelity off "
        f"--epochs {args.epochs}`) on the bundled digits split (data seed 0), in the space "
        f"`bench/pareto_digits_space.yaml` (architecture only; SGD at the trainer's defaults). Seeds "
        f"0..{args.seeds - 1}; the k-th trial of seed s trains with seed s * 100003 + k in every method. "
        f"{failed} failed trials. Cells: median [25 %, 75 %] over seeds.",
        "",
    ]
    md += [f"- {n}" for n in args.note] + ([""] if args.note else [])
    md += (
        [
            "## Hypervolume at equal trials",
            "",
            f"Reference: val acc {REF_ACC}, {refs[0]:,.0f} MACs, {refs[1]:,.0f} params (1.1 x the largest of 2,000 "
            "random configs); MACs and params on a log10 scale; each run's HV divided by that of the union of "
            "every run's trials.",
            "",
        ]
        + hv_lines
        + [""]
    )
    md += (
        [
            "## Best network under a MAC budget, read off each front",
            "",
            "The most accurate (validation) trial with MACs at most the budget on each run's front; its test "
            "accuracy next to it (never seen by any search).",
            "",
        ]
        + budget_table(runs, methods)
        + [""]
    )
    Path(args.out).write_text("\n".join(md) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
