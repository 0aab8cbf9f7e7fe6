"""Per-epoch training time with and without flushing denormals to zero, on real 32x32 images.

    .venv/bin/python -m bench.bench_denormal                      # 20 epochs on 4,000 images -> results_denormal.md
    .venv/bin/python -m bench.bench_denormal --epochs 6 --quick   # a smoke run on 2,000 images

The network is the first config a default `nas search --dataset imagefolder` proposes on cifar10-dev
(seed 0): 8.2 M MACs, RMSprop at lr 0.034, batch 32, flip-and-shift augmentation. Both runs train it with
`trainers.train_trial` from the same seed, one thread each, at the same time in two worker processes of our
own process executor, so whatever else loads the machine loads both alike. "off" leaves the CPU's default
mode (denormals kept); "on" is the trainer's default (flushed inside train_trial).

Reported: each epoch's wall time (training + validation), the ratio of the median of the last five epochs
to the median of the first five (a flat run gives about 1.0; target with the fix: at most 1.1), and the
total speed-up (total time off / total time on).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "datasets" / "cifar10-dev"
OUT = Path(__file__).parent / "results_denormal.md"

# The first proposal of `nas search --dataset imagefolder --seed 0` on cifar10-dev (issue 15's run).
CONFIG = {
    "stem": {"channels": 56, "kernel": 5, "stride": 2, "activation": "relu6"},
    "stages": [
        {"block": "Conv", "kernel": 1, "activation": "relu", "channels": 56, "stride": 2, "repeats": 2},
        {
            "block": "InvertedResidual",
            "kernel": 5,
            "expansion": 4,
            "se_ratio": 0.25,
            "activation": "hardswish",
            "channels": 168,
            "stride": 2,
            "repeats": 2,
        },
    ],
    "head": {"channels": 480, "activation": "relu6"},
    "classifier": {"dropout": 0.0008215500510444284},
    "optimizer": {"name": "rmsprop", "alpha": 0.9771663848928812, "momentum": 0.03022701777491792},
    "lr": 0.034442959532331244,
    "weight_decay": 5.0422280307889485e-06,
    "batch_size": 32,
    "epochs": 27,
    "label_smoothing": 0.10829224404981835,
    "warmup_epochs": 0,
}


def train_once(spec: dict) -> dict:
    """One run in a worker process: per-epoch wall times and the final accuracy."""
    import dataclasses

    import torch

    from search_spaces.builder import build_model
    from trainers.runner import cached_dataset
    from trainers.train import train_trial

    torch.set_flush_denormal(False)  # the CPU's default; "on" is turned on by train_trial itself
    data = cached_dataset("imagefolder", spec["data_dir"], 0, False, None)
    if spec["n_train"]:
        data = dataclasses.replace(
            data, x_train=data.x_train[: spec["n_train"]], y_train=data.y_train[: spec["n_train"]]
        )
    times, last = [], [0.0]

    def on_epoch(entry):
        times.append(entry["elapsed"] - last[0])
        last[0] = entry["elapsed"]

    r = train_trial(
        CONFIG,
        data,
        seed=0,
        device="cpu",
        num_threads=1,
        max_epochs=spec["epochs"],
        augment="flip_crop",
        on_epoch=on_epoch,
        flush_denormal=spec["flush"],
        model=lambda: build_model(CONFIG, num_classes=data.num_classes, in_chans=3),
    )
    return {
        "flush": spec["flush"],
        "epoch_s": times,
        "val_acc": r.val_acc,
        "test_acc": r.test_acc,
        "losses": [c["train_loss"] for c in r.curve],
        "flushed": r.denormals_flushed,
        "n_train": len(data.y_train),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--n-train",
        type=int,
        default=4000,
        help="training images (0: all 8,500); 4,000 keeps two runs of 20 epochs under half an hour "
        "on a busy 2-core machine, and at 125 steps an epoch the slowdown shows by epoch 10",
    )
    ap.add_argument("--quick", action="store_true", help="2,000 training images")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        sys.exit(
            f"bench_denormal: {args.data} not found (the cifar10-dev ImageFolder, ../shared/datasets/"
            "cifar10-dev from the project root); pass --data"
        )

    from bench.bench_trainer import flatness
    from nas.executors import ProcessExecutor

    t0 = time.time()
    results = {}
    with ProcessExecutor(workers=2, threads_per_worker=1) as ex:
        for flush in (False, True):
            ex.submit(
                int(flush),
                train_once,
                {
                    "flush": flush,
                    "epochs": args.epochs,
                    "data_dir": args.data,
                    "n_train": 2000 if args.quick else args.n_train,
                },
            )
        while len(results) < 2:
            for key, outcome in ex.wait(timeout=30):
                if outcome.kind != "ok":
                    sys.exit(f"bench_denormal: run {key} failed: {outcome.error}")
                results[key] = outcome.result
    off, on = results[0], results[1]
    assert on["flushed"] and not off["flushed"]
    rows = ["| epoch | off: s | on: s | off train loss | on train loss |", "| --- | --- | --- | --- | --- |"]
    for i, (a, b) in enumerate(zip(off["epoch_s"], on["epoch_s"]), 1):
        rows.append(f"| {i} | {a:.1f} | {b:.1f} | {off['losses'][i - 1]:.3f} | {on['losses'][i - 1]:.3f} |")
    summary = [
        "| | denormals kept (off) | flushed (on, the default) |",
        "| --- | --- | --- |",
        f"| last-5 / first-5 median epoch time | {flatness(off['epoch_s']):.2f} | {flatness(on['epoch_s']):.2f} |",
        f"| total time, {args.epochs} epochs (s) | {sum(off['epoch_s']):.0f} | {sum(on['epoch_s']):.0f} |",
        f"| validation accuracy | {off['val_acc']:.3f} | {on['val_acc']:.3f} |",
        f"| test accuracy | {off['test_acc']:.3f} | {on['test_acc']:.3f} |",
    ]
    speedup = sum(off["epoch_s"]) / sum(on["epoch_s"])
    cmd = (
        "python -m bench.bench_denormal"
        + (f" --epochs {args.epochs}" if args.epochs != 20 else "")
        + (" --quick" if args.quick else "")
        + (f" --n-train {args.n_train}" if args.n_train != 4000 else "")
    )
    text = "\n".join(
        [
            "# Denormal floats: per-epoch time with and without flushing",
            "",
            f"Command: `{cmd}`. Date: {datetime.date.today().isoformat()}; {os.cpu_count()} CPUs shared with other "
            f"jobs; Python {platform.python_version()}. {on['n_train']} cifar10-dev training images, the 8.2 M-MAC "
            "RMSprop config of issue 15, batch 32, flip-and-shift, seed 0, one thread per run; the two runs train at "
            f"the same time in two worker processes. Wall time of the whole benchmark: {time.time() - t0:.0f} s.",
            "",
            *summary,
            "",
            f"Total speed-up from flushing: **{speedup:.2f}x**.",
            "",
            *rows,
            "",
        ]
    )
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
