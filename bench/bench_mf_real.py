"""Multi-fidelity search with real training (issue 10, benchmark 2): the same trainer for every method, so
only the search differs. Ours (``nas search``, multi-fidelity) vs ours with ``--fidelity off`` vs Optuna
TPE + HyperbandPruner, at equal total epochs trained.

    nice -n 5 .venv/bin/python -m bench.bench_mf_real                       # digits, 3 seeds, 8 full runs
    nice -n 5 .venv/bin/python -m bench.bench_mf_real --dataset cifar10-dev --subsample 2000 --image-size 16
    .venv/bin/python -m bench.bench_mf_real --quick                         # 2 trials of 1 epoch: a smoke run

Setting. The space is small (``nas.api.small_cnn_space()`` without its ``epochs``: up to two narrow stages,
widths 8-16, training hyper-parameters as the shipped space), written to a JSON file and passed as
``--space``. The run length is the preset's (digits: max_epochs 27, min_epochs 1, eta 3: rungs 1/3/9/27).
Each run is one process, one worker, one intra-op thread; ``--jobs`` runs go side by side.

- ``ours`` / ``ours-off``: exactly ``nas search --dataset D --space S --trials B --seed s --fidelity on|off
  --workers 1 --quiet`` (``nas.cli_wiring.make_study`` then ``Study.run``), with the study's objective
  wrapped by a recorder that logs every segment it trains (trial, epochs from/to, value, curve) in order.
  ``--trials B`` buys B x max_epochs epochs in both modes (with fidelity on the last segment may overrun
  it by at most one segment; it is charged).
- ``tpe-hb``: Optuna ``TPESampler(seed)`` + ``HyperbandPruner(min_resource, max_resource=max_epochs,
  reduction_factor=eta)``, the same space (``bench.optuna_adapter.suggest_config``), the same trial runner
  (``trainers.runner.run_trial``, full schedule over max_epochs, same data, same augment), reporting the
  score of the validation accuracy after every epoch and stopping when pruned; it stops asking once the
  epochs trained reach B x max_epochs (the last trial is cut there).

Score: the data set's default ``mnas`` score (``nas.api.DEFAULT_TARGETS``), the same for all. Every method is
charged the epochs it actually trained. The pick at E epochs: the best-scoring trial trained to max_epochs
among those finished by then; its test accuracy and MACs are reported. Every run is appended, as it
finishes, to ``bench/out/mf_real_runs.jsonl`` (git-ignored; one line per run, holding each segment it trained
with its validation curve); the table goes to ``bench/results_mf_real.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from argparse import Namespace
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing; appended, so PYTHONPATH comes first
    sys.path.append(str(ROOT))

import numpy as np  # noqa: E402

from bench.common import finish_results, log, opt_set, set_attributes  # noqa: E402

DEFAULT_METHODS = ("ours", "ours-off", "tpe-hb")
METHODS = DEFAULT_METHODS + ("ours-feat", "ours-x")  # ablations, run when asked for (ours-x: see run_ours)
LABELS = {
    "ours": "ours (multi-fidelity)",
    "ours-off": "ours (--fidelity off)",
    "tpe-hb": "TPE + Hyperband",
    "ours-feat": "ours, MACs and params as GP inputs",
    "ours-x": "ours with $BENCH_OPT_SET",
}
CIFAR_DEV = Path("/work/shared/datasets/cifar10-dev")


# ------------------------------------------------------------------------------------------ the setting
def space_file(folder: Path) -> Path:
    from nas.api import small_cnn_space

    path = folder / "space.json"
    small_cnn_space(epochs=None).save(path)
    return path


def subsample_folder(src: Path, dst: Path, n: int, seed: int = 0) -> Path:
    """An ImageFolder of ``n`` images of ``src/train`` (balanced over classes, symlinked), plus its test/."""
    rng = random.Random(seed)
    classes = sorted(p.name for p in (src / "train").iterdir() if p.is_dir())
    per = max(1, n // len(classes))
    for split, k in (("train", per), ("test", max(1, per // 4))):
        for c in classes:
            files = sorted((src / split / c).iterdir())
            (dst / split / c).mkdir(parents=True, exist_ok=True)
            for f in rng.sample(files, min(k, len(files))):
                os.symlink(f, dst / split / c / f.name)
    return dst


def data_options(opts) -> list[str]:
    if opts.dataset == "digits":
        return ["--dataset", "digits"]
    return ["--dataset", "imagefolder", "--data-dir", str(opts.data_dir)] + (
        ["--image-size", str(opts.image_size)] if opts.image_size else []
    )


# ------------------------------------------------------------------------------------------ ours
class Recorder:
    """Wraps a study's objective: every segment it trains, in the order trained, goes to ``self.events``."""

    def __init__(self, inner):
        self.inner, self.events = inner, []

    def __call__(self, spec: dict) -> dict:
        start = int(spec.get("resource_from") or 0)
        t0 = time.perf_counter()
        try:
            out = self.inner(spec)
        except Exception as e:
            to = int(spec.get("resource_to") or spec.get("epochs") or 0)
            self.events.append(
                {
                    "trial": spec["trial_id"],
                    "from": start,
                    "to": to,
                    "value": None,
                    "error": f"{type(e).__name__}: {e}",
                    "wall": time.perf_counter() - t0,
                }
            )
            raise
        m = out.get("metrics", {})
        self.events.append(
            {
                "trial": spec["trial_id"],
                "from": start,
                "to": int(out.get("resource") or m["epoch"]),
                "value": float(out["value"]),
                "test_acc": m.get("test_acc"),
                "curve": [round(c["val_acc"], 5) for c in m.get("curve", [])],
                "wall": time.perf_counter() - t0,
            }
        )
        return out


