"""Per-optimizer learning-rate / weight-decay ranges against the old shared range, at equal trials.

Both spaces search only the training hyper-parameters (optimizer and its settings, batch size, label
smoothing, warm-up) of one fixed network per problem, so the difference is the ranges alone:

    shared         today's space before issue 13: one lr range 1e-4..0.3 and one weight-decay range
                   1e-6..1e-2 for SGD, Adam, AdamW and RMSprop
    per-optimizer  search_spaces.default.training_params: each optimizer its own lr and weight-decay range

Each search is ``nas.search`` with the fixed network as ``model=`` and the built-in trainer, score = validation
accuracy, the same seeds for both spaces. Problems:

    digits     the bundled 8x8 digits (train 1168 / val 269 / test 360), a 3-conv CNN, 3 epochs
    cifar10    real CIFAR-10 images from ../shared/datasets/cifar10-dev, subsampled to be affordable on 2
               shared cores: the first 50 files (by name) per class of train/ for training (500), the next 30
               per class for validation (300), the first 30 per class of test/ for test (300); 32x32 RGB, a
               3-conv CNN (stride-2 stem), 4 epochs, flip + shift augmentation

    python bench/bench_lr_ranges.py --seeds 3 --trials 8 --warmup 4 --workers 2 [--problems digits,cifar10]
        [--cifar 50,30,30,4]   (images per class: train, val, test; and epochs)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nas.space import Categorical, Constant, Float, Group, Integer, Space  # noqa: E402
from search_spaces.default import training_params  # noqa: E402

CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-dev"
if not CIFAR.is_dir():
    CIFAR = Path("/work/shared/datasets/cifar10-dev")

DIGITS_NET = {
    "stem": {"channels": 8, "kernel": 3, "stride": 1},
    "stages": [{"block": "Conv", "channels": 32, "stride": 2}, {"block": "Conv", "channels": 48, "stride": 2}],
    "head": {"channels": 0},
    "classifier": {"dropout": 0.0},
}
CIFAR_NET = {
    "stem": {"channels": 16, "kernel": 3, "stride": 2},
    "stages": [{"block": "Conv", "channels": 32, "stride": 2}, {"block": "Conv", "channels": 64, "stride": 2}],
    "head": {"channels": 0},
    "classifier": {"dropout": 0.0},
}
PROBLEMS = {"digits": {"epochs": 3, "net": DIGITS_NET}, "cifar10": {"epochs": 4, "net": CIFAR_NET}}
BATCHES = (32, 64, 128)
N_TRAIN, N_VAL, N_TEST = 50, 30, 30  # images per class taken from cifar10-dev (see the docstring)


def fixed_net(config, data):
    from search_spaces.builder import build_model

    arch = DIGITS_NET if data.input_shape[1] <= 8 else CIFAR_NET
    return build_model(arch, num_classes=data.num_classes, in_chans=data.input_shape[0])


def shared_space(epochs: int) -> Space:
    """The training space as it was before per-optimizer ranges (search_spaces/default.py, Dec 2026)."""
    betas = [Float("beta1", 0.8, 0.99), Float("beta2", 0.9, 0.9999)]
    optimizer = Group(
        "optimizer",
        [
            Categorical(
                "name",
                {
                    "sgd": [Float("momentum", 0.5, 0.99), Categorical("nesterov", [True, False])],
                    "adam": list(betas),
                    "adamw": list(betas),
                    "rmsprop": [Float("alpha", 0.9, 0.99), Float("momentum", 0.0, 0.9)],
                },
            )
        ],
    )
    return Space(
        [
            optimizer,
            Float("lr", 1e-4, 0.3, log=True),
            Float("weight_decay", 1e-6, 1e-2, log=True),
            Categorical("batch_size", list(BATCHES)),
            Constant("epochs", epochs),
            Float("label_smoothing", 0.0, 0.2),
            Integer("warmup_epochs", 0, 3),
        ],
        name="shared",
    )


def per_optimizer_space(epochs: int) -> Space:
    return Space(training_params(epochs=epochs, batch_sizes=BATCHES), name="per-optimizer")


def _read(paths, size=32):
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size)), dtype=np.uint8) for p in paths])


def cifar_data():
    classes = sorted(d.name for d in (CIFAR / "train").iterdir() if d.is_dir())
    parts = {"train": [], "val": [], "test": []}
    for k, c in enumerate(classes):
        train = sorted((CIFAR / "train" / c).glob("*.jpg"))
        test = sorted((CIFAR / "test" / c).glob("*.jpg"))
        for split, files in (
            ("train", train[:N_TRAIN]),
            ("val", train[N_TRAIN : N_TRAIN + N_VAL]),
            ("test", test[:N_TEST]),
        ):
            parts[split].append((_read(files), np.full(len(files), k)))
    out = {}
    for split, chunks in parts.items():
        x = torch.from_numpy(np.concatenate([c[0] for c in chunks]).transpose(0, 3, 1, 2).copy())
        out[split] = (x, torch.from_numpy(np.concatenate([c[1] for c in chunks])))
    return out, classes


def run_one(problem: str, space: Space, seed: int, trials: int, warmup: int, data, executor) -> dict:
    from nas.api import prepare
    from nas.report import load_study

    epochs = PROBLEMS[problem]["epochs"]
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(
            model=fixed_net,
            space=space,
            epochs=epochs,
            trials=trials,
            warmup=warmup,
            seed=seed,
            out=Path(tmp) / "s",
            workers=executor.capacity,
            executor="inprocess" if executor.capacity == 1 else "process",
        )
        if problem == "digits":
            study = prepare(dataset="digits", **kw)
        else:
            (tr, va, te), names = (data[0]["train"], data[0]["val"], data[0]["test"]), data[1]
            study = prepare(data=tr, val_data=va, test_data=te, class_names=names, augment="flip_crop", **kw)
        study.executor.shutdown()
        study.executor = executor  # one pool for every search: workers start (and import torch) once
        study.run()
        view = load_study(study.folder)
        done = [t for t in view.trials if t.status == "complete"]
        values = [t.value for t in done]
        best = view.best
        names = [t.config["optimizer"]["name"] for t in done]
        return {
            "best": best.value,
            "best_at_warmup": max(values[:warmup]),
            "test_of_best": best.metrics.get("test_acc"),
            "best_opt": best.config["optimizer"]["name"],
            "failed": len(view.trials) - len(done),
            "poor": sum(v < 0.3 for v in values),
            "n": len(view.trials),
            "opts": names,
        }


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--problems", default="digits,cifar10")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cifar", default="50,30,30,4", help="train,val,test images per class and epochs (cifar10)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results_lr_ranges.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    global N_TRAIN, N_VAL, N_TEST
    N_TRAIN, N_VAL, N_TEST, PROBLEMS["cifar10"]["epochs"] = (int(v) for v in args.cifar.split(","))
    from nas.executors import get_executor

    pool = get_executor("process" if args.workers > 1 else "inprocess", workers=args.workers, threads_per_worker=1)
    rows, t0 = [], time.time()
    problems = args.problems.split(",")
    datas = {pr: cifar_data() if pr == "cifar10" else None for pr in problems}
    for seed in range(args.seeds):  # seeds outermost: a cut-short run still has every problem and space
        for problem in problems:
            epochs = PROBLEMS[problem]["epochs"]
            for space in (shared_space(epochs), per_optimizer_space(epochs)):  # interleaved: same load for both
                r = run_one(problem, space, seed, args.trials, args.warmup, datas[problem], pool)
                rows.append({"problem": problem, "space": space.name, "seed": seed, **r})
                print(
                    f"{problem} {space.name:14s} seed {seed}: best {r['best']:.4f} (after warm-up "
                    f"{r['best_at_warmup']:.4f}), poor {r['poor']}/{r['n']}, best optimizer {r['best_opt']}, "
                    f"{time.time() - t0:.0f}s",
                    flush=True,
                )
            write(rows, args, time.time() - t0)  # after every pair of searches
    pool.shutdown()


def write(rows, args, seconds) -> None:
    cmd = "python bench/bench_lr_ranges.py " + " ".join(
        [
            f"--seeds {args.seeds}",
            f"--trials {args.trials}",
            f"--warmup {args.warmup}",
            f"--problems {args.problems}",
            f"--workers {args.workers}",
            f"--cifar {args.cifar}",
        ]
    )
    done = sorted({r["seed"] for r in rows})
    lines = [
        "# Per-optimizer learning-rate and weight-decay ranges vs one shared range",
        "",
        f"Command: `{cmd}` ({seconds / 60:.0f} min, 1 thread, machine shared with other jobs)"
        + ("" if len(done) == args.seeds else f"; seeds finished so far: {done}")
        + ".",
        "",
        "Training hyper-parameters only, on one fixed CNN per problem (see the module docstring), score = "
        f"validation accuracy; {args.trials} trials per search ({args.warmup} random warm-up trials, then "
        f"GP-UCB), seeds 0..{args.seeds - 1}, both spaces with the same seeds. cifar10 = a subsample of "
        f"cifar10-dev: {N_TRAIN} train / {N_VAL} val images per class from train/, {N_TEST} test images per class "
        f"from test/, {PROBLEMS['cifar10']['epochs']} epochs; digits {PROBLEMS['digits']['epochs']} epochs. {args.workers} trials at a time (asynchronous GP-BUCB after the warm-up).",
        "",
        "| problem | space | best val acc per seed | median | best after warm-up (median) | "
        "test acc of best (median) | trials under 30 % val acc | best optimizer per seed |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    summary = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        for space in ("shared", "per-optimizer"):
            rs = [r for r in rows if r["problem"] == problem and r["space"] == space]
            med = statistics.median(r["best"] for r in rs)
            summary.append((problem, space, med, [r["best"] for r in rs]))
            per_seed = ", ".join(f"{r['best']:.4f}" for r in rs)
            lines.append(
                f"| {problem} | {space} | {per_seed} | {med:.4f} | "
                f"{statistics.median(r['best_at_warmup'] for r in rs):.4f} | "
                f"{statistics.median(r['test_of_best'] for r in rs):.4f} | "
                f"{sum(r['poor'] for r in rs)}/{sum(r['n'] for r in rs)} | "
                f"{', '.join(r['best_opt'] for r in rs)} |"
            )
    lines += ["", "Per seed (per-optimizer minus shared, best validation accuracy):", ""]
    for problem in dict.fromkeys(r["problem"] for r in rows):
        sh = [r["best"] for r in rows if r["problem"] == problem and r["space"] == "shared"]
        po = [r["best"] for r in rows if r["problem"] == problem and r["space"] == "per-optimizer"]
        diffs = [b - a for a, b in zip(sh, po)]
        if not diffs:
            continue
        wins = sum(d > 0 for d in diffs)
        verdict = "win" if statistics.median(diffs) > 0 else "loss" if statistics.median(diffs) < 0 else "tie"
        lines.append(
            f"- {problem}: {', '.join(f'{d:+.4f}' for d in diffs)}; per-optimizer better on {wins} of "
            f"{len(diffs)} seeds, median difference {statistics.median(diffs):+.4f} ({verdict})."
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
