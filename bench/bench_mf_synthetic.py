"""Multi-fidelity engine check on a synthetic learning-curve problem: ours (ASHA + GP over (config, epochs))
against ours with fidelity off, at an equal epoch budget (10 full trainings of 27 epochs), same seeds.

    .venv/bin/python -m bench.bench_mf_synthetic --seeds 8        # -> bench/results_mf_synthetic.md

The curve ``acc(c, e) = final(c) * (1 - exp(-rate(c) e / 27))`` has its best finisher (z = 0.2) among the
slow starters, so early stopping on raw rung values alone would mislead. Regret: ``0.9 - final(pick)``,
the pick being the best complete (top-rung) trial. A sanity check of the engine, not the issue's benchmark
(the taskset tables and real training are bench/bench_taskset*).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nas.fidelity import Fidelity
from nas.optimizer import Optimizer
from nas.space import Float, Space
from nas.storage import Storage
from nas.study import Budget, Study

OUT = Path(__file__).parent / "results_mf_synthetic.md"
SPACE = Space([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0), Float("z", 0.0, 1.0)])
TOP = 27


def final(c):
    return 0.9 - (c["x"] - 0.3) ** 2 - 0.5 * (c["y"] - 0.6) ** 2 - 0.3 * (c["z"] - 0.2) ** 2


def acc(c, e):
    return final(c) * (1 - math.exp(-(1 + 4 * c["z"]) * e / TOP))  # fast starters are not the best finishers


def mf_objective(spec):
    c, r = spec["config"], spec["resource_to"]
    curve = [{"epoch": e, "val_acc": acc(c, e)} for e in range(spec["resource_from"] + 1, r + 1)]
    return {"value": acc(c, r), "metrics": {"curve": curve}, "checkpoint": b"-", "resource": r}


def full_objective(spec):
    return {"value": acc(spec["config"], TOP)}


def run(name: str, seed: int, trials: int) -> tuple[float, float, int]:
    folder = Path(tempfile.mkdtemp(prefix="bench_mf_"))
    try:
        fid = Fidelity(1, TOP, 3) if name == "multi-fidelity" else None
        opt = Optimizer(SPACE, seed=seed, n_warmup=4, fidelity=fid)
        obj = mf_objective if fid else full_objective
        Study(folder / "s", optimizer=opt, objective=obj, budget=Budget(trials=trials)).run()
        with Storage(folder / "s" / "study.db", read_only=True) as st:
            ts = st.trials()
        best = max((t for t in ts if t.status == "complete"), key=lambda t: t.value)
        epochs = sum(t.resource for t in ts) if fid else TOP * len(ts)
        return 0.9 - final(best.config), epochs, len(ts)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--trials", type=int, default=10, help="budget in full trainings")
    args = ap.parse_args()
    rows = []
    for name in ("multi-fidelity", "fidelity off"):
        t0 = time.perf_counter()
        out = [run(name, s, args.trials) for s in range(args.seeds)]
        reg, ep, n = (np.array(v, dtype=float) for v in zip(*out))
        q = np.percentile(reg, [25, 50, 75])
        rows.append(
            f"| {name} | {q[0]:.4f} / {q[1]:.4f} / {q[2]:.4f} | {np.median(ep):.0f} | {np.median(n):.0f} | "
            f"{(time.perf_counter() - t0) / args.seeds:.1f} |"
        )
    text = "\n".join(
        [
            "# Multi-fidelity engine: synthetic learning curves",
            "",
            "`" + " ".join([".venv/bin/python -m bench.bench_mf_synthetic"] + sys.argv[1:]) + "`",
            "",
            f"Budget {args.trials} full trainings of {TOP} epochs (eta 3, rungs 1/3/9/27), seeds 0..{args.seeds - 1}, "
            "in-process, instant objective.",
            "",
            "| search | regret q25 / median / q75 | epochs trained (median) | trials (median) | s per run |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