def run_ours(opts, method: str, seed: int, work: Path) -> dict:
    from nas.cli import build_parser
    from nas.cli_wiring import make_study
    from nas.report import load_study

    argv = [
        "search",
        *data_options(opts),
        "--space",
        str(opts.space),
        "--trials",
        str(opts.budget),
        "--seed",
        str(seed),
        "--out",
        str(work / "study"),
        "--quiet",
        "--workers",
        "1",
        "--fidelity",
        "off" if method == "ours-off" else "on",
    ]
    if opts.max_epochs:
        argv += ["--max-epochs", str(opts.max_epochs), "--min-epochs", str(opts.min_epochs)]
    args = build_parser().parse_args(argv)
    study, _ = make_study(args)
    if method == "ours-feat":  # the ablation: MACs and params as GP inputs (off by default on the scalar path)
        study.opt.use_cost_features()
    if method == "ours-x":  # an experiment: Optimizer attributes from $BENCH_OPT_SET (bench.common.set_attributes)
        set_attributes(study.opt, opt_set())
    rec = Recorder(study.objective)
    study.objective = rec
    study.objective_args["threads"] = 1  # two runs share the machine's two cores
    study.objective_args["save_weights"] = False
    try:
        study.run()
    finally:
        study.executor.shutdown()
    view = load_study(study.folder)
    top = int(view.meta.get("max_epochs"))
    by_id = {t.id: t for t in view.trials}
    score = study.opt.score
    for ev in rec.events:
        t = by_id[ev["trial"]]
        ev["macs"] = t.macs
        if ev["value"] is not None:
            ev["score"] = float(score(ev["value"], {"macs": t.macs, "params": t.params}))
    command = "nas " + " ".join(argv)
    if method == "ours-x":  # the experiment's settings travel with its log line
        command += f" (Optimizer attributes: BENCH_OPT_SET={opt_set()!r})"
    return {"events": rec.events, "max_epochs": top, "command": command}


