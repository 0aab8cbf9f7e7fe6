"""Merge the per-benchmark result files (bench/results_*.md) into bench/RESULTS.md.

Each results file is written by its own benchmark and starts with the command that made it; this only
puts them under one roof, in a fixed order, so RESULTS.md always shows the latest run of each.

    python -m bench.collect
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = [
    "optimizer",
    "batch",
    "search",
    "trainer",
    "denormal",
    "parallel",
    "mf_synthetic",
    "multifidelity",
    "mf_real",
    "pareto",
    "lr_ranges",
    "precision",
    "precision_avx2",
]
TITLES = {
    "optimizer": "Optimiser: NAS-Bench-201, conditional synthetic, two objectives, ask overhead",
    "batch": "Batch and asynchronous proposals on NAS-Bench-201",
    "search": "Digits search: ours vs Optuna TPE vs random, and the hand-written baseline",
    "trainer": "Trainer throughput and the hand-written baseline CNN",
    "denormal": "Denormal floats: epoch times with and without flushing",
    "parallel": "Parallel trials: process pool and Ray",
    "mf_synthetic": "Multi-fidelity engine on synthetic learning curves",
    "multifidelity": "Multi-fidelity search on the TaskSet learning curves",
    "mf_real": "Multi-fidelity search with real training (digits; cifar10-dev subsample)",
    "lr_ranges": "Per-optimizer learning-rate and weight-decay ranges vs one shared range",
    "precision": "Channels-last and bfloat16 autocast against float32 (AMD EPYC with AVX512-BF16, no AMX)",
    "precision_avx2": "Channels-last and bfloat16 autocast against float32 (earlier run: AMD EPYC, AVX2 only)",
    "pareto_digits": "Pareto search on digits with real training: accuracy against MACs and params",
    "pareto": "Pareto search: accuracy against latency on NAS-Bench-201 (EHVI with known costs)",
}


def main() -> None:
    parts = [
        "# Benchmark results\n",
        "Each section was produced by the command at its top, on the project's 2-core, no-GPU machine, "
        "which other jobs shared: timings are noisy, so sections quote medians and ratios from one run. "
        "Regenerate with `make bench` (each benchmark rewrites its own section, then this file is merged).\n",
    ]
    names = ORDER + sorted(
        p.stem[len("results_") :] for p in HERE.glob("results_*.md") if p.stem[len("results_") :] not in ORDER
    )
    for name in names:
        path = HERE / f"results_{name}.md"
        if not path.exists():
            continue
        body = path.read_text().strip()
        lines = body.splitlines()
        if lines and lines[0].startswith("# "):  # drop each file's title for ours, demote its sections
            lines = lines[1:]
        lines = ["#" + ln if ln.startswith("## ") else ln for ln in lines]
        parts.append(f"\n## {TITLES.get(name, name)}\n\n" + "\n".join(lines).strip() + "\n")
    (HERE / "RESULTS.md").write_text("\n".join(parts))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
