"""Multi-fidelity search on the TaskSet learning-curve tables: ours (GP over (config, resource) + ASHA,
promotions ranked by each trial's rung value blended with the GP's predicted top-rung value) against ours with fidelity off, Optuna TPE +
HyperbandPruner, Optuna TPE + SuccessiveHalvingPruner and random search + ASHA.

    .venv/bin/python -m bench.bench_multifidelity                        # 12 tasks, 10 seeds, budgets 10/30/100
    .venv/bin/python -m bench.bench_multifidelity --quick                # 3 tasks, 2 seeds: a smoke run
    .venv/bin/python -m bench.bench_multifidelity --tasks 4 --seeds 5 --methods ours tpe-hb

Setting (see bench/taskset.py): a fixed pool of 1,000 Adam configurations per task, 51 checkpoints each;
every method's proposals are snapped to the nearest unused pool member; checkpoints 1..50 are the resource
(min_resource 1, max_resource 50, eta 3: rungs 1, 3, 9, 27, 50, the same for every method). Everything is
sequential (one worker). A method is *charged the checkpoints it actually trained*: a stop-and-go segment
from rung r to r' costs r' - r (a promoted trial continues, it is never retrained), an Optuna trial costs
the steps it reported before it was pruned, a full run 50. Budgets are counted in full-run equivalents
(B x 50 checkpoints). Ours plans with its budget (once a new config could no longer reach the top rung, it
finishes its best paused trials: the best predicted top-rung value, never worse than the trial's own latest
value, as ``SegmentLoop._finish_key``), so it runs once per budget; the peers do not, so their regret at 10 and 30 is
read off their budget-100 run (what they had recorded once they had spent that much).

The pick at a budget: the trial with the lowest observed validation loss among those trained to 50; when
none reached 50 yet, among those at the highest checkpoint reached. Regret: the pick's final validation
loss minus the pool's best final validation loss (test regret likewise, on test loss).
Writes ``bench/results_multifidelity.md`` (``--out``).
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
if str(ROOT) not in sys.path:  # run from a checkout without installing; appended, so PYTHONPATH comes first
    sys.path.append(str(ROOT))

import numpy as np  # noqa: E402

from bench.common import opt_set, set_attributes  # noqa: E402
from bench.taskset import CAP, DEFAULT_DIR, MAX_STEP, Pool, load_task, task_files  # noqa: E402

MIN_STEP, ETA = 1, 3
BUDGETS = (10, 30, 100)
METHODS = ("ours", "ours-off", "tpe-hb", "tpe-sh", "random-asha")
# Run only when named: ours without finishing its best paused trials at the end; ours-x, an experiment with
# Optimizer attributes set from $BENCH_OPT_SET (bench.common.set_attributes).
# ours-finish-model / ours-finish-blend: paused trials compared for finishing by the prediction alone (the engine's
# key before it was floored at the trial's own latest value), or by a blend of the ranks of the two.
VARIANTS = ("ours-nofinish", "ours-x", "ours-finish-model", "ours-finish-blend")
# These finish their best paused trials as the budget ends: one run per budget.
PLANNERS = ("ours", "ours-x", "ours-finish-model", "ours-finish-blend")
PEERS = ("tpe-hb", "tpe-sh", "random-asha")  # the other tools; ours-off is reported beside them
LABELS = {
    "ours": "ours (multi-fidelity)",
    "ours-off": "ours (fidelity off)",
    "tpe-hb": "TPE + Hyperband",
    "tpe-sh": "TPE + SuccessiveHalving",
    "random-asha": "random + ASHA",
    "ours-nofinish": "ours, no finishing promotions",
    "ours-x": "ours with $BENCH_OPT_SET",
    "ours-finish-model": "ours, finishing key the prediction alone",
    "ours-finish-blend": "ours, finishing key blended with the own value",
}
EPS = 1e-3  # added to both medians in the ratio, so a zero regret (the pool's best found) stays finite


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ the methods
class Run:
    """One method on one task: the pool, the money spent and every observation in order."""

    def __init__(self, task, budget_steps: int):
        self.task, self.pool, self.limit = task, Pool(task.raw), budget_steps
        self.spent = 0
        self.obs: list[tuple[int, int, int, float]] = []  # (checkpoints spent after it, run, step, value seen)

    def train(self, i: int, start: int, stop: int) -> float:
        """Train run i from checkpoint ``start`` to ``stop`` (cut at the budget); the value seen at the last
        checkpoint trained (NaN: failed)."""
        stop = min(stop, start + self.limit - self.spent)
        self.spent += stop - start
        v = self.task.seen(i, stop)
        self.obs.append((self.spent, i, stop, v))
        return v

    @property
    def left(self) -> int:
        return self.limit - self.spent


def _space(pool):
    from nas.space import Float, Space

    return Space([Float(n, lo, hi, log=True) for n, lo, hi in pool.bounds], name="taskset-adam8")


def _stop_and_go(run: Run, sched, propose, rank, tell, finish_key=None):
    """The segment loop of nas/segments.py, sequential: promote a paused trial that ASHA allows (ranked by
    ``rank``), else start a new config (``propose() -> (pool index, config) | None``). With ``finish_key``
    (ours, as SegmentLoop), once the budget left cannot take a new trial to the top, the paused trial with the
    best key that can still finish goes on (``ASHA.finishing_promotion``), and once the pool is exhausted the
    best paused trial goes on to its next rung (``ASHA.exhausted_promotion``); plain ASHA (None) does neither
    and ends when the pool is exhausted."""
    rungs = sched.fidelity.rungs
    trials: dict[int, tuple[int, dict]] = {}
    while run.left > 0:
        promo = None
        if finish_key is not None:
            promo = sched.finishing_promotion(run.left, lambda tids: finish_key(tids, trials))
        promo = promo or sched.next_promotion(lambda k, tids: rank(k, tids, trials))
        got = None if promo is not None else propose(rungs[0])
        if promo is None and got is None and finish_key is not None:  # pool exhausted: ours goes on with the
            promo = sched.exhausted_promotion(lambda tids: finish_key(tids, trials))  # paused trials (SegmentLoop)
        if promo is not None:
            tid, k = promo
            sched.resume(tid)
        elif got is None:
            break  # pool exhausted and nothing to promote
        else:
            tid, k = len(trials), 0
            trials[tid] = got
            sched.start(tid)
        i, config = trials[tid]
        start = 0 if k == 0 else rungs[k - 1]
        v = run.train(i, start, rungs[k])
        if run.obs[-1][2] < rungs[k]:  # the budget ran out inside this segment
            break
        tell(config, v, rungs[k])
        if math.isnan(v):
            sched.fail(tid)
        else:
            sched.record(tid, k, v)


def run_ours(run: Run, seed: int, finish: bool = True, tweak: str = "", finish_rule: str = "cap"):
    from nas.fidelity import ASHA, Fidelity, blend_keys
    from nas.optimizer import Optimizer

    fid = Fidelity(MIN_STEP, MAX_STEP, eta=ETA)
    opt = Optimizer(_space(run.pool), direction="minimize", seed=seed, fidelity=fid)
    set_attributes(opt, tweak)
    sched = ASHA(fid, maximize=False)

    def propose(first_rung):
        (cfg,) = opt.ask(1)
        opt.forget(cfg)
        i = run.pool.snap(cfg)
        if i is None:
            return None
        config = run.pool.config(i)
        opt.add_pending(config, resource=first_rung)
        return i, config

    def rank(k, tids, trials):  # as SegmentLoop._rank for a minimised objective without a score: own value
        # at the rung blended with the predicted top-rung value (nas.fidelity.blend_keys)
        own = sched._default_rank(k, tids)
        pred = opt.predict_top([trials[t][1] for t in tids])
        return own if pred is None else blend_keys(own, [-p for p in pred])

    def finish_key(tids, trials):
        """As SegmentLoop._finish_key ("cap"): the predicted top-rung value (minimised), never worse than the
        trial's own latest rung value; "model": the prediction alone; "blend": the promotions' rank blend."""
        pred = opt.predict_top([trials[t][1] for t in tids])
        if pred is None:
            return None
        if finish_rule == "model":
            return [-p for p in pred]
        own = [sched.latest(t) for t in tids]
        if finish_rule == "cap":
            return [-min(p, v) for p, v in zip(pred, own)]
        if finish_rule == "blend":  # the own values taken at different rungs
            return blend_keys([-v for v in own], [-p for p in pred])
        raise ValueError(f"finish_rule: 'model', 'cap' or 'blend', got {finish_rule!r}")

    _stop_and_go(
        run, sched, propose, rank, lambda c, v, r: opt.tell(c, v, resource=r), finish_key=finish_key if finish else None
    )


def run_random_asha(run: Run, seed: int):
    from nas.fidelity import ASHA, Fidelity

    sched = ASHA(Fidelity(MIN_STEP, MAX_STEP, eta=ETA), maximize=False)
    order = iter(np.random.default_rng(seed).permutation(len(run.pool.raw)))

    def propose(_):
        i = next(order, None)
        return None if i is None else (run.pool.take(int(i)), {})

    _stop_and_go(run, sched, propose, lambda k, tids, trials: sched._default_rank(k, tids), lambda c, v, r: None)


def run_ours_off(run: Run, seed: int):
    from nas.optimizer import Optimizer

    opt = Optimizer(_space(run.pool), direction="minimize", seed=seed)
    while run.left > 0:
        (cfg,) = opt.ask(1)
        opt.forget(cfg)
        i = run.pool.snap(cfg)
        if i is None:
            break
        config = run.pool.config(i)
        v = run.train(i, 0, MAX_STEP)
        if run.obs[-1][2] < MAX_STEP:
            break
        opt.tell(config, v)  # NaN is recorded as a failure


def run_optuna(run: Run, seed: int, pruner_name: str):
    import optuna
    from optuna.trial import TrialState

    if pruner_name == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=MIN_STEP, max_resource=MAX_STEP, reduction_factor=ETA)
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_STEP, reduction_factor=ETA)
    # A fixed study name: HyperbandPruner assigns brackets by hashing it with the trial number, so a random
    # (default) name would make a seeded run irreproducible.
    study = optuna.create_study(
        study_name=f"taskset-{pruner_name}-{seed}",
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
    )
    bounds = run.pool.bounds
    while run.left > 0:
        trial = study.ask()
        cfg = {n: trial.suggest_float(n, lo, hi, log=True) for n, lo, hi in bounds}
        i = run.pool.snap(cfg)  # TPE keeps the values it suggested; the run is the nearest unused member
        if i is None:
            study.tell(trial, state=TrialState.FAIL)
            break
        state, v = None, math.nan
        for step in range(1, MAX_STEP + 1):
            if run.left <= 0:
                state = TrialState.PRUNED  # the budget is spent: the study ends here
                break
            v = run.train(i, step - 1, step)
            if math.isnan(v):
                state = TrialState.FAIL
                break
            trial.report(v, step)
            if step < MAX_STEP and trial.should_prune():
                state = TrialState.PRUNED
                break
        if state is None:
            study.tell(trial, v)
        else:
            study.tell(trial, state=state)


RUNNERS = {
    "ours": run_ours,
    "ours-nofinish": lambda r, s: run_ours(r, s, finish=False),
    "ours-x": lambda r, s: run_ours(r, s, tweak=opt_set()),
    "ours-finish-model": lambda r, s: run_ours(r, s, finish_rule="model"),
    "ours-finish-blend": lambda r, s: run_ours(r, s, finish_rule="blend"),
    "ours-off": run_ours_off,
    "random-asha": run_random_asha,
    "tpe-hb": lambda r, s: run_optuna(r, s, "hyperband"),
    "tpe-sh": lambda r, s: run_optuna(r, s, "sh"),
}


# ------------------------------------------------------------------------------------------ picks, regrets
def pick(obs, budget_steps: int) -> int | None:
    """The pool index a method would hand back after spending ``budget_steps`` (see the module docstring)."""
    best: dict[int, float] = {}  # per run: the value seen at its highest checkpoint
    top: dict[int, int] = {}
    for spent, i, step, v in obs:
        if spent > budget_steps:
            break
        if step >= top.get(i, -1):
            top[i], best[i] = step, v
    finite = {i: v for i, v in best.items() if not math.isnan(v)}
    if not finite:
        return None
    high = max(top[i] for i in finite)
    return min((i for i in finite if top[i] == high), key=lambda i: (finite[i], i))


def regrets(task, obs, budget_steps: int) -> tuple[float, float]:
    i = pick(obs, budget_steps)
    if i is None:
        return CAP - task.best_valid, CAP - task.best_test
    return task.final(i, "valid") - task.best_valid, task.final(i, "test") - task.best_test


# ------------------------------------------------------------------------------------------ workers
_TASKS: dict = {}


def _init_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")


def run_one(job: dict) -> dict:
    try:
        path = Path(job["path"])
        if path not in _TASKS:
            _TASKS.clear()
            _TASKS[path] = load_task(path)
        task = _TASKS[path]
        run = Run(task, max(BUDGETS) * MAX_STEP if job.get("budget") is None else job["budget"] * MAX_STEP)
        t0 = time.perf_counter()
        RUNNERS[job["method"]](run, job["seed"])
        out = {
            **job,
            "task": task.name,
            "wall_s": time.perf_counter() - t0,
            "spent": run.spent,
            "configs": len({i for _, i, _, _ in run.obs}),
        }
        if job["method"] == "ours-x":  # the experiment's settings travel with its rows
            out["opt_set"] = opt_set()
        for b in job["budgets"]:
            rv, rt = regrets(task, run.obs, b * MAX_STEP)
            spent = max([s for s, *_ in run.obs if s <= b * MAX_STEP], default=0)
            out[f"b{b}"] = {
                "valid": rv,
                "test": rt,
                "spent": spent,
                "configs": len({i for s, i, _, _ in run.obs if s <= b * MAX_STEP}),
            }
        return out
    except Exception:
        return {**job, "error": traceback.format_exc(limit=6)}


# ------------------------------------------------------------------------------------------ report
def _q(xs):
    a = np.asarray(xs, dtype=float)
    return float(np.median(a)), float(np.quantile(a, 0.25)), float(np.quantile(a, 0.75))


def _fmt(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.3g}"


def summarise(results: list[dict], methods, budgets, tasks) -> tuple[list[str], dict]:
    by = {}
    for r in results:
        if "error" not in r:
            by.setdefault((r["task"], r["method"]), []).append(r)
    lines, ratios = [], {}
    for b in budgets:
        lines += [
            f"### Budget {b} full-run equivalents ({b * MAX_STEP} checkpoints)",
            "",
            "Validation regret, median [25 %, 75 %] over seeds (lower is better); last column: ours' median "
            "over the best peer's (TPE + Hyperband, TPE + SH, random + ASHA), each + "
            f"{EPS:g}.",
            "",
            "| task | " + " | ".join(LABELS[m] for m in methods) + " | ours / best peer |",
            "| --- |" + " --- |" * (len(methods) + 1),
        ]
        logs, logs_all = [], []
        for t in tasks:
            meds, cells = {}, []
            for m in methods:
                rs = [r for r in by.get((t, m), []) if f"b{b}" in r]
                if not rs:
                    cells.append("-")
                    continue
                med, lo, hi = _q([r[f"b{b}"]["valid"] for r in rs])
                meds[m] = med
                cells.append(f"{_fmt(med)} [{_fmt(lo)}, {_fmt(hi)}]")
            ratio = ""
            peers = [meds[m] for m in PEERS if m in meds]
            if "ours" in meds and peers:
                q = (meds["ours"] + EPS) / (min(peers) + EPS)
                logs.append(math.log(q))
                ratio = f"{q:.2f}"
                allp = peers + ([meds["ours-off"]] if "ours-off" in meds else [])
                logs_all.append(math.log((meds["ours"] + EPS) / (min(allp) + EPS)))
            lines.append(f"| {t} | " + " | ".join(cells) + f" | {ratio} |")
        if logs:
            ratios[b] = (math.exp(np.mean(logs)), math.exp(np.mean(logs_all)), len(logs))
            lines += [
                "",
                f"Geometric mean over {len(logs)} tasks of ours / best peer: **{ratios[b][0]:.2f}** "
                f"(target <= 0.7); counting ours (fidelity off) as a peer too: {ratios[b][1]:.2f}.",
            ]
        # test regret and spending, medians over tasks of per-task medians
        lines += [
            "",
            "Median over tasks of the per-task median: test regret, checkpoints charged, configs tried:",
            "",
            "| method | test regret | checkpoints charged | configs tried |",
            "| --- | --- | --- | --- |",
        ]
        for m in methods:
            at_b = {t: [r[f"b{b}"] for r in by.get((t, m), []) if f"b{b}" in r] for t in tasks}
            per = [
                (_q([x["test"] for x in xs])[0], _q([x["spent"] for x in xs])[0], _q([x["configs"] for x in xs])[0])
                for xs in at_b.values()
                if xs
            ]
            if per:
                a = np.array(per)
                lines.append(
                    f"| {LABELS[m]} | {np.median(a[:, 0]):.4f} | {np.median(a[:, 1]):.0f} | {np.median(a[:, 2]):.0f} |"
                )
        lines.append("")
    return lines, ratios


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DIR))
    ap.add_argument("--tasks", type=int, default=12, help="the first N tasks in name order")
    ap.add_argument(
        "--task-index", type=int, nargs="+", metavar="I", help="only these tasks (0-11, in name order), after --tasks"
    )
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + VARIANTS)
    ap.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 tasks, 2 seeds")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_multifidelity.md"))
    ap.add_argument("--log", default="multifidelity_runs.jsonl", help="one JSON line per finished run")
    ap.add_argument(
        "--report",
        metavar="JSONL",
        help="no runs: write the tables from a --log file (whole "
        "(task, seed) groups only; e.g. after a run was stopped)",
    )
    a = ap.parse_args(argv)
    if a.quick:
        a.tasks, a.seeds = 3, 2
    files = task_files(a.data)[: a.tasks]
    if a.task_index:
        files = [f for i, f in enumerate(files) if i in set(a.task_index)]
    budgets = sorted(a.budgets)
    # Seed by seed, task by task: a run cut short (--report) still holds whole (task, seed) groups.
    # A method that plans with its budget (PLANNERS) runs once per budget; the others run once, at the largest,
    # and the smaller budgets are read off that run.
    jobs = [
        {"path": str(f), "method": m, "seed": s, "budget": b, "budgets": [b] if m in PLANNERS else budgets}
        for s in range(a.first_seed, a.first_seed + a.seeds)
        for f in files
        for m in a.methods
        for b in (budgets if m in PLANNERS else budgets[-1:])
    ]
    t0 = time.perf_counter()
    results = []
    if a.report:
        results = [json.loads(line) for line in Path(a.report).read_text().splitlines() if line.strip()]
        groups: dict = {}
        for r in results:
            groups.setdefault((r["path"], r["seed"]), set()).add(r["method"])
        whole = {g for g, ms in groups.items() if ms >= set(a.methods)}
        results = [r for r in results if (r["path"], r["seed"]) in whole and r["method"] in a.methods]
        files = [f for f in files if any(g[0] == str(f) for g in whole)]
        wall = sum(r.get("wall_s", 0.0) for r in results) / max(1, a.workers)
        a.seeds = len({g[1] for g in whole})
        log(f"report from {a.report}: {len(whole)} complete (task, seed) groups")
    else:
        log(f"{len(jobs)} runs on {a.workers} worker(s); each result appended to {a.log}")
        with ProcessPoolExecutor(a.workers, initializer=_init_worker) as ex, open(a.log, "a") as jl:
            futs = [ex.submit(run_one, j) for j in jobs]
            for n, fut in enumerate(as_completed(futs), 1):
                r = fut.result()
                results.append(r)
                jl.write(json.dumps(r) + "\n")
                jl.flush()
                if "error" in r:
                    log(f"ERROR {r['method']} seed {r['seed']} {r['path']}:\n{r['error']}")
                else:
                    log(f"{n}/{len(jobs)} done, {time.perf_counter() - t0:.0f}s")
        wall = time.perf_counter() - t0
    tasks = [load_task(f).name for f in files]
    body, ratios = summarise(results, a.methods, budgets, tasks)
    errors = [r for r in results if "error" in r]
    cmd = " ".join([".venv/bin/python -m bench.bench_multifidelity"] + (argv if argv is not None else sys.argv[1:]))
    walls = {
        m: _q(
            [
                r["wall_s"]
                for r in results
                if r.get("method") == m and r.get("budget") == budgets[-1] and "error" not in r
            ]
            or [0.0]
        )[0]
        for m in a.methods
    }
    import nas

    engine = Path(nas.__file__).resolve().parent
    where = (
        "" if engine.parent == ROOT else f" (the engine imported from {engine}{os.environ.get('MF_ENGINE_NOTE', '')})"
    )
    head = [
        "# Multi-fidelity search on the TaskSet learning curves",
        "",
        f"Command: `{cmd}`{where}",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), {a.workers} worker processes with one thread each; {wall:.0f} s in all"
        + (" (sum of run times / workers: tables written by --report)." if a.report else "."),
        "",
        f"Tasks: {len(tasks)} of the 12 ({', '.join(tasks)}); seeds 0..{a.seeds - 1}; budgets "
        f"{', '.join(map(str, budgets))} full-run equivalents (x {MAX_STEP} checkpoints); min_resource {MIN_STEP}, "
        f"max_resource {MAX_STEP}, eta {ETA} for every multi-fidelity method (rungs 1, 3, 9, 27, 50). "
        "A pool of 1,000 configurations per task; proposals snapped to the nearest unused member (log scale, "
        "1 - beta for the betas; `bench/taskset.py`). Each method is charged the checkpoints it trained; the "
        "peers' smaller budgets are read off their largest-budget run; ours runs once per budget (it plans with it). "
        "Diverged runs: NaN is a "
        f"failed trial, losses are shown capped at {CAP:g}; a pick's NaN final loss counts as {CAP:g}.",
        "",
        "Median wall time of one run (largest budget): "
        + ", ".join(f"{LABELS[m]} {walls[m]:.1f} s" for m in a.methods)
        + ".",
        "",
    ]
    if errors:
        head += [
            f"**{len(errors)} runs failed** (left out of the tables): "
            + "; ".join(f"{e['method']} seed {e['seed']}" for e in errors[:5]),
            "",
        ]
    if ratios:
        head += [
            "Summary (geometric mean over tasks of ours' median regret / the best peer's): "
            + ", ".join(f"budget {b}: {r[0]:.2f}" for b, r in ratios.items())
            + " (target <= 0.7).",
            "",
        ]
    Path(a.out).write_text("\n".join(head + body) + "\n")
    log(f"wrote {a.out}")
    print("\n".join(head + body))


if __name__ == "__main__":
    main()
