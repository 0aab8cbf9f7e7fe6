"""Pareto search on NAS-Bench-201: validation accuracy against latency on four devices, hypervolume at 25, 50
and 100 trials. Ours (exact EHVI with the latency known, and its UCB variant) against random search, Optuna's
multi-objective TPE, NSGA-II and GPSampler, and BoTorch qLogNEHVI with a deterministic latency model.

    .venv/bin/python -m bench.bench_pareto                          # the run in bench/results_pareto.md
    .venv/bin/python -m bench.bench_pareto --seeds 3 --devices lat_ms_pixel3 --methods ours-ehvi random

Every run is sequential and seeded; each method sees the same seeds and budgets. Hypervolume is that of the
(validation accuracy, latency) points found, divided by the hypervolume of the whole table, with the reference
point (median accuracy of the table, worst latency of the table): the measure of ``bench/bench_optimizer.py``.
A second measure takes the latency on a log scale (reference: median accuracy, log of the worst latency),
the scale our acquisition uses by default. Writes ``bench/results_pareto.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.bench_optimizer import _init_worker, _quiet, engine_hash, fmt_q, log, machine_note  # noqa: E402
from bench.nb201 import VAL, load_nb201  # noqa: E402
from bench.problems import suggest  # noqa: E402

DEVICES = {
    "lat_ms_pixel3": "Pixel 3",
    "lat_ms_raspi4": "Raspberry Pi 4",
    "lat_ms_1080ti_1": "GTX 1080 Ti, batch 1",
    "lat_ms_fpga": "FPGA",
}
LABELS = {
    "ours-ehvi": "ours, EHVI (log latency, default)",
    "ours-ucb": "ours, HVI of the UCB (log latency)",
    "ours-ehvi-lin": "ours, EHVI (linear latency: log_costs=False)",
    "ours-ehvi-nofeat": "ours, EHVI, latency not a GP input (cost_features=False)",
    "ours-ehvi-ref": "ours, EHVI (log latency), reference accuracy given: the measure's 87.31 %",
    "random": "random",
    "tpe-mo": "Optuna TPE (2 objectives)",
    "nsga2": "Optuna NSGA-II",
    "gp-mo": "Optuna GPSampler (2 objectives)",
    "qnehvi": "BoTorch qLogNEHVI (latency known)",
    "ours-ehvi-b4-variance": "ours EHVI, batches of 4, pending by variance (BUCB)",
    "ours-ehvi-b4-fantasy": "ours EHVI, batches of 4, pending as fantasies at the mean",
}
BUDGETS = [25, 50, 100]
_NB = {}


def nb_table(path=None):
    if "nb" not in _NB:
        _NB["nb"] = load_nb201(path)
    return _NB["nb"]


def run_one(task: dict) -> dict:
    try:
        return _run_one(**task)
    except Exception:
        return {**task, "error": traceback.format_exc(limit=6)}


def _run_one(method: str, device: str, seed: int, budget: int, nb201_path=None) -> dict:
    nb = nb_table(nb201_path)
    records = []

    def record(cfg):
        r = nb.lookup(cfg)
        records.append({"value": r["val"], "lat": r[device], "row": nb.row(cfg)})
        return r["val"], r[device]

    start = time.perf_counter()
    if method.startswith("ours"):
        from nas.optimizer import Optimizer

        k = 4 if "-b4-" in method else 1
        opt = Optimizer(
            nb.space,
            seed=seed,
            objectives={"val": "maximize", "lat": "minimize"},
            known=lambda c: {"lat": nb.lookup(c)[device]},
            value_bounds=(0.0, 100.0),
            pareto="ucb" if method == "ours-ucb" else "ehvi",
            log_costs=not method.endswith("-lin"),
            cost_features=not method.endswith("-nofeat"),
            pending="variance" if method.endswith("variance") else "fantasy",
            reference={"val": float(np.median(nb.columns[VAL]))} if method.endswith("-ref") else None,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while len(records) < budget:
                batch = opt.ask(min(k, budget - len(records)))
                for cfg in batch:  # a batch is told after all of it is asked: parallel workers
                    opt.tell(cfg, record(cfg)[0])
    elif method == "random":
        rng = np.random.default_rng(seed)
        for _ in range(budget):
            record(nb.space.sample(rng))
    elif method in ("tpe-mo", "nsga2", "gp-mo"):
        import optuna

        _quiet()
        sampler = {
            "tpe-mo": optuna.samplers.TPESampler,
            "nsga2": optuna.samplers.NSGAIISampler,
            "gp-mo": optuna.samplers.GPSampler,
        }[method](seed=seed)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        for _ in range(budget):
            trial = study.ask()
            study.tell(trial, list(record(suggest(trial, nb.space))))
    elif method == "qnehvi":
        _run_qnehvi(nb, device, seed, budget, record)
    else:
        raise ValueError(f"unknown method {method!r}")
    return {
        "method": method,
        "device": device,
        "seed": seed,
        "budget": budget,
        "records": records,
        "wall_s": time.perf_counter() - start,
    }


def _run_qnehvi(nb, device, seed, budget, record, n_init=10, n_choices=2000):
    """BoTorch: a SingleTaskGP on accuracy (one-hot edges), the latency a GenericDeterministicModel that
    looks the table up, qLogNEHVI maximised over ``n_choices`` random unevaluated cells per step."""
    import torch
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.model import ModelList
    from botorch.models.deterministic import GenericDeterministicModel
    from botorch.models.transforms import Standardize
    from botorch.optim import optimize_acqf_discrete
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(seed)
    lat_all = torch.tensor(nb.columns[device], dtype=torch.double)
    lat_max = float(lat_all.max())
    row_of = torch.tensor([int(cid, 5) for cid in nb.config_ids], dtype=torch.long)  # base-5 id -> row
    inv = torch.empty_like(row_of)
    inv[row_of] = torch.arange(len(row_of))
    pow5 = torch.tensor([5 ** (5 - i) for i in range(6)], dtype=torch.long)

    def encode(rows):  # (n,) table rows -> (n, 30) one-hot
        ids = torch.tensor([int(nb.config_ids[r], 5) for r in rows])
        digits = (ids[:, None] // pow5) % 5
        return torch.nn.functional.one_hot(digits, 5).reshape(len(rows), 30).double()

    def neg_lat(X):  # (..., 30) -> (..., 1): minus the latency, scaled to [-1, 0)
        digits = X.reshape(*X.shape[:-1], 6, 5).argmax(-1)
        return -(lat_all[inv[(digits * pow5).sum(-1)]] / lat_max).unsqueeze(-1)

    rng = np.random.default_rng(seed)
    n = len(nb.config_ids)
    seen = []
    for r in rng.choice(n, size=n_init, replace=False):
        seen.append(int(r))
        record(nb.config(int(r)))
    ref = torch.tensor([float(np.median(nb.columns[VAL])) / 100.0, -1.0], dtype=torch.double)
    while len(seen) < budget:
        X = encode(seen)
        y = torch.tensor([nb.columns[VAL][r] / 100.0 for r in seen], dtype=torch.double).unsqueeze(-1)
        gp = SingleTaskGP(X, y, outcome_transform=Standardize(m=1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        model = ModelList(gp, GenericDeterministicModel(neg_lat, num_outputs=1))
        acqf = qLogNoisyExpectedHypervolumeImprovement(model=model, ref_point=ref, X_baseline=X, prune_baseline=True)
        free = np.setdiff1d(rng.choice(n, size=n_choices, replace=False), seen)
        cand, _ = optimize_acqf_discrete(acqf, q=1, choices=encode(free.tolist()), max_batch_size=512)
        digits = cand[0].reshape(6, 5).argmax(-1)
        r = int(inv[int((digits * pow5).sum())])
        seen.append(r)
        record(nb.config(r))


# ------------------------------------------------------------------------------------------ analysis
def hv_measures(nb, device):
    from nas.hypervolume import hypervolume

    val, lat = nb.columns[VAL], nb.columns[device]
    ref_lin = np.array([-float(np.median(val)), float(lat.max())])
    ref_log = np.array([-float(np.median(val)), float(np.log(lat.max()))])

    def measure(v, lt):
        v, lt = np.asarray(v), np.asarray(lt)
        return (hypervolume(np.c_[-v, lt], ref_lin), hypervolume(np.c_[-v, np.log(lt)], ref_log))

    table = _table_front(val, lat)
    hv_lin, hv_log = measure(*table)
    return lambda v, lt: tuple(x / t for x, t in zip(measure(v, lt), (hv_lin, hv_log)))


def _table_front(val, lat):
    order = np.argsort(lat, kind="stable")
    best = np.maximum.accumulate(val[order])
    keep = np.r_[True, best[1:] > best[:-1]]
    return val[order][keep], lat[order][keep]


def tables(runs, methods, devices, nb) -> tuple:
    md, summary = [], {}
    for dev in devices:
        measure = hv_measures(nb, dev)
        md += [
            f"### {DEVICES.get(dev, dev)} (`{dev}`)",
            "",
            "| method | HV @25 | HV @50 | HV @100 | log-latency HV @100 | s / trial |",
            "|---|---|---|---|---|---|",
        ]
        for m in methods:
            rs = [r for r in runs if r["method"] == m and r["device"] == dev and "error" not in r]
            if not rs:
                continue
            hv = {
                b: [measure([x["value"] for x in r["records"][:b]], [x["lat"] for x in r["records"][:b]]) for r in rs]
                for b in BUDGETS
            }
            summary[(m, dev)] = {b: [h[0] for h in hv[b]] for b in BUDGETS}
            cells = [fmt_q([h[0] for h in hv[b]]) for b in BUDGETS] + [fmt_q([h[1] for h in hv[100]])]
            cells.append(f"{np.median([r['wall_s'] / len(r['records']) for r in rs]):.3f}")
            md.append(f"| {LABELS[m]} (n={len(rs)}) | " + " | ".join(cells) + " |")
        md.append("")
    return md, summary


def wins_losses(summary, ours, peers, devices) -> list:
    lines = [
        f"Median HV of `{ours}` against each peer's median, per device and budget (W: ours higher, "
        f"L: lower, =: within 0.002):",
        "",
        "| peer | " + " | ".join(f"{DEVICES.get(d, d)} @{b}" for d in devices for b in BUDGETS) + " |",
        "|---|" + "---|" * (len(devices) * len(BUDGETS)),
    ]
    for p in peers:
        cells = []
        for d in devices:
            for b in BUDGETS:
                if (ours, d) not in summary or (p, d) not in summary:
                    cells.append("-")
                    continue
                diff = np.median(summary[(ours, d)][b]) - np.median(summary[(p, d)][b])
                cells.append("=" if abs(diff) <= 0.002 else ("W" if diff > 0 else "L") + f" {diff:+.3f}")
        lines.append(f"| {LABELS[p]} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--devices", nargs="+", default=list(DEVICES), choices=list(DEVICES))
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["ours-ehvi", "ours-ucb", "ours-ehvi-lin", "random", "tpe-mo", "nsga2"],
        choices=list(LABELS),
    )
    ap.add_argument("--plan", default=None, help="JSON list of [method, device, n_seeds]: overrides the grid")
    ap.add_argument("--nb201", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--reuse",
        nargs="+",
        default=[],
        help="runs from earlier --raw files, kept where method/device/seed match (a later file wins)",
    )
    ap.add_argument("--report-only", action="store_true", help="with --reuse: tabulate the runs found, run none")
    ap.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line for the header (e.g. the commands that made the reused runs)",
    )
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_pareto.md")))
    ap.add_argument("--raw", default=str(Path(__file__).with_name("out") / "pareto_runs.json"))
    args = ap.parse_args(argv)
    command = "python -m bench.bench_pareto " + " ".join(argv if argv is not None else sys.argv[1:])
    nb = nb_table(args.nb201)
    engine = engine_hash()
    plan = json.loads(args.plan) if args.plan else [[m, d, args.seeds] for m in args.methods for d in args.devices]
    tasks = [
        {"method": m, "device": d, "seed": s, "budget": BUDGETS[-1], "nb201_path": str(nb.path)}
        for m, d, n in plan
        for s in range(n)
    ]
    runs = []
    if args.reuse:
        old = {
            (r["method"], r["device"], r["seed"]): r
            for f in args.reuse
            if Path(f).exists()
            for r in json.loads(Path(f).read_text())
            if "error" not in r
        }
        runs = [
            old[(t["method"], t["device"], t["seed"])] for t in tasks if (t["method"], t["device"], t["seed"]) in old
        ]
        tasks = [t for t in tasks if (t["method"], t["device"], t["seed"]) not in old]
        log(f"reusing {len(runs)} runs")
        if args.report_only:
            tasks = []
    slow_first = {"qnehvi": 0, "gp-mo": 1}
    if not args.plan:  # a --plan runs in its own order
        tasks.sort(key=lambda t: slow_first.get(t["method"], 2 if t["method"].startswith("ours") else 3))
    t0 = time.perf_counter()
    if tasks:
        import multiprocessing as mp

        log(f"{len(tasks)} runs on {args.workers} workers")
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as ex:
            futs = [ex.submit(run_one, t) for t in tasks]
            for i, f in enumerate(as_completed(futs), 1):
                r = f.result()
                runs.append(r)
                if "error" in r:
                    log(f"[{i}/{len(tasks)}] {r['method']} {r['device']} seed {r['seed']}: FAILED\n{r['error']}")
                else:
                    log(f"[{i}/{len(tasks)}] {r['method']} {r['device']} seed {r['seed']}: {r['wall_s']:.1f} s")
                Path(args.raw).parent.mkdir(parents=True, exist_ok=True)
                Path(args.raw).write_text(json.dumps(runs))  # after every run: a stopped run keeps its results
    methods = [m for m in LABELS if any(r["method"] == m for r in runs)]
    devices = [d for d in DEVICES if any(r["device"] == d for r in runs)]
    md_tables, summary = tables(runs, methods, devices, nb)
    seeds_of = {}
    for r in runs:
        seeds_of.setdefault((r["method"], r["device"]), set()).add(r["seed"])
    md = [
        "# Pareto search on NAS-Bench-201: accuracy against latency on four devices",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine_note()}. Engine sha `{engine}` "
        f"(bench/bench_optimizer.py's digest). {len(tasks)} runs in {time.perf_counter() - t0:.0f} s, "
        f"{args.workers} at a time, one thread each.",
        "",
        "Each run: 100 sequential trials on the table (one look-up = one trial), seeds 0..n-1 (n in each row). "
        "HV = hypervolume of the (validation accuracy, latency) points found / hypervolume of the whole table, "
        "reference (median accuracy 87.31 %, the device's worst latency); the log-latency HV uses log(latency) "
        "with reference log(worst latency). Cells: median [25 %, 75 %] over seeds. Ours: "
        "`Optimizer(space, objectives={'val': 'maximize', 'lat': 'minimize'}, known=latency lookup, "
        "value_bounds=(0, 100), seed=s)` with its defaults (10 space-filling warm-up trials, copula warp, "
        "costs as log(latency + its 5 % quantile over the space), reference point: 1.1 x the worst latency, "
        "and the median of the accuracies observed so far, recomputed at each proposal; the latency, as "
        "log(latency + offset) scaled to [0, 1], is also a GP input: `cost_features=True`); Optuna samplers at "
        "their defaults (`seed=s`); BoTorch "
        "qLogNEHVI with 10 random initial cells, a SingleTaskGP on one-hot edges, the latency as a "
        "`GenericDeterministicModel`, given the measure's own reference point, maximised over 2,000 random "
        "unevaluated cells per step.",
        "",
    ]
    md += [f"- {n}" for n in args.note] + ([""] if args.note else [])
    failures = [r for r in runs if "error" in r]
    if failures:
        md += [
            f"- {len(failures)} run(s) failed: "
            + ", ".join(f"{r['method']} {r['device']} {r['seed']}" for r in failures),
            "",
        ]
    md += ["## Hypervolume", ""] + md_tables
    ours = "ours-ehvi"
    peers = [m for m in ("random", "tpe-mo", "nsga2", "gp-mo", "qnehvi") if m in methods]
    md += ["## Wins and losses", ""] + wins_losses(summary, ours, peers, devices)
    for variant in ("ours-ucb", "ours-ehvi-lin", "ours-ehvi-ref"):
        if variant in methods:
            md += wins_losses(summary, variant, peers, devices)
    Path(args.out).write_text("\n".join(md) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
