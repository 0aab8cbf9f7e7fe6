"""Trainer benchmarks on digits: throughput against hand-written loops, and the baseline CNN's accuracy.

    .venv/bin/python bench/bench_trainer.py            # both parts, writes bench/results_trainer.md
    .venv/bin/python bench/bench_trainer.py --quick    # a smoke run (fewer repeats / seeds)

Part 1, throughput: the same model, data, batch size, epochs and optimizer (Adam, lr 1e-3) trained by
    ours        trainers.train_trial (timm optimizer + per-step cosine schedule, validation every epoch,
                test once at the end; everything the call does is timed)
    hand        randperm + tensor indexing, torch.optim.Adam, constant lr, no evaluation
    hand + eval the same, plus the validation and test passes ours makes (the like-for-like comparison)
    dataloader  the textbook loop: DataLoader(TensorDataset, shuffle=True), torch.optim.Adam, no evaluation
Variants run interleaved (the order rotates each repeat) so machine load hits all alike; the table gives
median images/s and the median of the per-repeat ratios ours / other.

Part 2, the baseline CNN (stem conv 16 -> Conv 32 s2 -> Conv 64 s2 -> global pool -> linear, 3x3, BN+ReLU),
written in our config layout, trained by train_trial with Adam 1e-3 for 15 epochs over several seeds;
test accuracy, MACs and params (analytic count, cross-checked with fvcore), next to the hand loop with a
constant lr on the same seeds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainers import load_dataset, train_trial  # noqa: E402

BASELINE = {
    "stem": {"channels": 16, "kernel": 3, "stride": 1, "activation": "relu"},
    "stages": [
        {"block": "Conv", "channels": 32, "stride": 2, "repeats": 1, "kernel": 3, "activation": "relu"},
        {"block": "Conv", "channels": 64, "stride": 2, "repeats": 1, "kernel": 3, "activation": "relu"},
    ],
    "head": {"channels": 0},
    "classifier": {"dropout": 0.0},
    "optimizer": {"name": "adam", "beta1": 0.9, "beta2": 0.999},
    "lr": 1e-3,
    "weight_decay": 0.0,
    "batch_size": 32,
    "epochs": 15,
    "label_smoothing": 0.0,
    "warmup_epochs": 0,
}


def hand_model() -> nn.Module:
    """The baseline CNN written out by hand (same layers as BASELINE built by search_spaces)."""

    def cbr(c_in, c_out, s):
        return [nn.Conv2d(c_in, c_out, 3, s, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *cbr(1, 16, 1), *cbr(16, 32, 2), *cbr(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)
    )


def config_model(config):
    try:
        from search_spaces import build_model
    except ImportError:  # the builder is optional here; the hand model has the same layers
        return hand_model, "hand-built (search_spaces not importable)"
    return (lambda: build_model(config, num_classes=10, in_chans=1)), "search_spaces.build_model"


def hand_loop(
    data, *, seed, epochs, batch_size, lr, loader: bool, evaluate: bool = False
) -> tuple[float, float, nn.Module]:
    """(seconds, images seen, model): the minimal loop, randperm indexing or a DataLoader.

    evaluate: also score the val split after every epoch and the test split at the end, as train_trial does.
    """
    torch.manual_seed(seed)
    net = hand_model().train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.x_train, data.y_train
    n = len(y)
    steps = n // batch_size
    gen = torch.Generator().manual_seed(seed)
    dl = (
        torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True, generator=gen
        )
        if loader
        else None
    )
    start = time.perf_counter()
    for _ in range(epochs):
        if loader:
            batches = iter(dl)
        else:
            order = torch.randperm(n, generator=gen)
            batches = ((x[i], y[i]) for i in (order[s * batch_size : (s + 1) * batch_size] for s in range(steps)))
        for xb, yb in batches:
            loss = loss_fn(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if evaluate:
            accuracy(net, data.x_val, data.y_val)
            net.train()
    if evaluate:
        accuracy(net, data.x_test, data.y_test)
    return time.perf_counter() - start, epochs * steps * batch_size, net


@torch.no_grad()
def accuracy(net, x, y) -> float:
    net.eval()
    return (net(x).argmax(1) == y).float().mean().item()


def throughput(data, *, repeats, epochs, batch_size, threads):
    cfg = {**BASELINE, "epochs": epochs, "batch_size": batch_size}
    steps = len(data.y_train) // batch_size

    def ours(seed):
        t = time.perf_counter()
        train_trial(cfg, data, model=hand_model, seed=seed, device="cpu", num_threads=threads)
        return epochs * steps * batch_size / (time.perf_counter() - t)

    def hand(seed, loader, evaluate=False):
        sec, imgs, _ = hand_loop(
            data, seed=seed, epochs=epochs, batch_size=batch_size, lr=cfg["lr"], loader=loader, evaluate=evaluate
        )
        return imgs / sec

    variants = {
        "ours": ours,
        "hand": lambda s: hand(s, False),
        "hand + eval": lambda s: hand(s, False, True),
        "dataloader": lambda s: hand(s, True),
    }
    names = list(variants)
    rates = {k: [] for k in names}
    torch.set_num_threads(threads)
    ours(0)  # warm-up: imports (timm) and first-call allocations are not what we measure
    for r in range(repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            rates[k].append(variants[k](r))
    rows = []
    for k in names:
        ratio = statistics.median(o / h for o, h in zip(rates["ours"], rates[k]))
        rows.append((k, statistics.median(rates[k]), min(rates[k]), max(rates[k]), ratio))
    return rows


def baseline(data, *, seeds, threads):
    factory, built_by = config_model(BASELINE)
    from search_spaces import count  # noqa: PLC0415

    counted = count(BASELINE, input_shape=(1, 8, 8), num_classes=10)
    from fvcore.nn import FlopCountAnalysis

    net = factory().eval()
    fv = FlopCountAnalysis(net, torch.zeros(1, 1, 8, 8))
    fv.unsupported_ops_warnings(False)
    fv.uncalled_modules_warnings(False)
    by_op = fv.by_operator()
    fv_macs = sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul"))
    params = sum(p.numel() for p in net.parameters())

    runs = []
    for seed in seeds:
        ends: list[float] = []  # elapsed seconds at each epoch's end, for the flat-epoch check
        r = train_trial(
            BASELINE,
            data,
            model=factory,
            seed=seed,
            device="cpu",
            num_threads=threads,
            on_epoch=lambda e, ends=ends: ends.append(e["elapsed"]),
        )
        epoch_s = [b - a for a, b in zip([0.0] + ends[:-1], ends)]
        _, _, hnet = hand_loop(
            data,
            seed=seed,
            epochs=BASELINE["epochs"],
            batch_size=BASELINE["batch_size"],
            lr=BASELINE["lr"],
            loader=False,
        )
        runs.append(
            {
                "seed": seed,
                "val": r.val_acc,
                "test": r.test_acc,
                "time": r.train_time,
                "hand_test": accuracy(hnet, data.x_test, data.y_test),
                "flat": flatness(epoch_s),
            }
        )
    return {
        "built_by": built_by,
        "macs": counted["macs"],
        "params": counted["params"],
        "fv_macs": fv_macs,
        "torch_params": params,
        "runs": runs,
    }


def flatness(epoch_s: list[float], k: int = 5) -> float:
    """Median of the last k epoch times over the median of the first k: about 1.0 when epochs stay flat.

    Compared within one run, so it catches a slowdown that grows with training (denormal floats, issue 15)
    even when the hand-written loop, run alongside, slows down the same way.
    """
    k = max(1, min(k, len(epoch_s) // 2))
    return statistics.median(epoch_s[-k:]) / statistics.median(epoch_s[:k])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=5, help="epochs per throughput run")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=5, help="seeds for the baseline CNN")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_trainer.md")
    a = ap.parse_args(argv)
    if a.quick:
        a.repeats, a.seeds = 3, 2
    data = load_dataset("digits", seed=0)
    cmd = "cd /work/main && .venv/bin/python bench/bench_trainer.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        "# Trainer benchmark (digits)",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{a.threads} thread(s), CPU; {data.summary()}.",
        "",
    ]

    rows = throughput(data, repeats=a.repeats, epochs=a.epochs, batch_size=a.batch_size, threads=a.threads)
    lines += [
        f"## Throughput: baseline CNN, Adam 1e-3, batch {a.batch_size}, {a.epochs} epochs, "
        f"{a.repeats} interleaved repeats",
        "",
        "| loop | median img/s | min | max | median ratio ours / loop |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {k} | {m:,.0f} | {lo:,.0f} | {hi:,.0f} | {ratio:.2f} |" for k, m, lo, hi, ratio in rows]
    lines += [
        "",
        "ours includes building the timm optimizer and scheduler, validation after every epoch and "
        "the final test pass; 'hand + eval' does the same evaluation, the other hand loops only train.",
        "Images/s counts training images only.",
        "",
    ]
    print("\n".join(lines))

    b = baseline(data, seeds=range(a.seeds), threads=a.threads)
    med = lambda key: statistics.median(r[key] for r in b["runs"])  # noqa: E731
    lines += [
        f"## Baseline CNN: our trainer, Adam 1e-3, batch {BASELINE['batch_size']}, "
        f"{BASELINE['epochs']} epochs, cosine per step, {a.seeds} seeds",
        "",
        f"Model built by {b['built_by']}. MACs {b['macs']:,} (analytic; fvcore conv+linear {b['fv_macs']:,}), "
        f"params {b['params']:,} (torch {b['torch_params']:,}). Reference: ~96.7 % test, 157k MACs, 24k params.",
        "",
        "| seed | val acc | test acc | train s | last-5 / first-5 epoch time | hand loop test acc (constant lr) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['seed']} | {r['val']:.4f} | {r['test']:.4f} | {r['time']:.1f} | {r['flat']:.2f} | {r['hand_test']:.4f} |"
        for r in b["runs"]
    ]
    lines += [
        f"| **median** | {med('val'):.4f} | **{med('test'):.4f}** | {med('time'):.1f} | {med('flat'):.2f} | "
        f"{med('hand_test'):.4f} |",
        "",
        f"Flat-epoch check: median last-5 / first-5 epoch time {med('flat'):.2f} "
        f"({'flat' if med('flat') <= 1.1 else 'SLOWING DOWN: above 1.1, look for denormals or a leak'}).",
        "",
    ]
    text = "\n".join(lines)
    print("\n".join(lines[-len(b["runs"]) - 8 :]))
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