# ------------------------------------------------------------------------------------------ TPE + Hyperband
def run_tpe(opts, seed: int, work: Path) -> dict:
    import optuna

    from bench.optuna_adapter import suggest_config
    from nas.api import DEFAULT_TARGETS
    from nas.fidelity import DEFAULT_ETA
    from nas.score import parse_score
    from nas.space import Space
    from search_spaces.counting import count
    from trainers.presets import get_preset
    from trainers.runner import run_trial, trial_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    preset = get_preset("digits" if opts.dataset == "digits" else "imagefolder")
    top = opts.max_epochs or preset.max_epochs
    low = opts.min_epochs if opts.max_epochs else preset.min_epochs
    space = Space.load(opts.space)
    score = parse_score("mnas", default_targets=DEFAULT_TARGETS[preset.name])
    base = {
        "dataset": preset.name,
        "data_dir": None if opts.dataset == "digits" else str(opts.data_dir),
        "download": False,
        "data_seed": seed,
        "image_size": opts.image_size if opts.dataset != "digits" else None,
        "val_fraction": 0.15,
        "test_fraction": 0.2,
        "device": None,
        "augment": preset.augment,
        "save_weights": False,
        "threads": 1,
        "precision": "auto",
        "channels_last": None,
        "max_epochs": top,
    }
    data = trial_data(base)
    shape, ncls = tuple(data.input_shape), int(data.num_classes)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=low, max_resource=top, reduction_factor=DEFAULT_ETA),
    )
    limit, spent, events = opts.budget * top, 0, []
    while spent < limit:
        trial = study.ask()
        config = suggest_config(trial, space)
        known = count(config, input_shape=shape, num_classes=ncls)
        cap = min(top, limit - spent)  # the last trial is cut at the budget

        def reporter(_spec, trial=trial, known=known, cap=cap):
            def report(epoch: int, acc: float) -> bool:
                trial.report(float(score(acc, known)), epoch)
                return epoch < cap and not trial.should_prune()

            return report

        t0 = time.perf_counter()
        try:
            out = run_trial(
                {
                    **base,
                    "trial_id": trial.number,
                    "config": config,
                    "seed": seed * 100_003 + trial.number,
                    "study_dir": None,
                    "reporter": reporter,
                }
            )
        except Exception as e:  # a diverged run: charged the epochs it was to train at most; rare
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            events.append(
                {
                    "trial": trial.number,
                    "from": 0,
                    "to": cap,
                    "value": None,
                    "error": f"{type(e).__name__}: {e}",
                    "wall": time.perf_counter() - t0,
                }
            )
            spent += cap
            continue
        m = out["metrics"]
        trained = int(out["resource"])
        spent += trained
        value = float(out["value"])
        s = float(score(value, known))
        if trained >= top:
            study.tell(trial, s)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        events.append(
            {
                "trial": trial.number,
                "from": 0,
                "to": trained,
                "value": value,
                "score": s,
                "test_acc": m.get("test_acc"),
                "macs": known["macs"],
                "curve": [round(c["val_acc"], 5) for c in m.get("curve", [])],
                "wall": time.perf_counter() - t0,
            }
        )
    return {"events": events, "max_epochs": top, "command": "optuna TPE + HyperbandPruner (bench/bench_mf_real.py)"}


