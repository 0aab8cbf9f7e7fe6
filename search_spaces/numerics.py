"""CPU floating-point settings for the code that trains or times a network.

Denormal (subnormal) floats make x86 arithmetic many times slower. Training drifts into them on its own
(optimizer state, small gradients, weights decaying towards zero): on 32x32 images one trainer run went from
21 s an epoch to 132 s by its fifth epoch, with flat 20 s epochs once they were flushed to zero
(``bench/bench_denormal.py``). Flushing changes results only below float32's smallest normal number
(about 1.2e-38), far under anything a network's output depends on.

``flush_denormals()`` turns flushing on for the calling process's CPU work and restores the caller's own
setting afterwards, so a user who calls our trainer from Python keeps their mode. CUDA is not affected.
This module sits in ``search_spaces``, the lowest package that imports torch, so the trainer, the latency
profile and export can all use it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

# A subnormal float32 (the smallest normal is about 1.18e-38). With flushing on, arithmetic on it gives 0.
_SUBNORMAL = 1e-39


def denormals_flushed() -> bool:
    """Whether CPU arithmetic currently flushes denormals to zero (torch has no getter, so we probe)."""
    x = torch.tensor(_SUBNORMAL, dtype=torch.float32)
    return bool((x * 1.5).item() == 0.0)


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[bool]:
    """Flush denormals to zero inside the block (where the CPU supports it); restore the caller's mode after.

    Yields whether flushing is on inside the block. ``enabled=False`` leaves the mode as it is (for
    benchmarks that measure the difference).
    """
    before = denormals_flushed()
    if not enabled or before:
        yield before
        return
    supported = torch.set_flush_denormal(True)  # False on CPUs without SSE3 (x86) / FZ (ARM): nothing to undo
    try:
        yield supported and denormals_flushed()
    finally:
        if supported:
            torch.set_flush_denormal(before)
