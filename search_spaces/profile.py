"""Profile a built model: measured CPU inference latency and fvcore's per-module FLOP table.

The caller builds the model (this module does not import the builder), e.g. for the report's model section:

>>> prof = profile_model(model, (3, 32, 32))      # doctest: +SKIP
>>> html = model_section_html(prof)               # doctest: +SKIP

fvcore counts one fused multiply-add as one flop; with BatchNorm and pooling counted as free (as in
``search_spaces.inspect``) its total equals our analytic MACs.
"""

from __future__ import annotations

import copy
import html
import statistics
import time
from typing import Sequence

import torch
from torch import nn

from nas.fmt import si
from search_spaces.numerics import flush_denormals

WARMUP = 3  # first calls pay for allocator growth and oneDNN kernel selection; keep them out of the median


def _latency(model: nn.Module, x: torch.Tensor, *, repeats: int, warmup: int) -> dict:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    batch = x.shape[0]
    return {
        "batch": batch,
        "median_ms": 1e3 * median,
        "min_ms": 1e3 * min(times),
        "max_ms": 1e3 * max(times),
        "per_image_ms": 1e3 * median / batch,
        "images_per_s": batch / median,
        "runs": repeats,
    }


def _fvcore(model: nn.Module, x: torch.Tensor, max_depth: int) -> dict:
    from search_spaces.inspect import fvcore_table

    try:
        total, table = fvcore_table(model, x, max_depth)
    except Exception as e:  # a model fvcore cannot trace still gets its latency measured
        return {"fvcore_macs": None, "flop_table": f"fvcore could not analyse the model: {type(e).__name__}: {e}"}
    return {"fvcore_macs": total, "flop_table": table}


def profile_model(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batches: Sequence[int] = (1, 64),
    repeats: int = 10,
    warmup: int = WARMUP,
    max_depth: int = 3,
    threads: int | None = None,
) -> dict:
    """Measure `model` on CPU for inputs of `input_shape` (one sample, e.g. (3, 32, 32)).

    Latency: median wall time of `repeats` forward passes per batch size, after `warmup` passes, in eval
    mode under torch.inference_mode, with `threads` intra-op threads (default: torch's current count; set
    for the measurement and restored after), the count the result states, and denormals flushed to zero (as
    in training: a network whose weights hold subnormal values would otherwise time several times slower
    than it runs with the flushing most deployments enable). MACs: fvcore at batch 1.
    The model is left in the train/eval mode it came in.
    """
    shape = tuple(int(s) for s in input_shape)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    m = model if dev.type == "cpu" else copy.deepcopy(model).cpu()  # never move the caller's model
    was_training = m.training
    old_threads = torch.get_num_threads()
    used = int(threads) if threads else old_threads
    m.eval()
    try:
        torch.set_num_threads(used)
        gen = torch.Generator().manual_seed(0)
        with flush_denormals():
            latency = [
                _latency(m, torch.randn((b, *shape), generator=gen), repeats=repeats, warmup=warmup) for b in batches
            ]
        used = torch.get_num_threads()  # what the measurement ran with
        fv = _fvcore(m, torch.randn((1, *shape), generator=gen), max_depth)
    finally:
        m.train(was_training)
        torch.set_num_threads(old_threads)
    return {
        "input_shape": list(shape),
        "params": sum(p.numel() for p in m.parameters()),
        "threads": used,
        "torch": torch.__version__,
        "latency": latency,
        **fv,
    }


def format_profile(profile: dict) -> str:
    """Plain-text version of the profile (for `nas report` and model.txt)."""
    lines = [
        f"input {tuple(profile['input_shape'])}, params {si(profile['params'])}, "
        f"fvcore MACs (batch 1) {si(profile['fvcore_macs'])}, CPU threads {profile['threads']}",
        f"{'batch':>6} {'median ms':>10} {'per image ms':>13} {'images/s':>10}",
    ]
    for r in profile["latency"]:
        lines.append(f"{r['batch']:>6} {r['median_ms']:>10.3f} {r['per_image_ms']:>13.4f} {r['images_per_s']:>10.1f}")
    lines.append(profile["flop_table"])
    return "\n".join(lines)


def model_section_html(profile: dict) -> str:
    """HTML fragment for the report: latency table, totals and fvcore's per-module table."""
    rows = "".join(
        f"<tr><td>{r['batch']}</td><td>{r['median_ms']:.3f}</td><td>{r['min_ms']:.3f}</td>"
        f"<td>{r['per_image_ms']:.4f}</td><td>{r['images_per_s']:.1f}</td></tr>"
        for r in profile["latency"]
    )
    unsupported = ""
    return (
        f"<p>Input {html.escape(str(tuple(profile['input_shape'])))}; params {si(profile['params'])}; "
        f"fvcore MACs at batch 1: {si(profile['fvcore_macs'])}; measured on CPU with "
        f"{profile['threads']} thread(s), torch {html.escape(profile['torch'])}.</p>"
        "<table><tr><th>batch</th><th>median ms</th><th>min ms</th><th>ms / image</th><th>images / s</th></tr>"
        f"{rows}</table>{unsupported}<pre>{html.escape(profile['flop_table'])}</pre>"
    )