# ------------------------------------------------------------------------------------------ one run
def one_run(opts, method: str, seed: int) -> dict:
    """One method on one seed, in its own process; everything it trained, in order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored after: a test calls this in its own process
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix=f"mfreal-{method}-{seed}-"))
    try:
        out = run_tpe(opts, seed, work) if method == "tpe-hb" else run_ours(opts, method, seed, work)
        return {"method": method, "seed": seed, "wall": time.time() - t0, **out}
    except Exception:
        return {"method": method, "seed": seed, "wall": time.time() - t0, "error": traceback.format_exc()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ measures
def trajectory(run: dict) -> list[tuple[int, float | None, dict | None]]:
    """After each segment: (epochs spent so far, best score among trials trained to max_epochs, that pick)."""
    spent, best, pick, out = 0, None, None, []
    for ev in run["events"]:
        spent += ev["to"] - ev["from"]
        if ev.get("score") is not None and ev["to"] >= run["max_epochs"] and (best is None or ev["score"] > best):
            best, pick = ev["score"], ev
        out.append((spent, best, pick))
    return out


def at(traj, epochs: float):
    """(best score, pick) once ``epochs`` had been spent (the last segment that ended within it)."""
    best, pick = None, None
    for spent, b, p in traj:
        if spent > epochs:
            break
        best, pick = b, p
    return best, pick


def reach(traj, target: float) -> int | None:
    """Epochs spent when the best score first reached ``target`` (None: never)."""
    for spent, b, _ in traj:
        if b is not None and b >= target - 1e-12:
            return spent
    return None


def q(values) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    a = np.percentile(v, [25, 50, 75])
    return f"{a[1]:.4f} [{a[0]:.4f}, {a[2]:.4f}]" + (f" ({len(v)}/{len(values)})" if len(v) < len(values) else "")


def qi(values) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "never"
    a = np.percentile(v, [25, 50, 75])
    return f"{a[1]:.0f} [{a[0]:.0f}, {a[2]:.0f}]" + (
        f" ({len(v)}/{len(values)} reached)" if len(v) < len(values) else ""
    )


def table(runs: list[dict], opts, command: str) -> list[str]:
    top = runs[0]["max_epochs"]
    limit = opts.budget * top
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["method"], r["seed"]): r for r in runs}
    methods = [m for m in opts.methods if any(r["method"] == m for r in runs)]
    trajs = {k: trajectory(r) for k, r in by.items()}
    marks = [limit // 9, limit // 3, 2 * limit // 3, limit]
    lines = [
        f"## {opts.dataset}",
        "",
        f"    {command}",
        "",
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores shared with other jobs; "
        f"data: {describe_data(opts)}; space: `nas.api.small_cnn_space()` without epochs; runs of {top} epochs "
        f"(rungs {'/'.join(str(r) for r in rungs(opts, top))}, eta 3{preset_note(opts, top)}); budget {opts.budget} full runs = {limit} "
        f"epochs per run; seeds {', '.join(map(str, seeds))}; score `mnas` (the preset's default). "
        "Each method is charged the epochs it actually trained. Scores: median [quartiles] over seeds of "
        "the best score among trials trained to the full length, once that many epochs were spent "
        '(`-`: none finished yet). Wall seconds (medians) are on the loaded machine; "training" is the part '
        "spent inside the trial runner, the rest is the search itself (proposals, GP fits, storage).",
        "",
    ]
    lines += [
        "### Best validation score at equal epochs",
        "",
        "| method | " + " | ".join(f"{e} epochs" for e in marks) + " | epochs charged | wall s | of it training s |",
        "|---|" + "---:|" * (len(marks) + 3),
    ]
    for m in methods:
        row = [q([at(trajs[(m, s)], e)[0] for s in seeds if (m, s) in trajs]) for e in marks]
        spent = [trajs[(m, s)][-1][0] for s in seeds if (m, s) in trajs and trajs[(m, s)]]
        wall = [by[(m, s)]["wall"] for s in seeds if (m, s) in by]
        train = [sum(e["wall"] for e in by[(m, s)]["events"]) for s in seeds if (m, s) in by]
        lines.append(
            f"| {LABELS[m]} | " + " | ".join(row) + f" | {qi(spent)} | {np.median(wall):.0f} | {np.median(train):.0f} |"
        )
    steps = [top * k for k in range(1, opts.budget + 1)]
    lines += [
        "",
        "Median best score as epochs are spent (each column one more full run's worth):",
        "",
        "| method | " + " | ".join(str(e) for e in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]
    for m in methods:
        cells = []
        for e in steps:
            v = [at(trajs[(m, s)], e)[0] for s in seeds if (m, s) in trajs]
            got = [x for x in v if x is not None]
            cells.append(
                f"{np.median(got):.4f}" + ("" if len(got) == len(v) else f" ({len(got)}/{len(v)})") if got else "-"
            )
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### The pick at the full budget",
        "",
        "| method | val acc | test acc | MACs | trials started | trials at full length |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        picks = [at(trajs[(m, s)], limit * 10)[1] for s in seeds if (m, s) in trajs]
        started = [len({e["trial"] for e in by[(m, s)]["events"]}) for s in seeds if (m, s) in by]
        full = [len({e["trial"] for e in by[(m, s)]["events"] if e["to"] >= top}) for s in seeds if (m, s) in by]
        lines.append(
            f"| {LABELS[m]} | {q([p and p['value'] for p in picks])} | "
            f"{q([p and p.get('test_acc') for p in picks])} | "
            f"{qi([p and p.get('macs') for p in picks])} | {qi(started)} | {qi(full)} |"
        )
    lines += ["", "### Epochs to reach `--fidelity off`'s best score", ""]
    if "ours-off" in methods:
        lines += [
            "Per seed: the final best score of ours with `--fidelity off` (same seed), and the epochs each "
            "method had spent when its own best score first reached it. Target (issue 10): ours within a "
            f"third of off's epochs ({limit // 3}).",
            "",
            "| seed | off's best | off's epochs to it | "
            + " | ".join(LABELS[m] for m in methods if m != "ours-off")
            + " |",
            "|---:|---:|---:|" + "---:|" * (len(methods) - 1),
        ]
        for s in seeds:
            if ("ours-off", s) not in trajs or not trajs[("ours-off", s)]:
                continue
            target = trajs[("ours-off", s)][-1][1]
            if target is None:
                continue
            cells = [
                str(reach(trajs[(m, s)], target) or "never") for m in methods if m != "ours-off" and (m, s) in trajs
            ]
            lines.append(
                f"| {s} | {target:.4f} | {reach(trajs[('ours-off', s)], target)} | " + " | ".join(cells) + " |"
            )
    if "ours" in methods:
        lines += [
            "",
            "Where ours' epochs went (median over seeds: epochs spent on segments ending at each rung; trials "
            "that reached it):",
            "",
            "| rung | epochs | trials |",
            "|---:|---:|---:|",
        ]
        for r in rungs(opts, top):
            ep = [
                sum(e["to"] - e["from"] for e in by[("ours", s)]["events"] if e["to"] == r)
                for s in seeds
                if ("ours", s) in by
            ]
            n = [
                len({e["trial"] for e in by[("ours", s)]["events"] if e["to"] == r}) for s in seeds if ("ours", s) in by
            ]
            lines.append(f"| {r} | {np.median(ep):.0f} | {np.median(n):.0f} |")
    if opts.budget <= 8 and "ours-off" in methods:
        lines += [
            "",
            f"Note: `--fidelity off` with `--trials {opts.budget}` trains only the optimiser's warm-up "
            "configs (8 by default: space-filling random ones), so here it is random search at full length.",
        ]
    lines += ["", "### Verdict", ""] + verdict(trajs, methods, seeds, limit) + [""]
    return lines


def verdict(trajs, methods, seeds, limit) -> list[str]:
    out = []
    if "ours" in methods and "ours-off" in methods:
        ok = []
        for s in seeds:
            if ("ours", s) in trajs and ("ours-off", s) in trajs and trajs[("ours-off", s)][-1][1] is not None:
                r = reach(trajs[("ours", s)], trajs[("ours-off", s)][-1][1])
                ok.append(r is not None and r <= limit / 3)
        out.append(
            f"- Ours reached `--fidelity off`'s best with at most a third of the budget on {sum(ok)} of "
            f"{len(ok)} seeds: {'WIN' if ok and all(ok) else 'LOSS' if not any(ok) else 'MIXED'}."
        )
    if "ours" in methods and "tpe-hb" in methods:
        for e in (limit // 3, limit):
            a = [at(trajs[("ours", s)], e)[0] for s in seeds if ("ours", s) in trajs]
            b = [at(trajs[("tpe-hb", s)], e)[0] for s in seeds if ("tpe-hb", s) in trajs]
            ma = np.median([x if x is not None else 0.0 for x in a]) if a else float("nan")
            mb = np.median([x if x is not None else 0.0 for x in b]) if b else float("nan")
            wins = sum(
                1
                for s in seeds
                if ("ours", s) in trajs
                and ("tpe-hb", s) in trajs
                and (at(trajs[("ours", s)], e)[0] or 0) > (at(trajs[("tpe-hb", s)], e)[0] or 0)
            )
            say = lambda m: f"{m:.4f}" if m > 0 else "none at full length"  # noqa: E731
            out.append(
                f"- At {e} epochs, ours vs TPE + Hyperband: median best score {say(ma)} vs {say(mb)}, ours "
                f"ahead on {wins} of {len(seeds)} seeds: {'WIN' if ma > mb else 'LOSS' if ma < mb else 'TIE'}."
            )
    return out


def rungs(opts, top: int) -> list[int]:
    low = opts.min_epochs if opts.max_epochs else 1
    r, out = low, []
    while r < top:
        out.append(r)
        r *= 3
    return out + [top]


def preset_note(opts, top: int) -> str:
    from trainers.presets import get_preset

    full = get_preset("digits" if opts.dataset == "digits" else "imagefolder").max_epochs
    return "" if top == full else f"; `--max-epochs {top}`, not the preset's {full}, to fit the time"


def describe_data(opts) -> str:
    if opts.dataset == "digits":
        return "scikit-learn digits (8x8)"
    return (
        f"`cifar10-dev` subsample of {opts.subsample} training images (balanced, `{CIFAR_DEV}`), "
        f"`--image-size {opts.image_size}`, as an ImageFolder"
    )


# ------------------------------------------------------------------------------------------ main
def report(raw: Path, out: Path, errors: list[dict]) -> int:
    """The results file from the raw log: one section per data set, from the latest run of each (method, seed)."""
    latest: dict = {}
    for line in raw.read_text().splitlines():
        r = json.loads(line)
        if "error" not in r:
            latest[(r["dataset"], r["method"], r["seed"])] = r
    lines = [
        "# Multi-fidelity search with real training",
        "",
        "Ours (`nas search`, multi-fidelity) vs ours with `--fidelity off` vs Optuna TPE + HyperbandPruner, "
        "the same trainer (`trainers.runner.run_trial`), space, score and data for all (see "
        "`bench/bench_mf_real.py`). One process per run, one worker, one thread, two runs side by side.",
        "",
    ]
    for dataset in ("digits", "cifar10-dev"):
        runs = [r for (d, _, _), r in latest.items() if d == dataset]
        if not runs:
            continue
        o = Namespace(**runs[-1]["opts"])
        o.methods = [
            m for m in METHODS if any(r["method"] == m for r in runs)
        ]  # every method logged, not the last command's
        commands = list(dict.fromkeys(r["bench_command"] for r in runs))  # seeds added by a later command too
        lines += table(runs, o, "\n    ".join(commands))
    return finish_results(
        lines, errors, lambda r: f"{r['dataset']} {r['method']} seed {r['seed']}", raw=raw, out=out, root=ROOT
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["digits", "cifar10-dev"], default="digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=8, help="full-run equivalents (x max_epochs epochs)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (one core each)")
    p.add_argument("--subsample", type=int, default=2000, help="cifar10-dev: training images kept")
    p.add_argument("--image-size", type=int, default=16, help="cifar10-dev: images resized to this side")
    p.add_argument("--max-epochs", type=int, help="override the preset's max_epochs")
    p.add_argument("--min-epochs", type=int, default=1, help="the first rung, with --max-epochs")
    p.add_argument("--quick", action="store_true", help="1 seed, 2 trials of 1 epoch: a smoke run")
    p.add_argument("--report-only", action="store_true", help="rewrite --out from the raw log; train nothing")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results_mf_real.md")
    p.add_argument(
        "--raw",
        type=Path,
        default=ROOT / "bench" / "out" / "mf_real_runs.jsonl",
        help="every finished run is appended here (the results file is rebuilt from it)",
    )
    opts = p.parse_args(argv)
    if opts.report_only:
        return report(opts.raw, opts.out, [])
    if opts.quick:
        opts.seeds, opts.budget, opts.max_epochs, opts.min_epochs, opts.jobs = [0], 2, 1, 1, 1
    command = "nice -n 5 .venv/bin/python -m bench.bench_mf_real " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    tmp = Path(tempfile.mkdtemp(prefix="mfreal-"))
    opts.space = space_file(tmp)
    opts.data_dir = subsample_folder(CIFAR_DEV, tmp / "data", opts.subsample) if opts.dataset != "digits" else None
    record = {k: v for k, v in vars(opts).items() if k not in ("out", "raw", "space", "data_dir")}
    opts.raw.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(m, s) for s in opts.seeds for m in opts.methods]
    errors = []
    try:
        with ProcessPoolExecutor(max_workers=max(1, opts.jobs)) as pool, opts.raw.open("a") as raw:
            futures = {pool.submit(one_run, opts, m, s): (m, s) for m, s in jobs}
            for f in as_completed(futures):
                r = f.result()
                raw.write(
                    json.dumps(
                        {"dataset": opts.dataset, "budget": opts.budget, "opts": record, "bench_command": command, **r},
                        default=str,
                    )
                    + "\n"
                )
                raw.flush()
                if "error" in r:
                    errors.append({"dataset": opts.dataset, **r})
                    log(f"{r['method']} seed {r['seed']}: FAILED\n{r['error']}")
                    continue
                spent = trajectory(r)[-1] if r["events"] else (0, None, None)
                log(f"{r['method']} seed {r['seed']}: {spent[0]} epochs, best {spent[1]}, {r['wall']:.0f}s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(opts.raw, opts.out, errors)


if __name__ == "__main__":
    raise SystemExit(main())
