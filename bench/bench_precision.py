"""Channels-last memory format and bfloat16 autocast against float32 NCHW training, through our trainer.

    .venv/bin/python -m bench.bench_precision            # writes bench/results_precision.md
    .venv/bin/python -m bench.bench_precision --quick    # fewer repeats, shorter accuracy runs

Variants: fp32 (NCHW float32, the trainer before this benchmark), cl (channels-last), bf16 (bfloat16
autocast for the training steps), cl+bf16. All through `trainers.train_trial`, one thread, denormals flushed.

Throughput: images/s of training (train_time covers the epoch and its validation pass), for two networks:
the 8.2 M-MAC cifar10-dev config of issue 15 (3x32x32, batch 32, 320 images a run) and the digits baseline
CNN (1x8x8, batch 32, the whole digits training split). Variants run interleaved, the order rotating each
repeat; the table gives the median images/s and the median of the per-repeat ratios variant / fp32.

Accuracy after a fixed number of epochs, same seeds: digits baseline (15 epochs) for every variant; the
cifar10-dev network (3 epochs on 2,000 images) for the variants that are not several times slower here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_denormal import CONFIG as CIFAR_CONFIG, DATA  # noqa: E402
from bench.bench_trainer import BASELINE  # noqa: E402
from search_spaces.builder import build_model  # noqa: E402
from trainers import load_dataset, train_trial  # noqa: E402
from trainers.runner import cached_dataset  # noqa: E402
from trainers.train import amx_bf16, native_bf16  # noqa: E402

OUT = Path(__file__).parent / "results_precision.md"
VARIANTS = {"fp32": ("fp32", False), "cl": ("fp32", True), "bf16": ("bf16", False), "cl+bf16": ("bf16", True)}


def _subset(data, n_train, n_eval):
    return dataclasses.replace(
        data,
        x_train=data.x_train[:n_train],
        y_train=data.y_train[:n_train],
        x_val=data.x_val[:n_eval],
        y_val=data.y_val[:n_eval],
        x_test=data.x_test[:n_eval],
        y_test=data.y_test[:n_eval],
    )


def _train(config, data, variant, *, epochs, seed=0, augment=None):
    precision, cl = VARIANTS[variant]
    c = data.input_shape[0]
    return train_trial(
        {**config, "epochs": epochs, "batch_size": 32},
        data,
        seed=seed,
        device="cpu",
        num_threads=1,
        precision=precision,
        channels_last=cl,
        augment=augment,
        model=lambda: build_model(config, num_classes=data.num_classes, in_chans=c),
    )


def throughput(name, config, data, *, repeats, augment=None) -> list[str]:
    speed = {v: [] for v in VARIANTS}
    names = list(VARIANTS)
    for rep in range(repeats):
        for v in names[rep % len(names) :] + names[: rep % len(names)]:
            r = _train(config, data, v, epochs=1, augment=augment)
            speed[v].append(len(data.y_train) // 32 * 32 / r.train_time)
    rows = []
    for v in names:
        ratios = [a / b for a, b in zip(speed[v], speed["fp32"])]
        rows.append(
            f"| {name} | {v} | {statistics.median(speed[v]):,.0f} | {statistics.median(ratios):.2f} | "
            f"{min(ratios):.2f}-{max(ratios):.2f} |"
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", default=str(DATA))
    a = ap.parse_args(argv)
    if a.quick:
        a.repeats, a.seeds = 2, 1
    torch.set_num_threads(1)
    t0 = time.time()
    digits = load_dataset("digits", seed=0)
    have_cifar = Path(a.data).is_dir()
    lines = [
        "# Channels-last and bfloat16 autocast against float32 training",
        "",
        f"Command: `python -m bench.bench_precision {' '.join(sys.argv[1:] if argv is None else argv)}`. "
        f"Date: {datetime.date.today().isoformat()}; {os.cpu_count()} CPUs shared with other jobs; "
        f"torch {torch.__version__}; CPU capability {torch.backends.cpu.get_cpu_capability()}; native bfloat16 "
        f"(oneDNN): {native_bf16()}; AMX tiles: {amx_bf16()}; {platform.processor() or platform.machine()}.",
        "",
        f"## Throughput ({a.repeats} interleaved repeats, one thread)",
        "",
        "| network | variant | median img/s | median ratio to fp32 | ratio range |",
        "|---|---|---:|---:|---:|",
    ]
    if have_cifar:
        cifar = cached_dataset("imagefolder", a.data, 0, False, None)
        lines += throughput(
            "cifar10-dev 8.2M MACs", CIFAR_CONFIG, _subset(cifar, 320, 64), repeats=a.repeats, augment="flip_crop"
        )
    else:
        print(f"bench_precision: {a.data} not found; the cifar10-dev rows are skipped", file=sys.stderr)
    lines += throughput("digits baseline", BASELINE, digits, repeats=a.repeats)

    lines += [
        "",
        f"## Accuracy after a fixed number of epochs (seeds 0-{a.seeds - 1})",
        "",
        "| network | variant | epochs | median val acc | median test acc |",
        "|---|---|---:|---:|---:|",
    ]
    for v in VARIANTS:
        runs = [_train(BASELINE, digits, v, epochs=15, seed=s) for s in range(a.seeds)]
        lines.append(
            f"| digits baseline | {v} | 15 | {statistics.median(r.val_acc for r in runs):.4f} | "
            f"{statistics.median(r.test_acc for r in runs):.4f} |"
        )
    if have_cifar:
        small = _subset(cifar, 2000, 500)
        for v in ("fp32", "cl") + (("bf16", "cl+bf16") if native_bf16() else ()):
            runs = [_train(CIFAR_CONFIG, small, v, epochs=3, seed=s, augment="flip_crop") for s in range(a.seeds)]
            lines.append(
                f"| cifar10-dev, 2,000 images | {v} | 3 | {statistics.median(r.val_acc for r in runs):.4f} | "
                f"{statistics.median(r.test_acc for r in runs):.4f} |"
            )
        if not native_bf16():
            lines.append(
                "| cifar10-dev | bf16, cl+bf16 | - | not run: bfloat16 is emulated on this CPU (see throughput) | |"
            )
    lines += ["", f"Wall time: {time.time() - t0:.0f} s.", ""]
    text = "\n".join(lines)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
